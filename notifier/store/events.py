"""Booking events: recorded by their id, marked when stale, and on PostgreSQL the booking of a
new appointment as one statement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from ..models import Appointment, BookingEvent, utc_naive
from .patients import PATIENT_COLUMNS, PATIENT_UPDATE, insert_select
from .planned import PLANNED_INSERT, PlannedRow, planned_arrays


def insert_new(session: Session, row: dict[str, Any]) -> bool:
    """Stores the event; False if it was stored before. Inserting first lets the primary key
    say whether the event is new: one round trip instead of two for the usual case."""
    try:
        session.execute(insert(BookingEvent), row)
    except IntegrityError:  # the event was applied before (or is being applied right now)
        session.rollback()
        return False
    return True


def mark_stale(session: Session, event_id: str) -> None:
    session.execute(
        update(BookingEvent).where(BookingEvent.id == event_id).values(outcome="ignored_stale")
    )


def by_id(session: Session, event_id: str) -> BookingEvent | None:
    return session.get(BookingEvent, event_id)


def one_by_id(session: Session, event_id: str) -> BookingEvent:
    """The event, which the caller knows is stored (NoResultFound otherwise)."""
    return session.get_one(BookingEvent, event_id)


def one_statement_engine(session: Session) -> Engine | None:
    """The engine to book a new appointment with in one statement (`book_new`): PostgreSQL's,
    unless the caller holds a transaction open for us (the bind is then a Connection)."""
    bind = session.get_bind()
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        return bind
    return None


def book_new(
    engine: Engine,
    event: dict[str, Any],
    patient: dict[str, Any],
    appointment: Appointment,
    planned: Sequence[PlannedRow],
    now: datetime,
) -> list[int] | None:
    """PostgreSQL: the event, the patient, the new appointment and its planned notifications
    with their history in one statement, its own transaction. Returns the notifications' ids in
    plan order, or None, with nothing written, when the appointment or the event is known."""
    values = {
        **_prefixed("event_", event),
        **_prefixed("patient_", patient),
        **_prefixed("appointment_", {c: getattr(appointment, c) for c in _APPOINTMENT_COLUMNS}),
        **planned_arrays(planned),
        "now": utc_naive(now),
        "staff": None,
        "detail": "planned",
    }
    try:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            rows = connection.execute(_book_statement(), values).all()
    except IntegrityError:  # the same event or appointment, committed since the check
        return None
    if not rows:
        return None
    return [row.id for row in rows if row.id is not None]


_EVENT_COLUMNS = (
    "id",
    "appointment_id",
    "type",
    "occurred_at",
    "received_at",
    "payload_sha256",
    "outcome",
)
_APPOINTMENT_COLUMNS = (
    "id",
    "patient_id",
    "location_id",
    "treatment_id",
    "provider",
    "start_at",
    "end_at",
    "status",
    "confirmation",
    "booked_at",
    "rescheduled",
    "last_event_at",
    "created_at",
    "updated_at",
)


@cache
def _book_statement() -> TextClause:
    """PostgreSQL, for `book_new`. The patient goes in (or is updated) only if neither the
    appointment nor the event is known, and each part after it only with the part before:
    the patient before the appointment, as the general path takes them, so that the two paths
    lock rows in the same order. A race with another event for the same appointment ends in a
    unique violation, and nothing written. Times are given naive, in UTC, as the columns hold
    them."""
    return text(f"""
        WITH patient AS (
            {insert_select("patients", PATIENT_COLUMNS, "patient_")}
            WHERE NOT EXISTS (
                SELECT FROM appointments WHERE id = CAST(:appointment_id AS varchar)
            ) AND NOT EXISTS (
                SELECT FROM booking_events WHERE id = CAST(:event_id AS varchar)
            )
            {PATIENT_UPDATE}
            RETURNING id
        ), appointment AS (
            {insert_select("appointments", _APPOINTMENT_COLUMNS, "appointment_")} FROM patient
            RETURNING id, patient_id
        ), event AS (
            {insert_select("booking_events", _EVENT_COLUMNS, "event_")} FROM appointment
        ), {PLANNED_INSERT}
        SELECT n.id FROM appointment AS a LEFT JOIN planned AS n ON true ORDER BY n.id
    """)


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{key}": _naive(value) for key, value in values.items()}


def _naive(value: Any) -> Any:
    return utc_naive(value) if isinstance(value, datetime) else value


def from_fhir(session: Session, appointment_id: str) -> bool:
    """Whether the appointment came through the FHIR door (its events' ids say `fhir:`)."""
    query = select(BookingEvent.id).where(
        BookingEvent.appointment_id == appointment_id, BookingEvent.id.like("fhir:%")
    )
    return session.scalar(query.limit(1)) is not None
