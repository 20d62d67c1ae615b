"""The schedule in the database: planned notifications become rows, and rows change state only
by conditional update, so two actors can never both win the same transition."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, insert, literal, select, update
from sqlalchemy.orm import Session

from .clinic import Clinic
from .models import PENDING, Appointment, Notification, NotificationEvent, Patient, UTCDateTime
from .plan import Planned, Recipient, Visit, plan


def transition(
    session: Session,
    ids: Iterable[int] | Select[tuple[int]],
    from_statuses: Iterable[str],
    to_status: str,
    now: datetime,
    detail: str | None = None,
    *,
    history: bool = True,
    **values: Any,
) -> list[int]:
    """Moves the rows still in one of `from_statuses` to `to_status`; returns the ids that moved.

    The row count decides who won: an id missing from the answer was moved by someone else first.
    Each move is written to the rows' history unless `history` is False.
    """
    if not isinstance(ids, Select):
        ids = list(ids)
        if not ids:
            return []
    stmt = (
        update(Notification)
        .where(Notification.id.in_(ids), Notification.status.in_(list(from_statuses)))
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
            select(moved.c.id, literal(to_status), literal(now, UTCDateTime()), literal(detail)),
        )
        return list(session.scalars(written.returning(NotificationEvent.notification_id)))
    won = list(session.scalars(stmt, execution_options={"synchronize_session": False}))
    record(session, won, to_status, now, detail)
    return won


def record(
    session: Session, ids: list[int], status: str, now: datetime, detail: str | None
) -> None:
    if ids:
        rows = [{"notification_id": i, "status": status, "at": now, "detail": detail} for i in ids]
        session.execute(insert(NotificationEvent), rows)


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


def replan(session: Session, appointment: Appointment, clinic: Clinic, now: datetime) -> None:
    """Brings the stored rows in line with the plan: new ones inserted, obsolete pending ones
    cancelled, unchanged ones (whatever their state) kept."""
    location = clinic.location(appointment.location_id)
    treatment = clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        raise LookupError(f"appointment {appointment.id}: location or treatment not in config")
    who = recipient(appointment.patient, location.zone)
    wanted = plan(visit(appointment), who, treatment, clinic.policy, now)
    stored = session.scalars(
        select(Notification).where(
            Notification.appointment_id == appointment.id,
            Notification.kind != "manual",
            Notification.status != "cancelled",
        )
    ).all()
    have = {(n.kind, n.channel, n.slot, n.planned_for) for n in stored}
    keep = {(*p.key, p.due_at) for p in wanted}
    obsolete = [
        n.id
        for n in stored
        if n.status in PENDING and (n.kind, n.channel, n.slot, n.planned_for) not in keep
    ]
    transition(session, obsolete, PENDING, "cancelled", now, "plan changed", reason="plan_changed")
    add(session, appointment, [p for p in wanted if (*p.key, p.due_at) not in have], now)


def add(
    session: Session,
    appointment: Appointment,
    planned: list[Planned],
    now: datetime,
    staff: str | None = None,
) -> list[Notification]:
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
            status="scheduled",
            attempts=0,
            staff=staff,
            created_at=now,
            updated_at=now,
        )
        for p in planned
    ]
    session.add_all(rows)
    session.flush()
    record(session, [r.id for r in rows], "scheduled", now, "manual" if staff else "planned")
    return rows
