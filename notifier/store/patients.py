"""Patients: one by its id, those behind phone numbers, where those patients visit, and the
upsert a booking event makes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from ..models import Appointment, Patient, UTCDateTime


def by_id(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def with_phones(session: Session, phones: list[str]) -> list[Patient]:
    return list(session.scalars(select(Patient).where(Patient.phone.in_(phones))))


def locations_by_phone(session: Session, phones: Iterable[str]) -> dict[str, set[str]]:
    """Where the patients behind each phone number have had appointments: an opt-out belongs
    to every location that texted that number."""
    wanted = list(set(phones))
    if not wanted:
        return {}
    rows = session.execute(
        select(Patient.phone, Appointment.location_id)
        .join(Appointment, Appointment.patient_id == Patient.id)
        .where(Patient.phone.in_(wanted))
        .distinct()
    )
    places: dict[str, set[str]] = defaultdict(set)
    for phone, location_id in rows:
        places[phone].add(location_id)
    return dict(places)


def first_with_phone(session: Session, phone: str) -> Patient | None:
    return session.scalars(select(Patient).where(Patient.phone == phone).limit(1)).first()


def ids_with_phone(session: Session, phone: str) -> list[str]:
    """Everyone who gave this number (a family may share one), by id."""
    return list(
        session.scalars(select(Patient.id).where(Patient.phone == phone).order_by(Patient.id))
    )


def upsert(session: Session, values: dict[str, Any]) -> Patient:
    """One statement whether the patient is new or known; the Patient it returns (and any
    already in the session) holds what was just written. `values` has every column."""
    return session.scalars(
        _patient_upsert(), values, execution_options={"populate_existing": True}
    ).one()


# Statements in text, understood alike by PostgreSQL and SQLite: SQLAlchemy's own ON CONFLICT
# statements are compiled anew on every use (they have no cache key), which costs more than
# running them. Each is built once.
# Ours, not the booking system's: an event's upsert neither sets nor clears them.
OWN_COLUMNS = ("not_mobile_phone", "not_mobile_at")
PATIENT_COLUMNS = tuple(c.name for c in Patient.__table__.c if c.name not in OWN_COLUMNS)
PATIENT_UPDATE = "ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in PATIENT_COLUMNS if c != "id"
)


def insert_select(table: str, columns: tuple[str, ...], prefix: str = "") -> str:
    """INSERT … SELECT of one row of named parameters, `:{prefix}{column}` each."""
    names = ", ".join(f":{prefix}{c}" for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {names}"


@cache
def _patient_upsert() -> ExecutableReturnsRows:
    upsert = text(
        f"{insert_select('patients', PATIENT_COLUMNS)} {PATIENT_UPDATE}"
        f" RETURNING {', '.join(c.name for c in Patient.__table__.c)}"
    )
    upsert = upsert.bindparams(bindparam("updated_at", type_=UTCDateTime()))
    # The RETURNING list is in the model's column order (ours included): text columns are
    # matched by position.
    return select(Patient).from_statement(upsert.columns(*Patient.__table__.c))
