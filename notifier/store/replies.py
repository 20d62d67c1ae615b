"""Replies from patients (inbound messages): the staff inbox, what staff handled lately, and
an appointment's replies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from ..models import Appointment, InboundMessage


def needing_staff(session: Session, location_ids: list[str], limit: int) -> list[InboundMessage]:
    """The worklist's replies: someone has to read them and nobody has handled them yet,
    newest first (past `limit`, the oldest wait for the list to shorten)."""
    query = _needing_staff(location_ids).order_by(InboundMessage.received_at.desc())
    return list(session.scalars(query.limit(limit)))


def count_needing_staff(session: Session, location_ids: list[str]) -> int:
    return session.scalar(_needing_staff(location_ids).with_only_columns(func.count())) or 0


def _needing_staff(location_ids: list[str]) -> Select[tuple[InboundMessage]]:
    # A reply we could not match to an appointment shows in every location's inbox: someone
    # has to read it, and no one location can be sure it is not theirs.
    return (
        select(InboundMessage)
        .outerjoin(Appointment, InboundMessage.appointment_id == Appointment.id)
        .where(
            InboundMessage.needs_staff.is_(True),
            InboundMessage.handled_at.is_(None),
            or_(InboundMessage.appointment_id.is_(None), Appointment.location_id.in_(location_ids)),
        )
    )


def recently_handled(session: Session, location_ids: list[str], limit: int) -> list[InboundMessage]:
    """Replies staff marked as handled, the latest first (unmatched ones at every location)."""
    query = (
        select(InboundMessage)
        .outerjoin(Appointment, InboundMessage.appointment_id == Appointment.id)
        .where(
            InboundMessage.handled_at.is_not(None),
            or_(InboundMessage.appointment_id.is_(None), Appointment.location_id.in_(location_ids)),
        )
        .order_by(InboundMessage.handled_at.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def for_appointment(session: Session, appointment_id: str) -> list[InboundMessage]:
    query = (
        select(InboundMessage)
        .where(InboundMessage.appointment_id == appointment_id)
        .order_by(InboundMessage.received_at)
    )
    return list(session.scalars(query))


def mark_handled(session: Session, message_id: int, staff: str, now: datetime) -> bool:
    """Marks a reply handled (and so read) unless someone did already; False then (or if
    there is none)."""
    handled = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == message_id, InboundMessage.handled_at.is_(None))
        .values(
            handled_at=now,
            handled_by=staff,
            read_at=func.coalesce(InboundMessage.read_at, now),
        )
        .returning(InboundMessage.id),
        execution_options={"synchronize_session": False},
    ).first()
    return handled is not None


def seen(session: Session, provider_id: str) -> bool:
    """Whether the inbound message with this provider id is recorded already."""
    return bool(
        session.scalar(select(InboundMessage.id).where(InboundMessage.provider_id == provider_id))
    )


def auto_replied_since(session: Session, phone: str, since: datetime) -> bool:
    """Whether this number got an automatic answer to a message for staff after `since`."""
    recent = select(InboundMessage.id).where(
        InboundMessage.from_number == phone,
        InboundMessage.needs_staff.is_(True),
        InboundMessage.appointment_id.is_(None) | (InboundMessage.intent == "other"),
        InboundMessage.auto_replied.is_(True),
        InboundMessage.received_at > since,
    )
    return session.scalar(recent.limit(1)) is not None
