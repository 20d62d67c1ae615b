"""The send-time re-check: does the world, as it is now, still want this message sent?

A row was planned days ago; since then the visit may have been cancelled or moved, the patient
may have texted STOP, quiet hours may have begun. The worker asks here when it loads a batch,
again for whatever still waits for its slot (`RECHECK_SECONDS`), and the pure part (`at_call`)
right before each provider call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from .models import Notification
from .plan import next_allowed, plan
from .runtime import Runtime
from .schedule import cannot_take_texts, recipient, visit
from .states import Status
from .store import appointments, opt_outs, waitlist

# Which appointment states each kind still makes sense in.
ACTIVE_FOR = {
    "confirmation": {"booked"},
    "reminder": {"booked"},
    "manual": {"booked"},
    "aftercare": {"booked", "completed"},
    "rebook": {"booked", "completed"},
    "cancellation": {"cancelled"},
    "no_show_recovery": {"no_show"},
    # An offer of a freed visit: while it stays freed (rebooked, the offer is withdrawn).
    "waitlist_offer": {"cancelled", "no_show"},
    # Staff answering a patient's text: the conversation is about whatever the visit became.
    "staff_message": {"booked", "cancelled", "completed", "no_show"},
}
# Not the policy's: staff asked for these, so the plan cannot vouch for them.
STAFF_KINDS = ("manual", "staff_message")
# Not the appointment's plan either: the waitlist decides these (waitlist.py).
NOT_PLANNED = (*STAFF_KINDS, "waitlist_offer")


@dataclass(frozen=True)
class Skip:
    status: Status  # suppressed | cancelled | scheduled (deferred)
    reason: str
    due_at: datetime | None = None


def opted_out_phones(session: Session, rows: list[Notification]) -> set[str]:
    """Which of these rows' SMS numbers are in the opt-out registry, in one query."""
    sms = (n.patient.phone for n in rows if n.channel == "sms")
    phones = {phone for phone in sms if phone is not None}
    if not phones:
        return set()
    return opt_outs.active_among(session, phones)


def recheck(
    rt: Runtime, session: Session, n: Notification, now: datetime, opted_out: set[str]
) -> Skip | None:
    """What the world looks like now, not when the row was planned: None means go ahead."""
    appointment, patient = n.appointment, n.patient
    location = rt.clinic.location(appointment.location_id)
    treatment = rt.clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        return Skip(Status.SUPPRESSED, "not_in_config")
    who = recipient(patient, location.zone)
    if now >= n.expires_at:
        return Skip(Status.SUPPRESSED, "stale")
    if appointment.status not in ACTIVE_FOR[n.kind]:
        return Skip(Status.CANCELLED, f"appointment {appointment.status}")
    if n.channel == "sms" and cannot_take_texts(patient):
        return Skip(Status.SUPPRESSED, "not_mobile")
    if not (who.sms if n.channel == "sms" else who.email):
        return Skip(Status.SUPPRESSED, "no_consent")
    if n.channel == "sms" and patient.phone in opted_out:
        return Skip(Status.SUPPRESSED, "opted_out")
    moot = _moot(session, n, patient.id, now)
    if moot is not None:
        return moot
    # Staff's messages and email fallbacks are not the policy's, so the plan cannot vouch for them.
    if n.kind not in NOT_PLANNED and not n.slot.startswith("fallback:"):
        wanted = plan(visit(appointment), who, treatment, rt.clinic.policy, now)
        if not any(
            p.key == (n.kind, n.channel, n.slot) and p.due_at == n.planned_for for p in wanted
        ):
            return Skip(Status.CANCELLED, "plan_changed")
    return at_call(rt, n, now)


def _moot(session: Session, n: Notification, patient_id: str, now: datetime) -> Skip | None:
    """A nudge to book is moot once the patient has booked; an offer, once its slot is gone."""
    if n.kind in ("rebook", "no_show_recovery") and appointments.has_booked_after(
        session, patient_id, now
    ):
        return Skip(Status.SUPPRESSED, "already_rebooked")
    if n.kind == "waitlist_offer" and not waitlist.still_offered(session, n.id, now):
        return Skip(Status.CANCELLED, "slot_taken")
    return None


def at_call(rt: Runtime, n: Notification, now: datetime) -> Skip | None:
    """The checks that need no database: expiry, and quiet hours in the patient's zone. Cheap
    enough to run right before every provider call."""
    if now >= n.expires_at:
        return Skip(Status.SUPPRESSED, "stale")
    allowed = allowed_from(rt, n, now)
    if allowed == now:
        return None
    if allowed >= n.expires_at:
        return Skip(Status.SUPPRESSED, "quiet_hours")
    return Skip(Status.SCHEDULED, "quiet hours", due_at=allowed)


def allowed_from(rt: Runtime, n: Notification, moment: datetime) -> datetime:
    """The first moment at or after `moment` when `n` may go: quiet hours hold texts."""
    location = rt.clinic.location(n.appointment.location_id)
    # A staff member's answer to a text the patient sent within the hour is not held.
    if n.channel != "sms" or location is None or n.quiet_override:
        return moment
    zone = recipient(n.patient, location.zone).zone
    return next_allowed(moment, rt.clinic.policy.quiet_hours, zone)
