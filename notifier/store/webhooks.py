"""Webhooks out: the clinic's endpoints, and the outbox of deliveries with their claims.

A delivery moves `pending → sending → delivered`, or back to `pending` (a failure with a
retry left, or a lease that ran out) or on to `dead` (no retry left); staff send a dead one
again (`dead → pending`). Each move is a conditional update on the row's status, and a
worker's own moves also name its attempt, so a worker whose lease ran out moves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from ..models import WebhookDelivery, WebhookEndpoint

PENDING, SENDING, DELIVERED, DEAD = "pending", "sending", "delivered", "dead"
UNFINISHED = (PENDING, SENDING)


def endpoints(session: Session) -> list[WebhookEndpoint]:
    """The endpoints not removed, oldest first."""
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.removed_at.is_(None))
        .order_by(WebhookEndpoint.id)
    )
    return list(session.scalars(query))


def endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint | None:
    """The endpoint, unless it was removed."""
    found = session.get(WebhookEndpoint, endpoint_id)
    return found if found is not None and found.removed_at is None else None


def subscribed(session: Session, event: str) -> list[WebhookEndpoint]:
    return [e for e in endpoints(session) if event in e.events.split(",")]


def remove(session: Session, endpoint_id: int, now: datetime) -> bool:
    """Marks the endpoint removed and gives up its unsent deliveries (they go `dead`)."""
    moved = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.removed_at.is_(None))
        .values(removed_at=now)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == PENDING)
        .values(status=DEAD, lease_until=None, last_error="the endpoint was removed")
    )
    return True


def delivery(session: Session, delivery_id: int) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id)


def in_stream(session: Session, stream: str) -> list[WebhookDelivery]:
    """Every delivery of one stream, in its order."""
    query = select(WebhookDelivery).where(WebhookDelivery.stream == stream)
    return list(session.scalars(query.order_by(WebhookDelivery.id)))


def dead(session: Session, limit: int = 200) -> list[WebhookDelivery]:
    """The dead letters, the latest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.status == DEAD)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def counts(session: Session) -> dict[tuple[int | None, str], int]:
    """Deliveries by (endpoint, status)."""
    query = select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count()).group_by(
        WebhookDelivery.endpoint_id, WebhookDelivery.status
    )
    return {(e, s): n for e, s, n in session.execute(query)}


def claim(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[int]:
    """pending → sending for the due deliveries that head their stream (nothing earlier in it
    unfinished), up to `limit`; returns their ids. The attempt is counted at the claim."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.stream == WebhookDelivery.stream,
        earlier.id < WebhookDelivery.id,
        earlier.status.in_(UNFINISHED),
    )
    heads = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.due_at <= now, ~blocked)
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    ids = list(session.scalars(heads))
    if not ids:
        return []
    claimed = session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == PENDING)
        .values(status=SENDING, attempts=WebhookDelivery.attempts + 1, lease_until=lease_until)
        .returning(WebhookDelivery.id)
    )
    return sorted(claimed)


def reap(session: Session, now: datetime) -> int:
    """sending → pending, due now, where the worker's lease ran out (it died, or hangs): the
    endpoint may have had it, so it goes again with the same `webhook-id`."""
    moved = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == SENDING, WebhookDelivery.lease_until < now)
        .values(status=PENDING, due_at=now, lease_until=None, last_error="lease expired")
    )
    return int(moved.rowcount)  # type: ignore[attr-defined]


def _held(delivery_id: int, attempt: int) -> list[object]:
    return [
        WebhookDelivery.id == delivery_id,
        WebhookDelivery.status == SENDING,
        WebhookDelivery.attempts == attempt,
    ]


def delivered(session: Session, delivery_id: int, attempt: int, now: datetime) -> bool:
    """sending → delivered, if this attempt still holds it."""
    moved = session.execute(
        update(WebhookDelivery)
        .where(*_held(delivery_id, attempt))  # type: ignore[arg-type]
        .values(status=DELIVERED, delivered_at=now, lease_until=None, last_error=None)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def failed(
    session: Session, delivery_id: int, attempt: int, retry_at: datetime | None, error: str
) -> bool:
    """sending → pending due at `retry_at`, or → dead when there is no retry left."""
    values: dict[str, object] = {"lease_until": None, "last_error": error[:500]}
    if retry_at is None:
        values["status"] = DEAD
    else:
        values.update(status=PENDING, due_at=retry_at)
    moved = session.execute(
        update(WebhookDelivery)
        .where(*_held(delivery_id, attempt))  # type: ignore[arg-type]
        .values(**values)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def redeliver(session: Session, delivery_ids: Iterable[int], now: datetime) -> int:
    """dead → pending, due now, with its attempts counted afresh."""
    moved = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(list(delivery_ids)), WebhookDelivery.status == DEAD)
        .values(status=PENDING, due_at=now, attempts=0, last_error=None)
    )
    return int(moved.rowcount)  # type: ignore[attr-defined]
