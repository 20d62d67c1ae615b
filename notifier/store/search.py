"""Finding patients: by words of their name, by their number, and their appointments."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Appointment, Patient


def patients_named(session: Session, words: list[str], limit: int) -> list[Patient]:
    """Patients whose first or last name holds each of `words` (any case), by name."""
    full = func.lower(Patient.first_name + " " + Patient.last_name)
    query = select(Patient)
    for word in words:
        escaped = word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(full.like(f"%{escaped}%", escape="\\"))
    query = query.order_by(Patient.last_name, Patient.first_name, Patient.id).limit(limit)
    return list(session.scalars(query))


def patients_with_phone(session: Session, phone: str, limit: int) -> list[Patient]:
    query = select(Patient).where(Patient.phone == phone).order_by(Patient.id).limit(limit)
    return list(session.scalars(query))


def appointments_of(session: Session, patient_ids: list[str]) -> list[Appointment]:
    """These patients' appointments, the latest start first."""
    if not patient_ids:
        return []
    query = (
        select(Appointment)
        .where(Appointment.patient_id.in_(patient_ids))
        .order_by(Appointment.start_at.desc(), Appointment.id)
    )
    return list(session.scalars(query))
