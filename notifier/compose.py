"""A notification rendered as the patient will get it: text, HTML, calendar file and links.

The worker sends what this makes; the staff timeline shows it for messages still ahead."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy.orm import Session

from .channels import Attachment, Message
from .clinic import Location, Treatment
from .ics import CalendarMethod, appointment_ics, calendar_content_type
from .links import ACTIONS, make_token
from .models import Appointment, Notification
from .runtime import Runtime
from .store import first_texts

# Marketing texts carry the opt-out line every time (CTIA); the others only as a number's first.
MARKETING_KINDS = frozenset({"rebook"})


def texted_phones(session: Session, rows: Iterable[Notification]) -> set[str]:
    """Which of these rows' SMS numbers have had their first text already, in one query."""
    phones = (n.patient.phone for n in rows if n.channel == "sms")
    return first_texts.texted_among(session, (p for p in phones if p))


def compose(rt: Runtime, n: Notification, now: datetime, texted: bool = False) -> Message:
    """The message as the patient gets it. `texted`: the number has had its first text
    already (`texted_phones`); a text to a number that has not ends with the opt-out line.
    Decided when the message is rendered, right before it is held for its call: two texts
    rendered for a new number before either is recorded both carry the line, the harmless
    side of the race."""
    appointment, patient = n.appointment, n.patient
    location = rt.clinic.location(appointment.location_id)
    treatment = rt.clinic.treatment(appointment.treatment_id)
    assert location is not None and treatment is not None  # recheck() made sure
    values = context(rt, n, location, treatment)
    values["notification"]["opt_out_line"] = n.channel == "sms" and (
        n.kind in MARKETING_KINDS or not texted
    )
    rendered = rt.renderer.render(n.kind, n.channel, patient.language, values)
    if n.channel == "sms":
        return Message(n.id, patient.phone or "", rendered.text, sender=location.sender)
    attachments: tuple[Attachment, ...] = ()
    if n.kind == "confirmation":
        attachments = (_calendar_file(rt, appointment, location, treatment, now, "PUBLISH"),)
    elif n.kind == "cancellation":
        attachments = (_calendar_file(rt, appointment, location, treatment, now, "CANCEL"),)
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
    appointment, patient = n.appointment, n.patient
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
            # Minimum necessary: empty unless the clinic lets messages name this treatment.
            "name": treatment.wording(patient.language) if treatment.name_in_messages else "",
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


# The calendar entry's title, in the patient's language: where, never what.
_TITLES = {"en": "Appointment at {practice}", "es": "Cita en {practice}"}
_NAMED_TITLES = {"en": "{treatment} at {practice}", "es": "{treatment} en {practice}"}


def _calendar_file(
    rt: Runtime,
    appointment: Appointment,
    location: Location,
    treatment: Treatment,
    now: datetime,
    method: CalendarMethod,
) -> Attachment:
    domain = (rt.settings.mail_from or "notifier.invalid").rpartition("@")[2].strip(">")
    language = appointment.patient.language
    titles = _NAMED_TITLES if treatment.name_in_messages else _TITLES
    title = titles.get(language, titles["en"]).format(
        practice=rt.clinic.practice.name, treatment=treatment.wording(language)
    )
    data = appointment_ics(
        method=method,
        uid=f"appointment-{appointment.id}@{domain}",
        summary=title,
        start=appointment.start_at,
        end=appointment.end_at,
        location=f"{rt.clinic.practice.name}, {location.address}",
        description=f"{location.name}: {location.display_phone}",
        organizer=(rt.clinic.practice.name, _address(rt.settings.mail_from, domain)),
        attendee=appointment.patient.email,
        # One more with every change of time, place or status (ingest), so calendars move or
        # remove the event they hold instead of adding one.
        sequence=appointment.calendar_sequence,
        stamp=now,
    )
    return Attachment("appointment.ics", calendar_content_type(method), data)


def _address(mail_from: str | None, domain: str) -> str:
    """The bare address of NOTIFIER_MAIL_FROM ("Clinic <a@b>" → "a@b")."""
    address = parseaddr(mail_from or "")[1]
    return address or f"appointments@{domain}"
