"""The audit log: rows are added and read, never changed (the database refuses it too)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from ..models import AuditEntry


@dataclass(frozen=True)
class AuditFilter:
    """What an admin narrows the log to; an empty field narrows nothing."""

    actor: str = ""
    action: str = ""
    subject: str = ""
    since: datetime | None = None
    until: datetime | None = None


def add(session: Session, **values: object) -> None:
    # A plain INSERT, not the ORM's unit of work: an entry per API call, on the hot path.
    session.execute(insert(AuditEntry).values(**values))


def newest(
    session: Session, chosen: AuditFilter, before_id: int | None, limit: int
) -> list[AuditEntry]:
    """A page of the log, newest first, older than the row `before_id` when given."""
    query = _filtered(chosen)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


def all_of(session: Session, chosen: AuditFilter) -> Iterator[AuditEntry]:
    """Every row chosen, oldest first, read in batches so an export of years stays small."""
    query = _filtered(chosen).order_by(AuditEntry.id).execution_options(yield_per=500)
    yield from session.scalars(query)


def _filtered(chosen: AuditFilter) -> Select[tuple[AuditEntry]]:
    query = select(AuditEntry)
    # Prefix matches: "staff:" is every staff member, "appointment:apt-1" one appointment.
    for column, value in (
        (AuditEntry.actor, chosen.actor),
        (AuditEntry.action, chosen.action),
        (AuditEntry.subject, chosen.subject),
    ):
        if value:
            query = query.where(column.startswith(value, autoescape=True))
    if chosen.since is not None:
        query = query.where(AuditEntry.at >= chosen.since)
    if chosen.until is not None:
        query = query.where(AuditEntry.at < chosen.until)
    return query
