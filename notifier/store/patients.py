"""Patients: one by its id, those behind phone numbers, and where those patients visit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Appointment, Patient


def by_id(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def with_phones(session: Session, phones: list[str]) -> list[Patient]:
    return list(session.scalars(select(Patient).where(Patient.phone.in_(phones))))


def locations_by_phone(session: Session, phones: Iterable[str]) -> dict[str, set[str]]:
    """Where the patients behind each phone number have had appointments: an opt-out belongs
    to every location that texted that number."""
    wanted = list(set(phones))
    if not wanted:
        return {}
    rows = session.execute(
        select(Patient.phone, Appointment.location_id)
        .join(Appointment, Appointment.patient_id == Patient.id)
        .where(Patient.phone.in_(wanted))
        .distinct()
    )
    places: dict[str, set[str]] = defaultdict(set)
    for phone, location_id in rows:
        places[phone].add(location_id)
    return dict(places)


def first_with_phone(session: Session, phone: str) -> Patient | None:
    return session.scalars(select(Patient).where(Patient.phone == phone).limit(1)).first()
