"""Every state a notification and an appointment's confirmation can be in, the moves allowed
between them (as data), and the only code that changes them.

A notification moves by conditional update: `UPDATE … WHERE status IN (sources)`, and the ids
it returns say who won, so two actors can never both make the same move. `transition` is the
general move and checks the table before it touches the database. The busiest moves (the
clock's claim, the worker's hold, its deferrals and its record of what was sent) are single
statements of their own, written once here for each database; each declares its move, and the
table must allow it.

`python -m notifier.states` prints the tables as Markdown (docs/architecture.md holds them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    String,
    Table,
    Text,
    bindparam,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import priority
from .models import Appointment, Notification, NotificationEvent, SmsFirstText, UTCDateTime


class Status(StrEnum):
    """A notification's state (the `status` column and its history's)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"


# Not yet handed to a worker: a re-plan may still cancel these.
PENDING = (Status.SCHEDULED, Status.QUEUED)
# The states whose lease the reaper and reconciliation watch (`models.IN_FLIGHT` in SQL).
IN_FLIGHT = (Status.QUEUED, Status.SENDING, Status.UNKNOWN)

_S = Status
# Every move a notification can make, and what makes it. The table below is derived from it.
_MOVES: tuple[tuple[Status, Status, str], ...] = (
    (_S.SCHEDULED, _S.QUEUED, "due: the clock claims it (`claim`)"),
    (_S.SCHEDULED, _S.CANCELLED, "a re-plan no longer wants it"),
    (_S.QUEUED, _S.SENDING, "a worker holds it for its call (`hold`)"),
    (
        _S.QUEUED,
        _S.SCHEDULED,
        "no slot of its sender within the second (`defer`), quiet hours, a transient error"
        " before the call, or its claim's lease ran out",
    ),
    (_S.QUEUED, _S.CANCELLED, "a re-plan or the send-time re-check: the visit no longer wants it"),
    (_S.QUEUED, _S.SUPPRESSED, "the send-time re-check (opted out, no consent, stale, …)"),
    (_S.QUEUED, _S.FAILED, "a transient error before the call, at the last attempt"),
    (_S.SENDING, _S.SENT, "the provider took it (`record_sent`)"),
    (_S.SENDING, _S.FAILED, "a permanent provider error, or a transient one at the last attempt"),
    (_S.SENDING, _S.UNKNOWN, "no answer from the provider, or its worker's lease ran out"),
    (_S.SENDING, _S.SCHEDULED, "a transient provider error (with a backoff), or quiet hours"),
    (_S.SENDING, _S.CANCELLED, "the look right before the call: the visit no longer wants it"),
    (_S.SENDING, _S.SUPPRESSED, "the look right before the call (opted out, stale, …)"),
    (_S.UNKNOWN, _S.SENT, "found at the provider, or its answer came late (`record_sent`)"),
    (_S.UNKNOWN, _S.SCHEDULED, "not found at the provider"),
    (_S.SENT, _S.DELIVERED, "a delivery receipt"),
    (_S.SENT, _S.UNDELIVERED, "a delivery receipt"),
    (_S.SENT, _S.FAILED, "a delivery receipt"),
    (_S.FAILED, _S.SCHEDULED, "staff retry it"),
)
MOVES: dict[Status, frozenset[Status]] = {
    source: frozenset(to for s, to, _ in _MOVES if s == source) for source in Status
}
# No move leaves these.
FINAL = frozenset(s for s in Status if not MOVES[s])


class ForbiddenMove(ValueError):
    """A move the table does not allow; raised before the database is touched."""


def check(sources: Iterable[str], to: str) -> None:
    """Raises ForbiddenMove unless the table allows the move to `to` from each of `sources`."""
    forbidden = sorted(s for s in sources if Status(to) not in MOVES[Status(s)])
    if forbidden:
        raise ForbiddenMove(f"a notification cannot move from {', '.join(forbidden)} to {to}")


def transition(
    session: Session,
    ids: Iterable[int] | Select[tuple[int]],
    from_statuses: Iterable[Status],
    to_status: Status,
    now: datetime,
    detail: str | None = None,
    *,
    history: bool = True,
    **values: Any,
) -> list[int]:
    """Moves the rows still in one of `from_statuses` to `to_status`; returns the ids that moved.

    The row count decides who won: an id missing from the answer was moved by someone else first.
    Each move is written to the rows' history unless `history` is False. A move the table does
    not allow raises ForbiddenMove.
    """
    from_statuses = list(from_statuses)
    check(from_statuses, to_status)
    if not isinstance(ids, Select):
        ids = list(ids)
        if not ids:
            return []
    stmt = (
        update(Notification)
        .where(Notification.id.in_(ids), Notification.status.in_(from_statuses))
        .values(status=to_status, updated_at=now, **values)
        .returning(Notification.id)
    )
    if not history:
        return list(session.scalars(stmt, execution_options={"synchronize_session": False}))
    if session.get_bind().dialect.name == "postgresql":
        # One statement moves the rows and writes their history: a claim of a thousand rows
        # costs one round trip, and no thousand-row list passes through Python twice.
        moved = stmt.cte("moved")
        written = insert(NotificationEvent).from_select(
            ["notification_id", "status", "at", "detail"],
            select(
                moved.c.id,
                literal(to_status, String()),
                literal(now, UTCDateTime()),
                literal(detail),
            ),
        )
        return list(session.scalars(written.returning(NotificationEvent.notification_id)))
    won = list(session.scalars(stmt, execution_options={"synchronize_session": False}))
    record(session, won, to_status, now, detail)
    return won


def record(
    session: Session, ids: list[int], status: Status, now: datetime, detail: str | None
) -> None:
    """Writes a state the rows took to their history."""
    if ids:
        rows = [{"notification_id": i, "status": status, "at": now, "detail": detail} for i in ids]
        session.execute(insert(NotificationEvent), rows)


def enter(session: Session, row: Notification, now: datetime, detail: str) -> bool:
    """A notification made by hand enters the table `scheduled`, with its history (caller
    commits; make it first in its transaction). False when a unique slot says it exists
    already: the session is then rolled back, so the same form posted twice makes one message."""
    row.status, row.attempts, row.created_at, row.updated_at = Status.SCHEDULED, 0, now, now
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    record(session, [row.id], Status.SCHEDULED, now, detail)
    return True


@dataclass(frozen=True)
class Move:
    """The move one of the single statements below makes."""

    sources: frozenset[Status]
    to: Status


CLAIM = Move(frozenset({Status.SCHEDULED}), Status.QUEUED)
DEFER = Move(frozenset({Status.QUEUED}), Status.SCHEDULED)
HOLD = Move(frozenset({Status.QUEUED}), Status.SENDING)
# Only this worker's lease-held rows are `sending`; an `unknown` row (its lease lapsed under a
# very slow provider) was sent all the same.
RECORD_SENT = Move(frozenset({Status.SENDING, Status.UNKNOWN}), Status.SENT)
STATEMENTS = {"claim": CLAIM, "defer": DEFER, "hold": HOLD, "record_sent": RECORD_SENT}
for _move in STATEMENTS.values():
    check(_move.sources, _move.to)


# On PostgreSQL the claim is one statement that finds, locks and moves the due rows. It names
# them by their place in the table (ctid), which the row lock keeps still until the update, so
# the update needs no second index lookup per row. Two clocks claiming at once skip each
# other's rows instead of waiting on them. The due rows are read one priority after the other
# (`priority.LEVELS`), each a range of the index on (priority, due_at): a scan of that index in
# its own order would walk every future row of a priority before reaching the next one.
_CLAIM = text(
    """
    WITH due AS (
        SELECT d.ctid, d.priority, d.due_at
        FROM unnest(CAST(:levels AS smallint[])) WITH ORDINALITY AS p (level, n)
        CROSS JOIN LATERAL (
            SELECT ctid, priority, due_at FROM notifications
            WHERE status = 'scheduled' AND priority = p.level AND due_at <= :now
            ORDER BY due_at
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        ) AS d
        LIMIT :limit
    )
    UPDATE notifications
    SET status = 'queued', updated_at = :now, lease_owner = :owner, lease_until = :until
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM due)) AND status = 'scheduled'
    RETURNING id, priority, due_at
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))


def claim(session: Session, now: datetime, owner: str, limit: int, lease: timedelta) -> list[int]:
    """scheduled → queued for up to `limit` due rows, the most urgent first and, within a
    priority, the soonest due; returns their ids in that order.

    Writes no history: `queued` is a hand-off that lasts milliseconds, the row names its clock
    and time (`lease_owner`, `updated_at`) while it lasts, and an abandoned claim is written
    down when the reaper returns it."""
    if session.get_bind().dialect.name == "postgresql":
        values = {
            "now": now,
            "limit": limit,
            "owner": owner,
            "until": now + lease,
            "levels": list(priority.LEVELS),
        }
        rows = session.execute(_CLAIM, values).all()
        return [row.id for row in sorted(rows, key=lambda r: (r.priority, r.due_at, r.id))]
    due = (
        select(Notification.id)
        .where(Notification.status == Status.SCHEDULED, Notification.due_at <= now)
        .order_by(Notification.priority, Notification.due_at)
        .limit(limit)
    )
    ids = transition(
        session, due, CLAIM.sources, CLAIM.to, now,
        history=False, lease_owner=owner, lease_until=now + lease,
    )  # fmt: skip
    if not ids:
        return ids
    order = select(Notification.id).where(Notification.id.in_(ids))
    return list(
        session.scalars(order.order_by(Notification.priority, Notification.due_at, Notification.id))
    )


_table = cast(Table, Notification.__table__)
# Like the clock's claim, this hand-back writes no history.
_DEFER = (
    update(_table)
    .where(_table.c.id == bindparam("nid"), _table.c.status == Status.QUEUED)
    .values(
        status=Status.SCHEDULED,
        due_at=bindparam("due"),
        updated_at=bindparam("now"),
        lease_owner=None,
        lease_until=None,
    )
)


def defer(session: Session, due: dict[int, datetime], now: datetime) -> None:
    """queued → scheduled, each row due at its time in `due`: a message whose sender has no
    slot for it yet goes back to the schedule."""
    if due:
        session.execute(_DEFER, [{"nid": i, "due": at, "now": now} for i, at in due.items()])


# PostgreSQL: `hold` in one statement, the bodies and the history with it.
_HOLD = text(
    """
    WITH held AS (
        UPDATE notifications AS n
        SET status = 'sending', updated_at = :now, lease_owner = :owner, lease_until = :until,
            attempts = n.attempts + 1, body = s.body
        FROM unnest(:ids, :bodies) AS s (id, body)
        WHERE n.id = s.id AND n.status = 'queued'
        RETURNING n.id
    ), history AS (
        INSERT INTO notification_events (notification_id, status, at)
        SELECT id, 'sending', :now FROM held
    )
    SELECT id FROM held
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Integer())),
    bindparam("bodies", type_=ARRAY(Text())),
    bindparam("now", type_=UTCDateTime()),
    bindparam("until", type_=UTCDateTime()),
)


def hold(
    session: Session, bodies: dict[int, str], now: datetime, owner: str, until: datetime
) -> set[int]:
    """queued → sending for the rows in `bodies` (id → the text to send, stored for
    reconciliation), leased to `owner` until `until`; returns the ids it holds."""
    if session.get_bind().dialect.name == "postgresql":
        values = {
            "ids": list(bodies),
            "bodies": list(bodies.values()),
            "now": now,
            "owner": owner,
            "until": until,
        }
        return set(session.scalars(_HOLD, values))
    held = set(
        transition(
            session, list(bodies), HOLD.sources, HOLD.to, now,
            lease_owner=owner, lease_until=until, attempts=Notification.attempts + 1,
        )
    )  # fmt: skip
    if held:
        session.execute(
            update(Notification), [{"id": i, "body": b} for i, b in bodies.items() if i in held]
        )
    return held


# SQLite: sending → sent for one row of many; the ids it returns are the rows it moved.
_MARK_SENT = (
    update(_table)
    .where(
        _table.c.id == bindparam("nid"),
        or_(*(_table.c.status == s for s in sorted(RECORD_SENT.sources))),
    )
    .values(
        status=Status.SENT,
        provider_id=bindparam("pid"),
        sent_at=bindparam("at"),
        updated_at=bindparam("at"),
        lease_owner=None,
        lease_until=None,
    )
    .returning(_table.c.id)
)
# PostgreSQL: what `record_sent` writes, in one statement: the rows, their history, and which of
# them had a delivery receipt come first. Its commit does not wait for the disk: a database
# server that crashed before writing it down would leave the rows `sending`, as a killed worker
# does, and reconciliation settles them; the hold before the call always waits.
_RECORD_SENT = text(
    """
    WITH relaxed AS (
        SELECT set_config('synchronous_commit', 'off', true)
    ), sent AS (
        UPDATE notifications AS n
        SET status = 'sent', provider_id = s.pid, sent_at = s.at, updated_at = s.at,
            lease_owner = NULL, lease_until = NULL
        FROM unnest(:ids, :pids, :ats, :phones) AS s (id, pid, at, phone), relaxed
        WHERE n.id = s.id AND n.status IN ('sending', 'unknown')
        RETURNING n.id, s.pid, s.at, s.phone
    ), history AS (
        INSERT INTO notification_events (notification_id, status, at)
        SELECT id, 'sent', at FROM sent
    ), first_texts AS (
        INSERT INTO sms_first_texts (phone, notification_id, sent_at)
        SELECT DISTINCT ON (phone) phone, id, at FROM sent WHERE phone IS NOT NULL
        ORDER BY phone, id
        ON CONFLICT (phone) DO NOTHING
    )
    SELECT e.provider_id FROM early_receipts AS e JOIN sent ON e.provider_id = sent.pid
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Integer())),
    bindparam("pids", type_=ARRAY(String())),
    bindparam("ats", type_=ARRAY(UTCDateTime())),
    bindparam("phones", type_=ARRAY(String())),
)


def record_sent(session: Session, sent: list[dict[str, Any]]) -> list[str]:
    """sending (or unknown) → sent for each of `sent` ({"nid", "pid": the provider's id,
    "at", "phone": the number a text went to, None for an email}), with its history, and
    the number's first text where it had none before (`record_first_texts`); returns the
    provider ids that may have a delivery receipt waiting (`track.apply_early_receipts`)."""
    if not sent:
        return []
    if session.get_bind().dialect.name == "postgresql":
        columns = {"ids": "nid", "pids": "pid", "ats": "at", "phones": "phone"}
        values = {name: [r.get(key) for r in sent] for name, key in columns.items()}
        return list(session.scalars(_RECORD_SENT, values))
    moved = [r for r in sent if session.execute(_MARK_SENT, r).first() is not None]
    if moved:
        history = [
            {"notification_id": r["nid"], "status": Status.SENT, "at": r["at"]} for r in moved
        ]
        session.execute(insert(NotificationEvent), history)
        record_first_texts(session, moved)
    return [r["pid"] for r in moved]


def record_first_texts(session: Session, sent: list[dict[str, Any]]) -> None:
    """Marks the numbers among `sent` ({"nid", "at", "phone"}) as having had their first
    text; a number marked before keeps its first. Written in the transaction that records the
    send: the mark and the record of the send are committed together or not at all."""
    rows = {r["phone"]: r for r in sorted(sent, key=lambda r: -r["nid"]) if r.get("phone")}
    if not rows:
        return
    values = [
        {"phone": p, "notification_id": r["nid"], "sent_at": r["at"]} for p, r in rows.items()
    ]
    dialect = session.get_bind().dialect.name
    stmt = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(SmsFirstText)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["phone"]), values)


class Confirmation(StrEnum):
    """What the patient said about an appointment's time (`appointments.confirmation`)."""

    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    WANTS_RESCHEDULE = "wants_reschedule"


_C = Confirmation
# The patient answers by reply or link (the latest answer counts, and a repeated one is
# recorded again); a new time asks again; a cancel made to rebook wants a new time.
_CONFIRMATION_MOVES: tuple[tuple[Confirmation, Confirmation, str], ...] = (
    (_C.UNCONFIRMED, _C.CONFIRMED, "the patient confirms (reply or link)"),
    (_C.UNCONFIRMED, _C.WANTS_RESCHEDULE, "the patient asks for another time, or rebooks"),
    (_C.UNCONFIRMED, _C.UNCONFIRMED, "the visit moves to a new time"),
    (_C.CONFIRMED, _C.CONFIRMED, "the patient confirms again"),
    (_C.CONFIRMED, _C.WANTS_RESCHEDULE, "the patient asks for another time, or rebooks"),
    (_C.CONFIRMED, _C.UNCONFIRMED, "the visit moves to a new time"),
    (_C.WANTS_RESCHEDULE, _C.CONFIRMED, "the patient confirms after all"),
    (_C.WANTS_RESCHEDULE, _C.WANTS_RESCHEDULE, "the patient asks again, or rebooks"),
    (_C.WANTS_RESCHEDULE, _C.UNCONFIRMED, "the visit moves to a new time"),
)
CONFIRMATION_MOVES: dict[Confirmation, frozenset[Confirmation]] = {
    source: frozenset(to for s, to, _ in _CONFIRMATION_MOVES if s == source)
    for source in Confirmation
}


def set_confirmation(appointment: Appointment, to: Confirmation, now: datetime) -> None:
    """Sets the appointment's confirmation (caller commits); raises ForbiddenMove for a move
    the table does not allow."""
    source = Confirmation(appointment.confirmation)
    if to not in CONFIRMATION_MOVES[source]:
        raise ForbiddenMove(f"a confirmation cannot move from {source} to {to}")
    appointment.confirmation, appointment.confirmation_at = to, now


def markdown() -> str:
    """The tables of moves, as docs/architecture.md shows them."""
    lines = ["| from | to | when |", "|---|---|---|"]
    lines += [f"| `{s}` | `{to}` | {why} |" for s, to, why in _MOVES]
    lines += ["", "Final: " + ", ".join(f"`{s}`" for s in Status if s in FINAL) + "."]
    lines += ["", "| confirmation from | to | when |", "|---|---|---|"]
    lines += [f"| `{s}` | `{to}` | {why} |" for s, to, why in _CONFIRMATION_MOVES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
