"""Putting patients on the waitlist: the entry as the API, a CSV file, a FHIR feed and the
staff page give it, checked, and stored once per caller's id."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from sqlalchemy.orm import Session

from .clinic import Clinic
from .ingest import ID_PATTERN, Incoming, InvalidEvent, PatientIn, field_errors
from .models import WaitlistEntry
from .store import patients
from .store import waitlist as rows
from .waitlist import DAYS


class WaitlistIn(Incoming):
    """A patient who wants an earlier visit: `id` is the caller's, and makes a repeat harmless."""

    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=128)]
    patient: PatientIn
    location: str = Field(max_length=64)
    treatment: str = Field(max_length=64)
    days: list[str] = Field(default_factory=lambda: list(DAYS[:5]), min_length=1, max_length=7)
    earliest: time = time(8, 0)
    latest: time = time(20, 0)

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        days = [d.strip().lower()[:3] for d in value]
        unknown = [d for d in days if d not in DAYS]
        if unknown:
            raise ValueError(f"not a weekday: {unknown[0]!r} (mon … sun)")
        return [d for d in DAYS if d in days]

    @field_validator("earliest", "latest")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a time of day without offset: the location's wall clock")
        return value

    @model_validator(mode="after")
    def _hours_in_order(self) -> WaitlistIn:
        if self.latest <= self.earliest:
            raise ValueError("latest must be after earliest")
        return self


def parse_entry(payload: Any, clinic: Clinic) -> WaitlistIn:
    """The entry, or InvalidEvent naming each bad field (an unknown location or treatment too)."""
    try:
        given = WaitlistIn.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent(field_errors(exc)) from None
    errors = []
    if clinic.location(given.location) is None:
        errors.append(("location", "unknown location"))
    if clinic.treatment(given.treatment) is None:
        errors.append(("treatment", "unknown treatment"))
    if not given.patient.phone:
        errors.append(("patient.phone", "an offer goes by SMS: a mobile number is needed"))
    if errors:
        raise InvalidEvent(errors)
    return given


def add(
    session: Session, given: WaitlistIn, source: str, now: datetime
) -> tuple[WaitlistEntry, bool]:
    """Puts the patient on the waitlist (the same `id` again changes nothing); caller commits.
    Returns the entry and whether it is new."""
    known = rows.entry_by_external_id(session, given.id)
    if known is not None:
        return known, False
    patient = patients.upsert(session, _patient_values(given, now))
    entry = WaitlistEntry(
        external_id=given.id,
        patient_id=patient.id,
        location_id=given.location,
        treatment_id=given.treatment,
        days=",".join(given.days),
        earliest=given.earliest.strftime("%H:%M"),
        latest=given.latest.strftime("%H:%M"),
        source=source,
        status="waiting",
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    session.flush()
    return entry, True


def _patient_values(given: WaitlistIn, now: datetime) -> dict[str, Any]:
    p = given.patient
    return {
        "id": p.id,
        "first_name": p.first_name,
        "last_name": p.last_name,
        "phone": p.phone,
        "email": p.email,
        "language": p.language,
        "time_zone": p.time_zone,
        "consent_sms": p.consent.sms,
        "consent_email": p.consent.email,
        "consent_marketing": p.consent.marketing,
        "updated_at": now,
    }


def entry_json(entry: WaitlistEntry) -> dict[str, Any]:
    return {
        "id": entry.external_id,
        "patient": entry.patient_id,
        "location": entry.location_id,
        "treatment": entry.treatment_id,
        "days": entry.days.split(","),
        "earliest": entry.earliest,
        "latest": entry.latest,
        "status": entry.status,
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
    }


def remove_by_id(session: Session, external_id: str, now: datetime) -> WaitlistEntry | None:
    """Takes the entry off the waitlist (if it still waits); None when there is no such entry."""
    entry = rows.entry_by_external_id(session, external_id)
    if entry is not None:
        rows.remove(session, entry.id, now)
        session.flush()
        session.refresh(entry)
    return entry
