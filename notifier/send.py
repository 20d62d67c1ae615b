"""The worker's side: re-check a claimed notification, render it, send it once, record the fate.

Every state change is a conditional update (`schedule.transition`), so a redelivered task, a
second worker or a re-plan racing with us can never make a message go out twice.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from .channels import Attachment, Message, SendError
from .clinic import Location, Treatment
from .ics import appointment_ics
from .links import ACTIONS, make_token
from .models import Appointment, Notification, Patient
from .plan import next_allowed, plan
from .runtime import Runtime
from .schedule import recipient, transition, visit
from .track import after_sms_failure, is_opted_out

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# Which appointment states each kind still makes sense in.
ACTIVE_FOR = {
    "confirmation": {"booked"},
    "reminder": {"booked"},
    "manual": {"booked"},
    "aftercare": {"booked", "completed"},
    "rebook": {"booked", "completed"},
    "cancellation": {"cancelled"},
}


@dataclass(frozen=True)
class Skip:
    status: str  # suppressed | cancelled | scheduled (deferred)
    reason: str
    due_at: datetime | None = None


def deliver(rt: Runtime, notification_id: int, worker: str = "worker") -> str:
    """Sends one claimed (`queued`) notification; returns the state it ended in."""
    now = rt.clock()
    with rt.sessions() as session:
        notification = session.get(Notification, notification_id)
        if notification is None or notification.status != "queued":
            return notification.status if notification else "missing"
        skip = recheck(rt, session, notification, now)
        if skip is not None:
            return _skip(session, notification, skip, now)
        message = compose(rt, notification, now)
        moved = transition(
            session,
            [notification.id],
            ["queued"],
            "sending",
            now,
            lease_owner=worker,
            lease_until=now + timedelta(seconds=rt.settings.sending_lease_seconds),
            attempts=notification.attempts + 1,
            body=message.text,
        )
        session.commit()
        if not moved:
            return "lost-race"
        channel = rt.sms if notification.channel == "sms" else rt.email
        try:
            provider_id = channel.send(message)
        except SendError as exc:
            return _failed_send(rt, session, notification, exc)
        transition(
            session,
            [notification.id],
            ["sending"],
            "sent",
            rt.clock(),
            provider_id=provider_id,
            sent_at=rt.clock(),
            lease_owner=None,
            lease_until=None,
        )
        session.commit()
        return "sent"


def recheck(rt: Runtime, session: Session, n: Notification, now: datetime) -> Skip | None:
    """What the world looks like now, not when the row was planned: None means go ahead."""
    appointment, patient = n.appointment, n.appointment.patient
    location = rt.clinic.location(appointment.location_id)
    treatment = rt.clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        return Skip("suppressed", "not_in_config")
    who = recipient(patient, location.zone)
    if now >= n.expires_at:
        return Skip("suppressed", "stale")
    if appointment.status not in ACTIVE_FOR[n.kind]:
        return Skip("cancelled", f"appointment {appointment.status}")
    if not (who.sms if n.channel == "sms" else who.email):
        return Skip("suppressed", "no_consent")
    if n.channel == "sms" and is_opted_out(session, patient.phone):
        return Skip("suppressed", "opted_out")
    if n.kind == "rebook" and _has_future_visit(session, patient, now):
        return Skip("suppressed", "already_rebooked")
    # Manual reminders and email fallbacks are not the policy's, so the plan cannot vouch for them.
    if n.kind != "manual" and not n.slot.startswith("fallback:"):
        wanted = plan(visit(appointment), who, treatment, rt.clinic.policy, now)
        if not any(
            p.key == (n.kind, n.channel, n.slot) and p.due_at == n.planned_for for p in wanted
        ):
            return Skip("cancelled", "plan_changed")
    if n.channel == "sms":
        allowed = next_allowed(now, rt.clinic.policy.quiet_hours, who.zone)
        if allowed != now:
            if allowed >= n.expires_at:
                return Skip("suppressed", "quiet_hours")
            return Skip("scheduled", "quiet hours", due_at=allowed)
    return None


def _has_future_visit(session: Session, patient: Patient, now: datetime) -> bool:
    query = select(
        exists().where(
            Appointment.patient_id == patient.id,
            Appointment.status == "booked",
            Appointment.start_at > now,
        )
    )
    return bool(session.scalar(query))


def _skip(session: Session, n: Notification, skip: Skip, now: datetime) -> str:
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if skip.due_at is not None:
        values["due_at"] = skip.due_at
    else:
        values["reason"] = skip.reason
    transition(session, [n.id], ["queued"], skip.status, now, skip.reason, **values)
    session.commit()
    return skip.status


def _failed_send(rt: Runtime, session: Session, n: Notification, exc: SendError) -> str:
    now = rt.clock()
    attempts = n.attempts + 1
    log.warning("notification %s: %s send failed (%s): %s", n.id, n.channel, exc.outcome, exc)
    values: dict[str, Any] = {}
    if exc.outcome == "transient" and attempts < MAX_ATTEMPTS:
        to, values["due_at"] = "scheduled", now + backoff(attempts, rt.settings.retry_base_seconds)
    elif exc.outcome == "unknown":
        # Reconciled only once the provider has surely finished with the request.
        to = "unknown"
        values["lease_until"] = now + timedelta(seconds=rt.settings.sending_lease_seconds)
    else:
        to = "failed"
        values["reason"] = exc.reason or ("gave_up" if exc.outcome == "transient" else "provider")
    transition(
        session,
        [n.id],
        ["sending"],
        to,
        now,
        str(exc)[:300],
        error_code=exc.code,
        **({"lease_owner": None, "lease_until": None} | values),
    )
    if to == "failed" and n.channel == "sms" and exc.outcome == "permanent":
        after_sms_failure(session, n, exc.reason, now)
    session.commit()
    return to


def backoff(attempts: int, first: float = 30.0) -> timedelta:
    """30 s, 1 min, 2 min, … capped at an hour, with jitter so retries don't stampede."""
    base = min(first * 2 ** (attempts - 1), 3600)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))


def compose(rt: Runtime, n: Notification, now: datetime) -> Message:
    appointment, patient = n.appointment, n.appointment.patient
    location = rt.clinic.location(appointment.location_id)
    treatment = rt.clinic.treatment(appointment.treatment_id)
    assert location is not None and treatment is not None  # recheck() made sure
    rendered = rt.renderer.render(
        n.kind, n.channel, patient.language, context(rt, n, location, treatment)
    )
    if n.channel == "sms":
        return Message(n.id, patient.phone or "", rendered.text, sender=location.sender)
    attachments: tuple[Attachment, ...] = ()
    if n.kind == "confirmation":
        attachments = (_calendar_file(rt, appointment, location, treatment, now),)
    return Message(
        n.id,
        patient.email or "",
        rendered.text,
        subject=rendered.subject,
        html=rendered.html,
        attachments=attachments,
    )


def context(
    rt: Runtime, n: Notification, location: Location, treatment: Treatment
) -> dict[str, Any]:
    appointment, patient = n.appointment, n.appointment.patient
    zone = location.zone
    return {
        "lang": patient.language,
        "practice": {"name": rt.clinic.practice.name},
        "location": {
            "id": location.id,
            "name": location.name,
            "phone": location.display_phone,
            "address": location.address,
        },
        "patient": {"first_name": patient.first_name},
        "appointment": {
            "start": appointment.start_at.astimezone(zone),
            "end": appointment.end_at.astimezone(zone),
            "provider": appointment.provider,
        },
        "treatment": {
            "name": treatment.wording(patient.language),
            "avoid_hours": treatment.avoid_hours,
        },
        "notification": {
            "kind": n.kind,
            "ask_confirm": n.ask_confirm and appointment.confirmation == "unconfirmed",
            "rescheduled": appointment.rescheduled,
        },
        "links": _links(rt, n, appointment),
    }


def _links(rt: Runtime, n: Notification, appointment: Appointment) -> dict[str, str | None]:
    if n.channel != "email" or not n.ask_confirm or appointment.confirmation != "unconfirmed":
        return {"confirm": None, "reschedule": None}
    secret = rt.settings.secret_key or ""
    return {
        action: f"{rt.settings.public_url}/links/"
        + make_token(secret, appointment.id, action, appointment.end_at)
        for action in ACTIONS
    }


def _calendar_file(
    rt: Runtime,
    appointment: Appointment,
    location: Location,
    treatment: Treatment,
    now: datetime,
) -> Attachment:
    domain = (rt.settings.mail_from or "notifier.invalid").rpartition("@")[2].strip(">")
    data = appointment_ics(
        uid=f"appointment-{appointment.id}@{domain}",
        summary=f"{treatment.wording(appointment.patient.language)} - {rt.clinic.practice.name}",
        start=appointment.start_at,
        end=appointment.end_at,
        location=f"{rt.clinic.practice.name}, {location.address}",
        description=f"{location.name}: {location.display_phone}",
        # Grows with every reschedule, so calendars move the event instead of adding one.
        sequence=int(appointment.booked_at.timestamp()),
        stamp=now,
    )
    return Attachment("appointment.ics", "text/calendar", data)
