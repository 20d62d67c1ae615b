"""Planned notifications: the rows a re-plan compares with the plan, and the insert of new ones
with their history, written once per database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from .. import priority
from ..models import Appointment, Notification, UTCDateTime, utc_naive
from ..states import Status, record


class PlannedRow(Protocol):
    """What the store needs of a planned notification (the policy's `Planned`)."""

    @property
    def kind(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def slot(self) -> str: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def ask_confirm(self) -> bool: ...


def replannable(session: Session, appointment_id: str) -> list[Notification]:
    """The appointment's rows a re-plan may keep or cancel: not staff's, not the waitlist's
    offers of the freed visit, not cancelled."""
    query = select(Notification).where(
        Notification.appointment_id == appointment_id,
        Notification.kind.not_in(("manual", "staff_message", "waitlist_offer")),
        Notification.status != Status.CANCELLED,
    )
    return list(session.scalars(query))


def add(
    session: Session,
    appointment: Appointment,
    planned: Sequence[PlannedRow],
    now: datetime,
    staff: str | None,
    detail: str,
) -> list[Notification]:
    """Inserts the planned notifications, scheduled, with their history; returns them in plan
    order."""
    if session.get_bind().dialect.name == "postgresql":
        return _insert_planned(session, appointment, planned, now, staff, detail)
    rows = [
        Notification(
            appointment_id=appointment.id,
            patient_id=appointment.patient_id,
            kind=p.kind,
            channel=p.channel,
            slot=p.slot,
            ask_confirm=p.ask_confirm,
            planned_for=p.due_at,
            due_at=p.due_at,
            expires_at=p.expires_at,
            status=Status.SCHEDULED,
            attempts=0,
            staff=staff,
            created_at=now,
            updated_at=now,
        )
        for p in planned
    ]
    session.add_all(rows)
    session.flush()
    record(session, [r.id for r in rows], Status.SCHEDULED, now, detail)
    return rows


def _insert_planned(
    session: Session,
    appointment: Appointment,
    planned: Sequence[PlannedRow],
    now: datetime,
    staff: str | None,
    detail: str,
) -> list[Notification]:
    session.flush()  # a new appointment's patient_id is set by the flush
    values = {
        "appointment_id": appointment.id,
        "patient_id": appointment.patient_id,
        "staff": staff,
        "now": now,
        "detail": detail,
        **planned_arrays(planned),
    }
    return list(session.scalars(_insert_planned_statement(), values))


def planned_arrays(planned: Sequence[PlannedRow]) -> dict[str, list[Any]]:
    """The parameters of `PLANNED_INSERT`: one array per column, times naive in UTC as the
    columns hold them."""
    return {
        "kinds": [p.kind for p in planned],
        "channels": [p.channel for p in planned],
        "slots": [p.slot for p in planned],
        "priorities": [priority.of(p.kind, p.slot) for p in planned],
        "ask_confirm": [p.ask_confirm for p in planned],
        "due_at": [utc_naive(p.due_at) for p in planned],
        "expires_at": [utc_naive(p.expires_at) for p in planned],
    }


_RETURNED = ", ".join(c.name for c in Notification.__table__.c)
# PostgreSQL: planned notifications and their history, for the appointment (`id`, `patient_id`)
# of the relation named `appointment`, as the CTEs `planned` and `history`. The text is the same
# however many rows a plan has (one array per column), so it is parsed and planned once per
# connection, not once per booking as a multi-row VALUES list would be.
PLANNED_INSERT = f"""
    planned AS (
        INSERT INTO notifications (appointment_id, patient_id, kind, channel, slot,
            ask_confirm, planned_for, due_at, expires_at, status, attempts, priority, staff,
            created_at, updated_at)
        SELECT a.id, a.patient_id, p.kind, p.channel, p.slot, p.ask_confirm, p.due_at,
            p.due_at, p.expires_at, 'scheduled', 0, p.priority, CAST(:staff AS varchar), :now,
            :now
        FROM appointment AS a, unnest(CAST(:kinds AS text[]), CAST(:channels AS text[]),
            CAST(:slots AS text[]), CAST(:ask_confirm AS boolean[]),
            CAST(:due_at AS timestamp[]), CAST(:expires_at AS timestamp[]),
            CAST(:priorities AS smallint[]))
            WITH ORDINALITY AS p(kind, channel, slot, ask_confirm, due_at, expires_at,
                priority, n)
        ORDER BY p.n  -- ids follow the plan's order, as a row-by-row insert gives them
        RETURNING {_RETURNED}
    ), history AS (
        INSERT INTO notification_events (notification_id, status, at, detail)
        SELECT id, 'scheduled', :now, :detail FROM planned ORDER BY id
    )
"""


@cache
def _insert_planned_statement() -> ExecutableReturnsRows:
    """Built once: building it costs more than running it."""
    statement = text(f"""
        WITH appointment AS (
            SELECT CAST(:appointment_id AS varchar) AS id,
                CAST(:patient_id AS varchar) AS patient_id
        ), {PLANNED_INSERT}
        SELECT {_RETURNED} FROM planned ORDER BY id
    """).bindparams(bindparam("now", type_=UTCDateTime()))
    # The RETURNING list is in the model's column order: text columns are matched by position.
    return select(Notification).from_statement(statement.columns(*Notification.__table__.c))
