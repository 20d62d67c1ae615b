"""Cal.com webhooks in: a booking created, rescheduled or cancelled becomes the contract's
booking event. Cal.com signs each delivery; that signature, not an API key, lets it in."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from ..ingest import InvalidEvent, Time
from ..store import events
from . import Ignored, error_reason, primary_language
from .config import CalcomConfig, CalcomEventType

EVENT_TYPES = {
    "BOOKING_CREATED": "appointment.booked",
    "BOOKING_RESCHEDULED": "appointment.rescheduled",
    "BOOKING_CANCELLED": "appointment.cancelled",
}
# The booking form's phone field, then a custom field a clinic may have named "phone".
PHONE_RESPONSES = ("attendeePhoneNumber", "phone")
# What Cal.com puts in a booking form answer left empty.
NO_ANSWER = "N/A"
# A booking made with a phone number only gets the made-up address <digits>@sms.cal.com,
# which reaches no one.
PLACEHOLDER_EMAIL_DOMAIN = "@sms.cal.com"
# What Cal.com sends as X-Cal-Signature-256 when its webhook has no secret.
NO_SECRET = "no-secret-provided"


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, str_strip_whitespace=True)


class _Language(_In):
    locale: str | None = None


class _Person(_In):
    name: str = ""
    email: str | None = None
    time_zone: str | None = None
    language: _Language | None = None
    phone_number: str | None = None


class _Booking(_In):
    uid: str = Field(min_length=1, max_length=80)
    type: str = ""  # the event type's slug
    event_type_id: int | None = None
    start_time: Time
    end_time: Time
    attendees: list[_Person] = Field(min_length=1)
    organizer: _Person | None = None
    responses: dict[str, Any] = {}
    location: str | None = None
    reschedule_uid: str | None = None
    sms_reminder_number: str | None = None
    # On BOOKING_CANCELLED: the clinic asked the patient to pick a new time ("Request reschedule").
    request_reschedule: bool = False


class _Webhook(_In):
    trigger_event: str
    created_at: Time
    payload: dict[str, Any]


M = TypeVar("M", bound=BaseModel)


def signature_problem(body: bytes, signature: str | None, secret: str) -> str | None:
    """Why X-Cal-Signature-256 (the hex HMAC-SHA256 of the raw body under the secret) does not
    let the body in, or None when it does."""
    given = (signature or "").strip().lower()
    if given == NO_SECRET:
        return "the Cal.com webhook has no secret: give it the one in NOTIFIER_CALCOM_SECRET"
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        return "X-Cal-Signature-256 is missing or wrong"
    return None


def booking_event(payload: Any, config: CalcomConfig, session: Session) -> dict[str, Any] | Ignored:
    """The contract event for a Cal.com webhook; raises InvalidEvent naming the webhook's field."""
    webhook = _validated(_Webhook, payload, "")
    event_type = EVENT_TYPES.get(webhook.trigger_event)
    if event_type is None:  # PING (Cal.com's "test" button), MEETING_ENDED, …
        return Ignored(f"{webhook.trigger_event} does not change a booking")
    booking = _validated(_Booking, webhook.payload, "payload.")
    mapping = _event_type(booking, config)
    if mapping is None:
        # Cal.com webhooks are often account-wide: a phone consult is not a treatment to remind of.
        return Ignored(f"event type {booking.type!r} is not in integrations.calcom.event_types")
    event: dict[str, Any] = {
        "id": f"calcom:{booking.uid}:{webhook.trigger_event}",
        "type": event_type,
        "occurred_at": webhook.created_at.isoformat(),
        "appointment": {
            "id": _appointment_id(session, booking),
            "location": _location(booking, mapping, config),
            "treatment": mapping.treatment,
            "provider": booking.organizer.name if booking.organizer else None,
            "start": booking.start_time.isoformat(),
            "end": booking.end_time.isoformat(),
        },
        "patient": _patient(booking.attendees[0], _phone(booking), config),
    }
    if event_type == "appointment.cancelled" and booking.request_reschedule:
        # The slot is given up and the patient asked, by Cal.com, to pick another: the
        # reminders stop, no "cancelled" text contradicts Cal.com's email, the appointment says
        # it waits for a new time.
        event["wants_reschedule"] = True
    return event


def _validated(model: type[M], data: Any, prefix: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            (prefix + ".".join(str(part) for part in e["loc"]) or "body", error_reason(e))
            for e in exc.errors()
        ]
        raise InvalidEvent(errors) from None


def _event_type(booking: _Booking, config: CalcomConfig) -> CalcomEventType | None:
    keys = [str(booking.event_type_id)] if booking.event_type_id is not None else []
    for key in [*keys, booking.type]:
        if key in config.event_types:
            return config.event_types[key]
    return None


def _appointment_id(session: Session, booking: _Booking) -> str:
    """Cal.com gives a rescheduled booking a new uid; the appointment keeps its first one, so
    its reminders move instead of a second appointment starting. Each reschedule is recorded
    under its new uid (the event id), which is how a later uid finds the first."""
    uid = booking.reschedule_uid or booking.uid
    moved = events.by_id(session, f"calcom:{uid}:BOOKING_RESCHEDULED")
    return moved.appointment_id if moved else uid


def _location(booking: _Booking, mapping: CalcomEventType, config: CalcomConfig) -> str:
    location = mapping.location or config.locations.get(booking.location or "")
    if location is None:
        reason = f"{booking.location!r} is not in integrations.calcom.locations"
        raise InvalidEvent([("payload.location", reason)])
    return location


def _phone(booking: _Booking) -> str | None:
    answers = [_answer(booking.responses.get(name)) for name in PHONE_RESPONSES]
    candidates = [*answers, booking.attendees[0].phone_number, booking.sms_reminder_number]
    return next((phone for phone in candidates if phone), None)


def _answer(response: Any) -> str | None:
    # Cal.com sends a booking form answer as {"label": …, "value": …}; older versions bare.
    value = response.get("value") if isinstance(response, dict) else response
    return value if isinstance(value, str) and value != NO_ANSWER else None


def _email(attendee: _Person) -> str | None:
    email = attendee.email or ""
    return None if not email or email.lower().endswith(PLACEHOLDER_EMAIL_DOMAIN) else email


def _patient(attendee: _Person, phone: str | None, config: CalcomConfig) -> dict[str, Any]:
    first_name, _, last_name = attendee.name.partition(" ")
    email = _email(attendee)
    patient = {
        "id": _patient_id(email or phone or ""),
        "first_name": first_name,
        "last_name": last_name.strip(),
        "phone": phone,
        "email": email,
        "time_zone": attendee.time_zone,
        "consent": config.consent.model_dump(),
    }
    language = primary_language(attendee.language.locale if attendee.language else None)
    return patient if language is None else {**patient, "language": language}


def _patient_id(contact: str) -> str:
    # Cal.com has no patient id; the email (else phone) is who books. Digested, so the address
    # stays out of ids, which travel further than the patient row (logs, URLs, the staff UI).
    return "calcom:" + hashlib.sha256(contact.strip().lower().encode()).hexdigest()[:16]
