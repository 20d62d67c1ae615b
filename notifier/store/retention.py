"""Retention: the message bodies and reply texts past the clinic's period, counted and blanked
in batches. The rows stay, with their states and times, so history and counts do not change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from ..models import InboundMessage, Notification

# A body is kept while the message may still be looked up at the provider (reconciliation).
_SETTLED = ("sent", "delivered", "undelivered", "failed", "cancelled", "suppressed")


def _old_bodies(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Notification.body.is_not(None),
        Notification.body != "",
        Notification.status.in_(_SETTLED),
        func.coalesce(Notification.sent_at, Notification.updated_at) < cutoff,
    )


def _old_replies(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    return (InboundMessage.body != "", InboundMessage.received_at < cutoff)


def count_old(session: Session, cutoff: datetime) -> tuple[int, int]:
    """How many message bodies and reply texts are older than `cutoff` and not yet blank."""
    bodies = session.scalar(select(func.count()).where(*_old_bodies(cutoff)))
    replies = session.scalar(select(func.count()).where(*_old_replies(cutoff)))
    return int(bodies or 0), int(replies or 0)


def blank_bodies(session: Session, cutoff: datetime, limit: int) -> int:
    """Blanks up to `limit` old message bodies; returns how many."""
    ids = list(session.scalars(select(Notification.id).where(*_old_bodies(cutoff)).limit(limit)))
    if ids:
        session.execute(update(Notification).where(Notification.id.in_(ids)).values(body=None))
    return len(ids)


def blank_replies(session: Session, cutoff: datetime, limit: int) -> int:
    """Blanks up to `limit` old reply texts; returns how many."""
    query = select(InboundMessage.id).where(*_old_replies(cutoff)).limit(limit)
    ids = list(session.scalars(query))
    if ids:
        session.execute(update(InboundMessage).where(InboundMessage.id.in_(ids)).values(body=""))
    return len(ids)
