"""What the message budget reads: a patient's other visits around a day, and what the patient
was sent lately."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..models import Appointment, Notification


def visits_around(session: Session, patient_id: str, start: datetime) -> list[Appointment]:
    """The patient's booked appointments starting within a day of `start` (the same local day
    is among them, whatever the zone)."""
    query = select(Appointment).where(
        Appointment.patient_id == patient_id,
        Appointment.status == "booked",
        Appointment.start_at > start - timedelta(days=1),
        Appointment.start_at < start + timedelta(days=1),
    )
    return list(session.scalars(query.order_by(Appointment.start_at, Appointment.id)))


def last_sent(
    session: Session,
    patient_id: str,
    not_id: int,
    channels: Collection[str] = ("sms", "email"),
    kinds: Collection[str] | None = None,
) -> tuple[datetime, str] | None:
    """When the patient was last sent a message on these channels (of these kinds), other than
    notification `not_id`, and for which appointment."""
    query = select(Notification.sent_at, Notification.appointment_id).where(
        Notification.patient_id == patient_id,
        Notification.provider_id.is_not(None),
        Notification.sent_at.is_not(None),
        Notification.channel.in_(channels),
        Notification.id != not_id,
    )
    if kinds is not None:
        query = query.where(Notification.kind.in_(kinds))
    row = session.execute(query.order_by(Notification.sent_at.desc()).limit(1)).first()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def text_going_out(
    session: Session, patient_id: str, n_id: int, first: Collection[str]
) -> str | None:
    """The appointment of a text to the patient that is on its way now (claimed, being sent, or
    its answer lost) and goes before notification `n_id`: one of the `first` kinds, or an
    older row. None if there is none. Two texts claimed at once are thus never both sent."""
    query = select(Notification.appointment_id).where(
        Notification.patient_id == patient_id,
        Notification.channel == "sms",
        Notification.status.in_(("queued", "sending", "unknown")),
        Notification.id != n_id,
        or_(Notification.kind.in_(first), Notification.id < n_id),
    )
    return session.scalars(query.limit(1)).first()
