"""Appointments: one by its id, and the lists the staff board shows per location."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, selectinload

from ..models import Appointment, Patient


def by_id(session: Session, appointment_id: str) -> Appointment | None:
    return session.get(Appointment, appointment_id)


def locked_by_id(session: Session, appointment_id: str) -> Appointment | None:
    """The appointment, its row locked for this transaction (FOR UPDATE on PostgreSQL)."""
    return session.get(Appointment, appointment_id, with_for_update=True)


def held_for_change(session: Session, appointment_id: str) -> Appointment | None:
    """The appointment, its row held for this transaction: FOR UPDATE on PostgreSQL; on SQLite,
    whose SELECT takes no lock, a write that changes nothing takes the database's write lock."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Appointment)
            .where(Appointment.id == appointment_id)
            .values(updated_at=Appointment.updated_at)
        )
    return locked_by_id(session, appointment_id)


def one_by_id(session: Session, appointment_id: str) -> Appointment:
    """The appointment, which the caller knows is there (NoResultFound otherwise)."""
    return session.get_one(Appointment, appointment_id)


def starting_between(
    session: Session, location_ids: list[str], start: datetime, end: datetime
) -> list[Appointment]:
    """At these locations, from `start` to before `end`, with their patients, by start time."""
    return _at(session, location_ids, Appointment.start_at >= start, Appointment.start_at < end)


def unconfirmed_between(
    session: Session, location_ids: list[str], now: datetime, until: datetime
) -> list[Appointment]:
    """Booked, still unconfirmed, and starting after `now` and by `until`, by start time."""
    return _at(session, location_ids, *_unconfirmed(now, until))


def count_unconfirmed_between(
    session: Session, location_ids: list[str], now: datetime, until: datetime
) -> int:
    query = select(func.count()).where(
        Appointment.location_id.in_(location_ids), *_unconfirmed(now, until)
    )
    return session.scalar(query) or 0


def _at(session: Session, location_ids: list[str], *criteria: Any) -> list[Appointment]:
    query = (
        select(Appointment)
        .where(Appointment.location_id.in_(location_ids), *criteria)
        .options(selectinload(Appointment.patient))
        .order_by(Appointment.start_at, Appointment.id)
    )
    return list(session.scalars(query))


def _unconfirmed(now: datetime, until: datetime) -> tuple[Any, ...]:
    return (
        Appointment.status == "booked",
        Appointment.confirmation == "unconfirmed",
        Appointment.start_at > now,
        Appointment.start_at <= until,
    )


def has_booked_after(session: Session, patient_id: str, now: datetime) -> bool:
    """Whether the patient has a booked appointment starting after `now`."""
    query = select(
        exists().where(
            Appointment.patient_id == patient_id,
            Appointment.status == "booked",
            Appointment.start_at > now,
        )
    )
    return bool(session.scalar(query))


def booked_ahead_for_phone(session: Session, phone: str, now: datetime) -> list[Appointment]:
    """The booked appointments starting after `now` of the patients with this number, soonest
    first."""
    return list(
        session.scalars(
            select(Appointment)
            .join(Patient, Patient.id == Appointment.patient_id)
            .where(
                Patient.phone == phone, Appointment.status == "booked", Appointment.start_at > now
            )
            .order_by(Appointment.start_at)
        )
    )
