"""The schedule in the database: planned notifications become rows, `scheduled`, and a re-plan
cancels the pending ones the plan no longer wants (their moves are `states`')."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from .clinic import Clinic
from .models import Appointment, Notification, Patient, UTCDateTime, utc_naive
from .plan import Planned, Recipient, Visit, plan
from .states import PENDING, Status, record, transition


def recipient(patient: Patient, zone: ZoneInfo) -> Recipient:
    return Recipient(
        zone=ZoneInfo(patient.time_zone) if patient.time_zone else zone,
        sms=bool(patient.phone and patient.consent_sms),
        email=bool(patient.email and patient.consent_email),
        marketing=patient.consent_marketing,
    )


def visit(appointment: Appointment) -> Visit:
    return Visit(
        status=appointment.status,
        start=appointment.start_at,
        end=appointment.end_at,
        booked_at=appointment.booked_at,
        cancelled_at=appointment.cancelled_at,
    )


def replan(
    session: Session, appointment: Appointment, clinic: Clinic, now: datetime, new: bool = False
) -> list[Notification]:
    """Brings the stored rows in line with the plan: new ones inserted, obsolete pending ones
    cancelled, unchanged ones (whatever their state) kept. Returns the inserted ones. `new`
    says the appointment was just created, so it has no rows to read yet."""
    wanted = wanted_for(appointment, clinic, now)
    stored = [] if new else _replannable(session, appointment.id)
    have = {(n.kind, n.channel, n.slot, n.planned_for) for n in stored}
    keep = {(*p.key, p.due_at) for p in wanted}
    obsolete = [
        n.id
        for n in stored
        if n.status in PENDING and (n.kind, n.channel, n.slot, n.planned_for) not in keep
    ]
    transition(
        session, obsolete, PENDING, Status.CANCELLED, now, "plan changed", reason="plan_changed"
    )
    return add(session, appointment, [p for p in wanted if (*p.key, p.due_at) not in have], now)


def wanted_for(appointment: Appointment, clinic: Clinic, now: datetime) -> list[Planned]:
    """The plan for an appointment and its patient as they stand."""
    location = clinic.location(appointment.location_id)
    treatment = clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        raise LookupError(f"appointment {appointment.id}: location or treatment not in config")
    who = recipient(appointment.patient, location.zone)
    return plan(visit(appointment), who, treatment, clinic.policy, now)


def _replannable(session: Session, appointment_id: str) -> list[Notification]:
    query = select(Notification).where(
        Notification.appointment_id == appointment_id,
        Notification.kind != "manual",
        Notification.status != Status.CANCELLED,
    )
    return list(session.scalars(query))


def add(
    session: Session,
    appointment: Appointment,
    planned: list[Planned],
    now: datetime,
    staff: str | None = None,
) -> list[Notification]:
    """Inserts the planned notifications, scheduled, with their history; returns them in plan
    order."""
    if not planned:
        return []
    detail = "manual" if staff else "planned"
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
    planned: list[Planned],
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


def planned_arrays(planned: list[Planned]) -> dict[str, list[Any]]:
    """The parameters of `PLANNED_INSERT`: one array per column, times naive in UTC as the
    columns hold them."""
    return {
        "kinds": [p.kind for p in planned],
        "channels": [p.channel for p in planned],
        "slots": [p.slot for p in planned],
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
            ask_confirm, planned_for, due_at, expires_at, status, attempts, staff, created_at,
            updated_at)
        SELECT a.id, a.patient_id, p.kind, p.channel, p.slot, p.ask_confirm, p.due_at,
            p.due_at, p.expires_at, 'scheduled', 0, CAST(:staff AS varchar), :now, :now
        FROM appointment AS a, unnest(CAST(:kinds AS text[]), CAST(:channels AS text[]),
            CAST(:slots AS text[]), CAST(:ask_confirm AS boolean[]),
            CAST(:due_at AS timestamp[]), CAST(:expires_at AS timestamp[]))
            WITH ORDINALITY AS p(kind, channel, slot, ask_confirm, due_at, expires_at, n)
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
