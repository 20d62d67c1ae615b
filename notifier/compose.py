"""A notification rendered as the patient will get it: text, HTML, calendar file and links.

The worker sends what this makes; the staff timeline shows it for messages still ahead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .channels import Attachment, Message
from .clinic import Location, Treatment
from .ics import appointment_ics
from .links import ACTIONS, make_token
from .models import Appointment, Notification
from .runtime import Runtime


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
        "location": location.for_templates(),
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
        "staff_message": n.staff_text or "",
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
