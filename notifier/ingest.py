"""Booking events in: validated, normalized, applied once, then re-planned.

Every door (HTTP, CSV, FHIR) ends in `apply_event`, so they all share one set of rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import eventlog, waitlist
from .clinic import Clinic
from .models import Appointment, Notification, Patient
from .schedule import replan, wanted_for
from .states import Confirmation, Status, set_confirmation
from .store import appointments, events, notifications, patients
from .store import metrics as counts

EventType = Literal[
    "appointment.booked",
    "appointment.rescheduled",
    "appointment.cancelled",
    "appointment.completed",
    "appointment.no_show",
]
STATUS_AFTER = {
    "appointment.booked": "booked",
    "appointment.rescheduled": "booked",
    "appointment.cancelled": "cancelled",
    "appointment.completed": "completed",
    "appointment.no_show": "no_show",
}
# Numbers that can take a text; a landline, toll-free or premium number cannot.
TEXTABLE = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
}


class InvalidEvent(Exception):
    """A bad event: `errors` holds (field, reason) pairs, the first being the headline."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors))
        self.errors = errors


class EventConflict(Exception):
    """The event id was used before for a different payload."""


# Ids travel in URLs (the API's, the dashboard's): RFC 3986's unreserved characters plus ":" and
# "@", which a path segment takes unescaped. FHIR ids ([A-Za-z0-9-.]{1,64}), Cal.com uids and
# the ids the CSV and FHIR doors make ("calcom:…", "fhir:…") all fit. The first character is a
# letter or digit, so that no id reads as "." or "..".
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}$"
ID_RULE = "1 to 128 letters, digits and . _ ~ : @ -, starting with a letter or digit"
# One address, as a mail server takes it: no list (","/";"), no display name, no quotes.
_EMAIL = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)+"
)
# Times outside these years are a bug in the sender, and near the ends of Python's calendar
# the planning arithmetic (48 hours before, 84 days after, zone conversions) would overflow.
YEARS = range(1970, 2200)


def is_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None


def _an_id(value: str) -> str:
    if not is_id(value):
        raise ValueError(f"not an id: {ID_RULE}")
    return value


def _one_address(value: str | None) -> str | None:
    if value and not _EMAIL.fullmatch(value):
        raise ValueError("not one email address (no list, no name, no quotes)")
    return value or None


def implausible_year(moment: datetime) -> str | None:
    """Why a time cannot be a visit's or a booking event's, or None; every door asks this
    before doing arithmetic with a time it was given."""
    if moment.year in YEARS:
        return None
    return f"year {moment.year} is outside {YEARS.start}-{YEARS.stop - 1}"


def _in_years(value: datetime) -> datetime:
    problem = implausible_year(value)
    if problem:
        raise ValueError(problem)
    return value


Id = Annotated[str, AfterValidator(_an_id)]
Time = Annotated[AwareDatetime, AfterValidator(_in_years)]


class Incoming(BaseModel):
    """A request body: unknown fields ignored, strings trimmed, NUL refused."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL refuses NUL in text, and no name, address or id has one.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value


class ConsentIn(Incoming):
    sms: bool = False
    email: bool = False
    marketing: bool = False


class PatientIn(Incoming):
    id: Id
    first_name: str = Field(min_length=1, max_length=200)
    last_name: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: Annotated[str | None, AfterValidator(_one_address)] = Field(default=None, max_length=320)
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2}([-_][A-Za-z0-9]{2,8})?$")
    time_zone: str | None = Field(default=None, max_length=64)
    consent: ConsentIn = ConsentIn()

    @field_validator("phone")
    @classmethod
    def _mobile_e164(cls, value: str | None) -> str | None:
        return None if not value else normalize_phone(value)

    @field_validator("language")
    @classmethod
    def _primary_subtag(cls, value: str) -> str:
        return value[:2].lower()

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value or None


class AppointmentIn(Incoming):
    id: Id
    location: str = Field(min_length=1, max_length=64)
    treatment: str = Field(min_length=1, max_length=64)
    provider: str | None = Field(default=None, max_length=200)
    start: Time
    end: Time


class EventIn(Incoming):
    # Not in URLs: any text of 1 to 128 characters (NUL aside).
    id: str = Field(min_length=1, max_length=128)
    type: EventType
    occurred_at: Time
    appointment: AppointmentIn
    patient: PatientIn
    # Not in the contract: a door's cancel that asks the patient to pick another time.
    wants_reschedule: bool = False


def normalize_phone(value: str, region: str = "US") -> str:
    """E.164 for a number that can receive SMS; ValueError saying why otherwise."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"unparseable phone number {value!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {value!r}")
    if phonenumbers.number_type(number) not in TEXTABLE:
        raise ValueError(f"not a mobile number (cannot receive SMS): {value!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _reason(error: Any) -> str:
    if error["type"] == "timezone_aware":
        return "time without offset (give one, like 2026-12-03T10:00:00-05:00)"
    if error["type"] == "missing":
        return "required"
    return str(error["msg"]).removeprefix("Value error, ")


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    return [(_field(e["loc"]), _reason(e)) for e in exc.errors()]


def parse_event(payload: Any, clinic: Clinic, now: datetime) -> EventIn:
    """Validates a decoded event against the contract and the clinic; raises InvalidEvent."""
    try:
        event = EventIn.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent(field_errors(exc)) from None
    errors: list[tuple[str, str]] = []
    apt, patient = event.appointment, event.patient
    if clinic.location(apt.location) is None:
        errors.append(("appointment.location", f"unknown location {apt.location!r}"))
    if clinic.treatment(apt.treatment) is None:
        errors.append(("appointment.treatment", f"unknown treatment {apt.treatment!r}"))
    if apt.end <= apt.start:
        errors.append(("appointment.end", "end is not after start"))
    if not patient.phone and not patient.email:
        errors.append(("patient.phone", "a phone number or an email address is needed"))
    if errors:
        raise InvalidEvent(errors)
    return event


def payload_digest(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class EventOutcome:
    event_id: str
    appointment_id: str
    outcome: str  # applied | ignored_stale
    duplicate: bool
    # What this event wrote, so that an answer needs no second read: the appointment when the
    # event was applied, and its notifications when the event made them all (a new one).
    appointment: Appointment | None = field(default=None, compare=False)
    notifications: list[Notification] | None = field(default=None, compare=False)


def apply_event(session: Session, clinic: Clinic, payload: Any, now: datetime) -> EventOutcome:
    """Applies a booking event once, in one transaction. Raises InvalidEvent or EventConflict
    before anything is stored."""
    event = parse_event(payload, clinic, now)
    outcome = _applied(session, clinic, event, payload_digest(payload), now)
    said = "duplicate" if outcome.duplicate else outcome.outcome.removeprefix("ignored_")
    if outcome.duplicate:
        counts.bump(session, counts.DUPLICATE_EVENTS, event.type)
        session.commit()
    appointment = event.appointment
    eventlog.event_ingested(event.id, event.type, appointment.id, appointment.location, said)
    return outcome


def _applied(
    session: Session, clinic: Clinic, event: EventIn, digest: str, now: datetime
) -> EventOutcome:
    engine = events.one_statement_engine(session) if event.type == "appointment.booked" else None
    if engine is not None:
        booked = _book_new(engine, clinic, event, digest, now)
        if booked is not None:
            return booked
    try:
        return _apply_once(session, clinic, event, digest, now)
    except IntegrityError:
        # Another event created the same appointment meanwhile: apply this one again, after it.
        session.rollback()
        return _apply_once(session, clinic, event, digest, now)


def _apply_once(
    session: Session, clinic: Clinic, event: EventIn, digest: str, now: datetime
) -> EventOutcome:
    if not events.insert_new(session, _event_row(event, digest, now)):
        return _replayed(session, event.id, digest)
    appointment = appointments.locked_by_id(session, event.appointment.id)
    if appointment is not None and event.occurred_at < appointment.last_event_at:
        events.mark_stale(session, event.id)
        session.commit()
        return EventOutcome(event.id, event.appointment.id, "ignored_stale", duplicate=False)
    new = appointment is None
    appointment = _apply(session, event, appointment, now)
    added = replan(session, appointment, clinic, now, new=new)
    if not new:
        waitlist.visit_changed(session, clinic, appointment, now)
    session.commit()
    return EventOutcome(
        event.id,
        event.appointment.id,
        "applied",
        duplicate=False,
        appointment=appointment,
        notifications=added if new else None,
    )


def _event_row(event: EventIn, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "id": event.id,
        "appointment_id": event.appointment.id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "payload_sha256": digest,
        "outcome": "applied",
    }


def _book_new(
    engine: Engine, clinic: Clinic, event: EventIn, digest: str, now: datetime
) -> EventOutcome | None:
    """PostgreSQL, a booking of an appointment not seen before (most events are): the event,
    the appointment, the patient and the planned notifications with their history in one
    statement, which is its own transaction. Every round trip costs both sides CPU, and this
    is one where the general path takes seven (begin, five statements, commit). None, with
    nothing written, when the appointment or the event is known, another event for it is
    being applied right now, or the patient has another visit that day (whose reminders the
    two may share): then it takes the general path."""
    patient_values = _patient_values(event.patient, now)
    appointment = _new_appointment(event, Patient(**patient_values), now)
    wanted = wanted_for(appointment, clinic, now)
    event_row = _event_row(event, digest, now)
    ids = events.book_new(engine, event_row, patient_values, appointment, wanted, now)
    if ids is None:
        return None
    added = [
        Notification(id=i, kind=p.kind, channel=p.channel, due_at=p.due_at, status=Status.SCHEDULED)
        for i, p in zip(ids, wanted, strict=True)
    ]
    return EventOutcome(event.id, appointment.id, "applied", False, appointment, added)


def _replayed(session: Session, event_id: str, digest: str) -> EventOutcome:
    seen = events.one_by_id(session, event_id)
    if seen.payload_sha256 != digest:
        raise EventConflict(f"event id {seen.id!r} was already used for a different event")
    return EventOutcome(seen.id, seen.appointment_id, seen.outcome, duplicate=True)


def with_notifications(
    session: Session, appointment_id: str
) -> tuple[Appointment, list[Notification]] | None:
    """An appointment and its notifications by due time, each with its history; None for an
    unknown id."""
    appointment = appointments.by_id(session, appointment_id)
    if appointment is None:
        return None
    return appointment, notifications.for_appointment(session, appointment_id, with_history=True)


def event_result(session: Session, outcome: EventOutcome) -> tuple[Appointment, list[Notification]]:
    """The appointment an event left and its notifications by due time; what the event has
    just written is not read back."""
    appointment = outcome.appointment or appointments.one_by_id(session, outcome.appointment_id)
    if outcome.notifications is None:
        return appointment, notifications.for_appointment(session, appointment.id)
    return appointment, sorted(outcome.notifications, key=lambda n: (n.due_at, n.id))


def stored_booking(session: Session, appointment_id: str) -> dict[str, dict[str, Any]] | None:
    """A stored appointment and its patient as an event's `appointment` and `patient`: what a
    door may take as given when a cancel names only the appointment."""
    appointment = appointments.by_id(session, appointment_id)
    if appointment is None:
        return None
    patient = appointment.patient
    return {
        "appointment": {
            "id": appointment.id,
            "location": appointment.location_id,
            "treatment": appointment.treatment_id,
            "provider": appointment.provider,
            "start": appointment.start_at.isoformat(),
            "end": appointment.end_at.isoformat(),
        },
        "patient": {
            "id": patient.id,
            "first_name": patient.first_name,
            "last_name": patient.last_name,
            "phone": patient.phone,
            "email": patient.email,
            "language": patient.language,
            "time_zone": patient.time_zone,
            "consent": {
                "sms": patient.consent_sms,
                "email": patient.consent_email,
                "marketing": patient.consent_marketing,
            },
        },
    }


def _apply(
    session: Session, event: EventIn, appointment: Appointment | None, now: datetime
) -> Appointment:
    patient = patients.upsert(session, _patient_values(event.patient, now))
    if appointment is None:
        appointment = _new_appointment(event, patient, now)
        session.add(appointment)
        session.flush()
        return appointment
    apt = event.appointment
    if _calendar_changes(appointment, event):
        appointment.calendar_sequence += 1
    if apt.start != appointment.start_at and STATUS_AFTER[event.type] == "booked":
        appointment.booked_at = _learned(event, now)
        appointment.rescheduled = True
        set_confirmation(appointment, Confirmation.UNCONFIRMED, now)
    appointment.patient = patient
    appointment.location_id = apt.location
    appointment.treatment_id = apt.treatment
    appointment.provider = apt.provider
    appointment.start_at = apt.start
    appointment.end_at = apt.end
    appointment.status = STATUS_AFTER[event.type]
    if event.type == "appointment.cancelled" and event.wants_reschedule:
        # No cancellation notice (it is planned from cancelled_at): the patient is rebooking.
        set_confirmation(appointment, Confirmation.WANTS_RESCHEDULE, now)
    elif event.type == "appointment.cancelled":
        appointment.cancelled_at = event.occurred_at
    if event.type == "appointment.no_show":
        appointment.no_show_at = _learned(event, now)
    appointment.last_event_at = event.occurred_at
    appointment.updated_at = now
    session.flush()
    return appointment


def _calendar_changes(appointment: Appointment, event: EventIn) -> bool:
    """Whether the patient's calendar entry changes: its time, its place, or whether it is
    there at all (a cancel removes it, a booking after one puts it back)."""
    apt = event.appointment
    return (apt.start, apt.end, apt.location) != (
        appointment.start_at,
        appointment.end_at,
        appointment.location_id,
    ) or (STATUS_AFTER[event.type] == "cancelled") != (appointment.status == "cancelled")


def _new_appointment(event: EventIn, patient: Patient, now: datetime) -> Appointment:
    apt = event.appointment
    return Appointment(
        id=apt.id,
        patient=patient,
        patient_id=patient.id,
        location_id=apt.location,
        treatment_id=apt.treatment,
        provider=apt.provider,
        start_at=apt.start,
        end_at=apt.end,
        status=STATUS_AFTER[event.type],
        confirmation=Confirmation.UNCONFIRMED,
        booked_at=_learned(event, now),
        rescheduled=False,
        calendar_sequence=0,
        # A cancel for a visit we never heard of tells the patient nothing new.
        cancelled_at=None,
        no_show_at=None,
        last_event_at=event.occurred_at,
        created_at=now,
        updated_at=now,
    )


def _learned(event: EventIn, now: datetime) -> datetime:
    """When the clinic booked (or moved) the visit, as far as messages go: never later than
    when we heard of it. A booking system's clock running ahead must not hold a confirmation
    back; `occurred_at` itself still orders the events."""
    return min(event.occurred_at, now)


def _patient_values(given: PatientIn, now: datetime) -> dict[str, Any]:
    return {
        "id": given.id,
        "first_name": given.first_name,
        "last_name": given.last_name,
        "phone": given.phone,
        "email": given.email,
        "language": given.language,
        "time_zone": given.time_zone,
        "consent_sms": given.consent.sms,
        "consent_email": given.consent.email,
        "consent_marketing": given.consent.marketing,
        "updated_at": now,
    }
