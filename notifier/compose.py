"""A notification rendered as the patient will get it: text, HTML, calendar file and links.

The worker sends what this makes; the staff timeline shows it for messages still ahead."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, object_session

from . import unsubscribe
from .budget import MARKETING_KINDS
from .channels import Attachment, Message
from .clinic import Location, Treatment
from .ics import CalendarMethod, appointment_ics, calendar_content_type
from .links import ACTIONS, make_token
from .models import Appointment, Notification
from .plan import Visit, same_day_groups
from .runtime import Runtime
from .schedule import recipient, same_day, visit
from .store import appointments, first_texts


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
        headers=unsubscribe.headers(rt, patient.email or "") if n.kind in MARKETING_KINDS else (),
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
            "also": _also(rt, n, location),
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
