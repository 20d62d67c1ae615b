"""What /metrics counts, read at scrape time: every process writes what it did to the
database, so one scrape of one web process adds up every worker and clock on every machine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ..models import BookingEvent, Counter, InboundMessage, Notification, NotificationEvent

# Names of `counters` rows: a replayed booking event by its type, a refused webhook by its path.
DUPLICATE_EVENTS = "duplicate_event"
REFUSED_WEBHOOKS = "refused_webhook"
# The states a message can reach that /metrics counts as an outcome, each once per time it
# was reached (a message sent, then delivered, counts in both).
OUTCOMES = ("sent", "delivered", "undelivered", "failed", "unknown", "suppressed", "cancelled")


def messages_by_outcome(session: Session) -> Sequence[Row[Any]]:
    """(kind, channel, outcome, count) from the messages' history."""
    return session.execute(
        select(Notification.kind, Notification.channel, NotificationEvent.status, func.count())
        .join(NotificationEvent, NotificationEvent.notification_id == Notification.id)
        .where(NotificationEvent.status.in_(OUTCOMES))
        .group_by(Notification.kind, Notification.channel, NotificationEvent.status)
    ).all()


def replies_by_intent(session: Session) -> Sequence[Row[Any]]:
    """(intent, count) of the texts patients sent."""
    return session.execute(
        select(InboundMessage.intent, func.count()).group_by(InboundMessage.intent)
    ).all()


def events_by_outcome(session: Session) -> Sequence[Row[Any]]:
    """(type, outcome, count) of the booking events recorded."""
    return session.execute(
        select(BookingEvent.type, BookingEvent.outcome, func.count()).group_by(
            BookingEvent.type, BookingEvent.outcome
        )
    ).all()


def counted(session: Session, name: str) -> Sequence[Row[Any]]:
    """(label, value) of a counter."""
    return session.execute(
        select(Counter.label, Counter.value).where(Counter.name == name).order_by(Counter.label)
    ).all()


def bump(session: Session, name: str, label: str) -> None:
    """Adds one to a counter, in one statement whoever else adds at the same time (the caller
    commits)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Counter).values(name=name, label=label, value=1)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Counter.name, Counter.label], set_={"value": Counter.value + 1}
        )
    )


def _seconds(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def timing_buckets(
    session: Session, bounds: Sequence[float]
) -> dict[str, tuple[list[int], float, int]]:
    """For `lateness` (sent minus planned time) and `latency` (the provider call: from the
    last `sending` to `sent`) of every message sent: the count at or under each bound, the
    sum of the seconds and the count."""
    dialect = session.get_bind().dialect.name
    started = (
        select(NotificationEvent.notification_id, func.max(NotificationEvent.at).label("at"))
        .where(NotificationEvent.status == "sending")
        .group_by(NotificationEvent.notification_id)
        .subquery()
    )
    measures = {
        "lateness": _seconds(Notification.sent_at, Notification.planned_for, dialect),
        "latency": _seconds(Notification.sent_at, started.c.at, dialect),
    }
    answer = {}
    for name, seconds in measures.items():
        columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds]
        query = select(*columns, func.coalesce(func.sum(seconds), 0.0), func.count()).where(
            Notification.sent_at.is_not(None)
        )
        if name == "latency":
            query = query.join(started, started.c.notification_id == Notification.id)
        else:
            query = query.select_from(Notification)
        row = session.execute(query).one()
        answer[name] = ([int(v or 0) for v in row[:-2]], float(row[-2]), int(row[-1]))
    return answer
