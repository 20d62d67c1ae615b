"""A patient's conversation: the texts we sent them and what they sent us (by SMS, or by a
link in an email), which of their replies staff have not read, and the items of the worklist
that are not replies (failed messages nobody has taken care of)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from ..models import Appointment, InboundMessage, Notification
from ..states import Status

# Texts that left, or were meant to: what a conversation shows of ours.
_SHOWN = (Status.SENDING, Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED,
          Status.UNKNOWN)  # fmt: skip
# The replies someone should read; a plain "C" or HELP the service answered by itself is not one.
UNREAD_INTENTS = ("reschedule", "stop", "other")


def texts_to(session: Session, patient_id: str, limit: int) -> list[Notification]:
    """The SMS to the patient that went out (or failed to), and staff messages however far
    they got, the latest `limit` of them."""
    query = (
        select(Notification)
        .where(
            Notification.patient_id == patient_id,
            Notification.channel == "sms",
            or_(Notification.status.in_(_SHOWN), Notification.kind == "staff_message"),
        )
        .order_by(func.coalesce(Notification.sent_at, Notification.created_at).desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def _from_patient(patient_id: str, phone: str | None) -> Select[tuple[InboundMessage]]:
    mine = InboundMessage.patient_id == patient_id
    return select(InboundMessage).where(
        or_(mine, InboundMessage.from_number == phone) if phone else mine
    )


def replies_from(
    session: Session, patient_id: str, phone: str | None, limit: int
) -> list[InboundMessage]:
    """The patient's replies (and link answers), the latest `limit` of them."""
    query = _from_patient(patient_id, phone).order_by(InboundMessage.received_at.desc())
    return list(session.scalars(query.limit(limit)))


def last_text_from(session: Session, patient_id: str, phone: str | None) -> InboundMessage | None:
    """The patient's latest text (not a link answer)."""
    query = _from_patient(patient_id, phone).where(InboundMessage.channel == "sms")
    return session.scalar(query.order_by(InboundMessage.received_at.desc()).limit(1))


def mark_read(session: Session, patient_id: str, phone: str | None, now: datetime) -> int:
    """Marks the patient's unread replies read; returns how many were unread."""
    mine = InboundMessage.patient_id == patient_id
    whose = or_(mine, InboundMessage.from_number == phone) if phone else mine
    result = session.execute(
        update(InboundMessage)
        .where(whose, InboundMessage.read_at.is_(None))
        .values(read_at=now)
        .returning(InboundMessage.id),
        execution_options={"synchronize_session": False},
    )
    return len(result.all())


def unread_by_location(session: Session) -> dict[str | None, int]:
    """Unread replies someone should read, by the location of their appointment (None: the
    reply matched no appointment)."""
    query = (
        select(Appointment.location_id, func.count())
        .select_from(InboundMessage)
        .outerjoin(Appointment, InboundMessage.appointment_id == Appointment.id)
        .where(InboundMessage.read_at.is_(None), InboundMessage.intent.in_(UNREAD_INTENTS))
        .group_by(Appointment.location_id)
    )
    return {location: count for location, count in session.execute(query).tuples()}


def next_appointment(session: Session, patient_id: str, now: datetime) -> Appointment | None:
    """The appointment a staff message belongs with: the next booked one, else the latest."""
    booked = select(Appointment).where(
        Appointment.patient_id == patient_id,
        Appointment.status == "booked",
        Appointment.start_at > now,
    )
    upcoming = session.scalar(booked.order_by(Appointment.start_at).limit(1))
    if upcoming is not None:
        return upcoming
    latest = select(Appointment).where(Appointment.patient_id == patient_id)
    return session.scalar(latest.order_by(Appointment.start_at.desc()).limit(1))


def has_open_link_request(session: Session, appointment_id: str) -> bool:
    """Whether a reschedule asked for through an email's link still waits for staff."""
    query = select(InboundMessage.id).where(
        InboundMessage.appointment_id == appointment_id,
        InboundMessage.channel == "link",
        InboundMessage.handled_at.is_(None),
    )
    return session.scalar(query.limit(1)) is not None


def open_failures(session: Session, location_ids: list[str], limit: int) -> Sequence[Notification]:
    """Failed messages at these locations nobody has taken care of, the latest first, with
    their appointment, patient and history."""
    query = (
        select(Notification)
        .join(Appointment, Notification.appointment_id == Appointment.id)
        .where(
            Notification.status == Status.FAILED,
            Notification.settled_at.is_(None),
            Appointment.location_id.in_(location_ids),
        )
        .options(
            selectinload(Notification.appointment).selectinload(Appointment.patient),
            selectinload(Notification.history),
        )
        .order_by(Notification.updated_at.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def count_open_failures(session: Session, location_ids: list[str]) -> int:
    query = (
        select(func.count())
        .select_from(Notification)
        .join(Appointment, Notification.appointment_id == Appointment.id)
        .where(
            Notification.status == Status.FAILED,
            Notification.settled_at.is_(None),
            Appointment.location_id.in_(location_ids),
        )
    )
    return session.scalar(query) or 0


def settle_failure(session: Session, notification_id: int, staff: str, now: datetime) -> bool:
    """Takes a failed message off the worklist unless someone did already (False then). Its
    status stays `failed`: settling says a person took care of it, not that it was sent."""
    settled = session.execute(
        update(Notification)
        .where(
            and_(
                Notification.id == notification_id,
                Notification.status == Status.FAILED,
                Notification.settled_at.is_(None),
            )
        )
        .values(settled_at=now, settled_by=staff)
        .returning(Notification.id),
        execution_options={"synchronize_session": False},
    ).first()
    return settled is not None
