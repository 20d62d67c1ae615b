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

from .budget import MARKETING_KINDS, URGENT_KINDS, hold_back
from .models import Notification
from .plan import Recipient, Visit, next_allowed, plan
from .runtime import Runtime
from .schedule import cannot_take_texts, recipient, same_day, visit
from .states import Status
from .store import appointments, opt_outs, waitlist
from .store import budget as budget_rows
from .unsubscribe import suppressed

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
    detail: str | None = None  # the history's words, when the reason alone says too little


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
    refused = _refused(session, n, who, now, opted_out)
    if refused is not None:
        return refused
    # Staff's messages and email fallbacks are not the policy's, so the plan cannot vouch for them.
    if n.kind not in NOT_PLANNED and not n.slot.startswith("fallback:"):
        others = _sharing(rt, session, n)
        wanted = plan(visit(appointment), who, treatment, rt.clinic.policy, now, others)
        if not any(
            p.key == (n.kind, n.channel, n.slot) and p.due_at == n.planned_for for p in wanted
        ):
            return Skip(Status.CANCELLED, "plan_changed")
    return within_budget(rt, session, n, now) or at_call(rt, n, now)


def _refused(
    session: Session, n: Notification, who: Recipient, now: datetime, opted_out: set[str]
) -> Skip | None:
    """What the patient said or can take: a landline, no consent, STOP, an unsubscribe, or a
    visit booked since, which makes a rebook invitation pointless."""
    patient = n.patient
    if n.channel == "sms" and cannot_take_texts(patient):
        return Skip(Status.SUPPRESSED, "not_mobile")
    if not (who.sms if n.channel == "sms" else who.email):
        return Skip(Status.SUPPRESSED, "no_consent")
    if n.channel == "sms" and patient.phone in opted_out:
        return Skip(Status.SUPPRESSED, "opted_out")
    if n.channel == "email" and suppressed(session, n.kind, patient.email or ""):
        return Skip(Status.SUPPRESSED, "unsubscribed")
    return _moot(session, n, patient.id, now)


def _sharing(rt: Runtime, session: Session, n: Notification) -> tuple[Visit, ...]:
    """The patient's other visits that day, whose reminders a reminder may share."""
    if n.kind != "reminder" or not rt.clinic.policy.merge_same_day_reminders:
        return ()
    siblings = same_day(session, n.appointment)
    return tuple(visit(o) for o in siblings if o.id != n.appointment_id)


def within_budget(rt: Runtime, session: Session, n: Notification, now: datetime) -> Skip | None:
    """The message budget against what the patient was sent lately, by any appointment."""
    if n.kind in URGENT_KINDS or (n.channel != "sms" and n.kind not in MARKETING_KINDS):
        return None
    last_text = None
    if n.channel == "sms":
        last_text = budget_rows.last_sent(session, n.patient_id, n.id, channels=("sms",))
        going = budget_rows.text_going_out(session, n.patient_id, n.id, URGENT_KINDS)
        if going is not None:  # on its way at this moment: as good as sent now
            last_text = (now, going)
    last_marketing = None
    if n.kind in MARKETING_KINDS:
        last_marketing = budget_rows.last_sent(session, n.patient_id, n.id, kinds=MARKETING_KINDS)
    held = hold_back(
        n.kind,
        n.channel,
        now,
        last_text[0] if last_text else None,
        bool(last_text and last_text[1] == n.appointment_id),
        last_marketing[0] if last_marketing else None,
        rt.clinic.policy,
    )
    if held is None:
        return None
    if held.until is None or held.until >= n.expires_at:
        return Skip(Status.SUPPRESSED, "budget", detail=held.reason)
    return Skip(Status.SCHEDULED, held.reason, due_at=held.until)


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


def _moot(session: Session, n: Notification, patient_id: str, now: datetime) -> Skip | None:
    """A nudge to book is moot once the patient has booked; an offer, once its slot is gone."""
    if n.kind in ("rebook", "no_show_recovery") and appointments.has_booked_after(
        session, patient_id, now
    ):
        return Skip(Status.SUPPRESSED, "already_rebooked")
    if n.kind == "waitlist_offer" and not waitlist.still_offered(session, n.id, now):
        return Skip(Status.CANCELLED, "slot_taken")
    return None
