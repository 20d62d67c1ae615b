"""What the front desk did to visits: an appointment's actions, one by its form's token, and
the compare-and-set that undoes one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from ..models import Notification, VisitAction
from ..states import PENDING


def by_token(session: Session, token: str) -> VisitAction | None:
    return session.scalar(select(VisitAction).where(VisitAction.token == token))


def by_id(session: Session, action_id: int) -> VisitAction | None:
    return session.get(VisitAction, action_id)


def for_appointment(session: Session, appointment_id: str) -> list[VisitAction]:
    """Oldest first."""
    query = (
        select(VisitAction)
        .where(VisitAction.appointment_id == appointment_id)
        .order_by(VisitAction.at, VisitAction.id)
    )
    return list(session.scalars(query))


def mark_undone(session: Session, action_id: int, staff: str, now: datetime) -> bool:
    """Whether this call undid it: of two people pressing Undo at once, one wins."""
    moved = session.execute(
        update(VisitAction)
        .where(VisitAction.id == action_id, VisitAction.undone_at.is_(None))
        .values(undone_at=now, undone_by=staff)
        .returning(VisitAction.id),
        execution_options={"synchronize_session": False},
    ).first()
    return moved is not None


def pending_staff_reminders(appointment_id: str) -> Select[tuple[int]]:
    """The ids of the appointment's staff reminders not yet handed to a worker."""
    return select(Notification.id).where(
        Notification.appointment_id == appointment_id,
        Notification.kind == "manual",
        Notification.status.in_(PENDING),
    )
