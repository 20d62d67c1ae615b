"""The message budget: how many messages one patient gets, and how close together.

Pure, like the plan it serves: the plan drops what one appointment's own messages would pile
up (`plan.plan_with_skips`), and the send-time re-check asks `hold_back` about what other
appointments and staff have sent since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .clinic import Policy

MARKETING_KINDS = frozenset({"rebook"})
# Texts the patient needs when they come: a booking's receipt, a cancellation, and what staff
# chose to send now (a reminder, or an answer to the patient's text). The rest may wait, or give
# way to a text sent moments before.
URGENT_KINDS = frozenset(
    {"confirmation", "cancellation", "manual", "staff_message", "waitlist_offer"}
)
# A reminder this far ahead of the visit is a day-ahead one: a fresh confirmation makes it moot.
DAY_AHEAD = timedelta(hours=24)


@dataclass(frozen=True)
class HoldBack:
    """Why a message should not go now, and until when it may (None: not at all)."""

    reason: str
    until: datetime | None = None


def reminder_moot(
    hours_before: float, due: datetime, confirmed_at: datetime, policy: Policy
) -> str | None:
    """Why a reminder due at `due` adds nothing to the confirmation sent at `confirmed_at`."""
    gap = due - confirmed_at
    if timedelta(hours=hours_before) >= DAY_AHEAD and gap < timedelta(
        hours=policy.confirmation_gap_hours
    ):
        return f"skipped: the confirmation went {_span(gap)} before it"
    if gap < timedelta(minutes=policy.sms_spacing_minutes):
        return f"merged into the confirmation, {_span(gap)} before it"
    return None


def hold_back(
    kind: str,
    channel: str,
    now: datetime,
    last_text: datetime | None,
    same_visit: bool,
    last_marketing: datetime | None,
    policy: Policy,
) -> HoldBack | None:
    """Whether a message due now waits, or is dropped, for what the patient got lately:
    `last_text` is the patient's latest text sent, `same_visit` whether it was about this
    message's appointment, `last_marketing` their latest marketing message on any channel."""
    week = timedelta(days=policy.marketing_every_days)
    if kind in MARKETING_KINDS and last_marketing is not None and now - last_marketing < week:
        return HoldBack(f"skipped: a marketing message went {_span(now - last_marketing)} ago")
    spacing = timedelta(minutes=policy.sms_spacing_minutes)
    if channel != "sms" or kind in URGENT_KINDS or last_text is None or not spacing:
        return None
    if now - last_text >= spacing:
        return None
    if kind == "reminder" and same_visit:  # that text was about this visit: nothing to add
        return HoldBack(f"merged: a text went {_span(now - last_text)} before")
    return HoldBack(f"deferred: a text went {_span(now - last_text)} before", last_text + spacing)


def _span(gap: timedelta) -> str:
    minutes = max(0, int(gap.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h"
