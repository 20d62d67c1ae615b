"""The audit log (HIPAA §164.312(b)): who signed in, looked at a patient, acted on one, or called
the API about one; when, from which address, and with what outcome.

`record` is the one way in, for every door: the dashboard, the API and the CLI. An entry names
its subject by id (`appointment:apt-1`), never by a patient's name, number or address, and
holds no message body. Entries are never changed or deleted (docs/security.md).
"""

from __future__ import annotations

import csv
import getpass
import io
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy.orm import Session

from .models import AuditEntry
from .store import audit as audit_store
from .store.audit import AuditFilter

__all__ = ["AuditFilter", "cli_actor", "csv_lines", "newest", "record"]

CSV_COLUMNS = ("id", "at", "actor", "address", "action", "subject", "outcome", "detail")


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    subject: str | None = None,
    *,
    address: str | None = None,
    outcome: str = "ok",
    detail: str | None = None,
) -> None:
    """Adds one entry and commits it (with whatever else the session holds: an action and
    its record are kept together). Long values are cut to the column, never refused: the
    record of an action must not fail because of a long name."""
    audit_store.add(
        session,
        at=at,
        actor=_fit(actor, 340),
        address=_fit(address, 64) or None,
        action=_fit(action, 64),
        subject=_fit(subject, 200) or None,
        outcome=_fit(outcome, 32),
        detail=_fit(detail, 300) or None,
    )
    session.commit()


def _fit(value: str | None, length: int) -> str:
    # PostgreSQL refuses NUL in text, and a hostile request may carry one.
    return (value or "").replace("\x00", "")[:length]


def cli_actor() -> str:
    """Who runs a command: the system account, since the command line has no sign-in."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a container's uid without a passwd entry
        return "cli:unknown"


def newest(
    session: Session, chosen: AuditFilter, before_id: int | None = None, limit: int = 100
) -> list[AuditEntry]:
    return audit_store.newest(session, chosen, before_id, limit)


def csv_lines(session: Session, chosen: AuditFilter) -> Iterator[str]:
    """The chosen entries as CSV, oldest first, a line at a time (an export may be large)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in audit_store.all_of(session, chosen):
        writer.writerow(
            [
                entry.id,
                entry.at.isoformat(),
                _cell(entry.actor),
                entry.address or "",
                entry.action,
                _cell(entry.subject or ""),
                entry.outcome,
                _cell(entry.detail or ""),
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _cell(value: str) -> str:
    # A cell a spreadsheet would run as a formula (=, +, -, @ first) is made plain text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
