"""Booking events in: validated, normalized, applied once, then re-planned.

Every door (HTTP, CSV, FHIR) ends in `apply_event`, so they all share one set of rules.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from .clinic import Clinic
from .models import Appointment, BookingEvent, Notification, Patient, UTCDateTime
from .schedule import replan

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


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class ConsentIn(_In):
    sms: bool = False
    email: bool = False
    marketing: bool = False


class PatientIn(_In):
    id: str = Field(min_length=1, max_length=128)
    first_name: str = Field(min_length=1, max_length=200)
    last_name: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2}([-_][A-Za-z0-9]{2,8})?$")
    time_zone: str | None = None
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
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value or None


class AppointmentIn(_In):
    id: str = Field(min_length=1, max_length=128)
    location: str = Field(min_length=1)
    treatment: str = Field(min_length=1)
    provider: str | None = Field(default=None, max_length=200)
    start: AwareDatetime
    end: AwareDatetime


class EventIn(_In):
    id: str = Field(min_length=1, max_length=128)
    type: EventType
    occurred_at: AwareDatetime
    appointment: AppointmentIn
    patient: PatientIn


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


def parse_event(payload: Any, clinic: Clinic, now: datetime) -> EventIn:
    """Validates a decoded event against the contract and the clinic; raises InvalidEvent."""
    try:
        event = EventIn.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent([(_field(e["loc"]), _reason(e)) for e in exc.errors()]) from None
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
class Outcome:
    event_id: str
    appointment_id: str
    outcome: str  # applied | ignored_stale
    duplicate: bool
    # What this event wrote, so that an answer needs no second read: the appointment when the
    # event was applied, and its notifications when the event made them all (a new one).
    appointment: Appointment | None = field(default=None, compare=False)
    notifications: list[Notification] | None = field(default=None, compare=False)


def apply_event(session: Session, clinic: Clinic, payload: Any, now: datetime) -> Outcome:
    """Applies a booking event once, in one transaction. Raises InvalidEvent or EventConflict
    before anything is stored."""
    event = parse_event(payload, clinic, now)
    digest = payload_digest(payload)
    # Insert first and let the primary key say whether the event is new: one round trip
    # instead of two for the usual case.
    record = {
        "id": event.id,
        "appointment_id": event.appointment.id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "payload_sha256": digest,
        "outcome": "applied",
    }
    try:
        session.execute(insert(BookingEvent), record)
    except IntegrityError:  # the event was applied before (or is being applied right now)
        session.rollback()
        return _replayed(session.get_one(BookingEvent, event.id), digest)
    appointment = session.get(Appointment, event.appointment.id, with_for_update=True)
    if appointment is not None and event.occurred_at < appointment.last_event_at:
        session.execute(
            update(BookingEvent).where(BookingEvent.id == event.id).values(outcome="ignored_stale")
        )
        session.commit()
        return Outcome(event.id, event.appointment.id, "ignored_stale", duplicate=False)
    new = appointment is None
    appointment = _apply(session, event, appointment, now)
    added = replan(session, appointment, clinic, now, new=new)
    session.commit()
    return Outcome(
        event.id,
        event.appointment.id,
        "applied",
        duplicate=False,
        appointment=appointment,
        notifications=added if new else None,
    )


def _replayed(seen: BookingEvent, digest: str) -> Outcome:
    if seen.payload_sha256 != digest:
        raise EventConflict(f"event id {seen.id!r} was already used for a different event")
    return Outcome(seen.id, seen.appointment_id, seen.outcome, duplicate=True)


def _apply(
    session: Session, event: EventIn, appointment: Appointment | None, now: datetime
) -> Appointment:
    patient = _upsert_patient(session, event.patient, now)
    apt = event.appointment
    if appointment is None:
        appointment = Appointment(
            id=apt.id,
            booked_at=_learned(event, now),
            rescheduled=False,
            confirmation="unconfirmed",
            created_at=now,
        )
        session.add(appointment)
        # A cancel for a visit we never heard of tells the patient nothing new.
        cancelled_at = None
    else:
        if apt.start != appointment.start_at and STATUS_AFTER[event.type] == "booked":
            appointment.booked_at = _learned(event, now)
            appointment.rescheduled = True
            appointment.confirmation = "unconfirmed"
        cancelled_at = event.occurred_at
    appointment.patient = patient
    appointment.location_id = apt.location
    appointment.treatment_id = apt.treatment
    appointment.provider = apt.provider
    appointment.start_at = apt.start
    appointment.end_at = apt.end
    appointment.status = STATUS_AFTER[event.type]
    if event.type == "appointment.cancelled":
        appointment.cancelled_at = cancelled_at
    appointment.last_event_at = event.occurred_at
    appointment.updated_at = now
    session.flush()
    return appointment


def _learned(event: EventIn, now: datetime) -> datetime:
    """When the clinic booked (or moved) the visit, as far as messages go: never later than
    when we heard of it. A booking system's clock running ahead must not hold a confirmation
    back; `occurred_at` itself still orders the events."""
    return min(event.occurred_at, now)


def _upsert_patient(session: Session, given: PatientIn, now: datetime) -> Patient:
    """One statement whether the patient is new or known; the Patient it returns (and any
    already in the session) holds what was just written."""
    values = {
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
    return session.scalars(
        _patient_upsert(), values, execution_options={"populate_existing": True}
    ).one()


@cache
def _patient_upsert() -> ExecutableReturnsRows:
    """In text, understood alike by PostgreSQL and SQLite: SQLAlchemy's own ON CONFLICT
    statements are compiled anew on every use (they have no cache key), which costs more than
    running them. Built once."""
    upsert = text(
        "INSERT INTO patients (id, first_name, last_name, phone, email, language, time_zone,"
        " consent_sms, consent_email, consent_marketing, updated_at)"
        " VALUES (:id, :first_name, :last_name, :phone, :email, :language, :time_zone,"
        " :consent_sms, :consent_email, :consent_marketing, :updated_at)"
        " ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name,"
        " last_name = excluded.last_name, phone = excluded.phone, email = excluded.email,"
        " language = excluded.language, time_zone = excluded.time_zone,"
        " consent_sms = excluded.consent_sms, consent_email = excluded.consent_email,"
        " consent_marketing = excluded.consent_marketing, updated_at = excluded.updated_at"
        " RETURNING id, first_name, last_name, phone, email, language, time_zone, consent_sms,"
        " consent_email, consent_marketing, updated_at"
    )
    upsert = upsert.bindparams(bindparam("updated_at", type_=UTCDateTime()))
    # The RETURNING list is in the model's column order: text columns are matched by position.
    return select(Patient).from_statement(upsert.columns(*Patient.__table__.c))
