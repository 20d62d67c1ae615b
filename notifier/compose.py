"""A notification rendered as the patient will get it: text, HTML, calendar file and links.

The worker sends what this makes; the staff timeline shows it for messages still ahead."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, object_session

from . import unsubscribe
from .budget import MARKETING_KINDS
from .channels import Attachment, Message
from .clinic import Location, Treatment
from .ics import appointment_ics
from .links import ACTIONS, make_token
from .models import Appointment, Notification
from .plan import Visit, same_day_groups
from .runtime import Runtime
from .schedule import recipient, same_day, visit
from .store import appointments


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
        headers=unsubscribe.headers(rt, patient.email or "") if n.kind in MARKETING_KINDS else (),
    )


def context(
    rt: Runtime, n: Notification, location: Location, treatment: Treatment
) -> dict[str, Any]:
    appointment, patient = n.appointment, n.appointment.patient
    zone = location.zone
    return {
        "lang": patient.language,
        "practice": {"name": rt.clinic.practice.name},
        "location": location.for_templates(),
        "patient": {"first_name": patient.first_name},
        "appointment": {
            "start": appointment.start_at.astimezone(zone),
            "end": appointment.end_at.astimezone(zone),
            "provider": appointment.provider,
            "also": _also(rt, n, location),
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
    unsubscribe_url = None
    if n.channel == "email" and appointment.patient.email:
        scope = unsubscribe.scope_for(n.kind)
        unsubscribe_url = unsubscribe.url(rt, appointment.patient.email, scope)
    if n.channel != "email" or not n.ask_confirm or appointment.confirmation != "unconfirmed":
        return {"confirm": None, "reschedule": None, "unsubscribe": unsubscribe_url}
    secret = rt.settings.secret_key or ""
    links: dict[str, str | None] = {
        action: f"{rt.settings.public_url}/links/"
        + make_token(secret, appointment.id, action, appointment.end_at)
        for action in ACTIONS
    }
    return links | {"unsubscribe": unsubscribe_url}


def _also(rt: Runtime, n: Notification, location: Location) -> list[dict[str, Any]]:
    """The patient's later visits that day whose reminder this one is: when, and where."""
    session = object_session(n)
    if n.kind != "reminder" or session is None or not rt.clinic.policy.merge_same_day_reminders:
        return []
    hours = next(
        (r.hours_before for r in rt.clinic.policy.reminders if f"{r.hours_before:g}h" == n.slot),
        None,
    )
    if hours is None:
        return []
    zone = recipient(n.appointment.patient, location.zone).zone
    others = tuple(visit(o) for o in same_day(session, n.appointment) if o.id != n.appointment_id)
    for group in same_day_groups(visit(n.appointment), others, hours, zone):
        if group[0].id == n.appointment_id:
            return [_visit_for_templates(rt, session, v, zone) for v in group[1:]]
    return []


def _visit_for_templates(rt: Runtime, session: Session, v: Visit, zone: ZoneInfo) -> dict[str, Any]:
    other = appointments.by_id(session, v.id)
    place = rt.clinic.location(other.location_id) if other else None
    return {"start": v.start.astimezone(zone), "location": place.name if place else ""}


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
