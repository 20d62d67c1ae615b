"""Numbers a carrier said cannot take texts: the patients behind them, marked; their texts
still waiting; and the list of such patients for the worklist."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..models import Notification, Patient
from ..states import PENDING


def mark(session: Session, phone: str, now: datetime) -> list[Patient]:
    """Marks every patient with this number as unable to take texts at it (the mark lasts
    while it is their number); returns them."""
    marked = list(session.scalars(select(Patient).where(Patient.phone == phone)))
    for patient in marked:
        if patient.not_mobile_phone != phone:
            patient.not_mobile_phone, patient.not_mobile_at = phone, now
    session.flush()
    return marked


def pending_texts(session: Session, patient_ids: list[str]) -> list[Notification]:
    """These patients' texts not yet handed to a worker, with their appointments."""
    if not patient_ids:
        return []
    query = (
        select(Notification)
        .where(
            Notification.patient_id.in_(patient_ids),
            Notification.channel == "sms",
            Notification.status.in_(PENDING),
        )
        .options(selectinload(Notification.appointment))
    )
    return list(session.scalars(query))


def patients_not_mobile(session: Session, limit: int = 200) -> list[Patient]:
    """Patients whose current number cannot take texts, the latest found first: to call for
    a mobile number (the worklist lists them)."""
    query = (
        select(Patient)
        .where(Patient.not_mobile_phone.is_not(None), Patient.phone == Patient.not_mobile_phone)
        .order_by(Patient.not_mobile_at.desc(), Patient.id)
        .limit(limit)
    )
    return list(session.scalars(query))
