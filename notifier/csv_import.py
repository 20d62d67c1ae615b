"""`notifier import FILE.csv`: booking rows from a spreadsheet or an export.

Each row becomes a contract booking event and goes through `ingest.apply_event`, like the API's,
in a transaction of its own: a bad row is reported by line and column and the others still go in.
Importing the same file again changes nothing, because a row's event id is derived from what it
says. The columns are documented in docs/staff.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from .clinic import Clinic
from .ingest import EventConflict, InvalidEvent, apply_event, implausible_year
from .runtime import Runtime
from .store import events

log = logging.getLogger(__name__)

COLUMNS = (
    "event_id", "type", "occurred_at", "appointment_id", "location", "treatment", "provider",
    "start", "end", "patient_id", "first_name", "last_name", "phone", "email", "language",
    "sms_consent", "email_consent", "marketing_consent",
)  # fmt: skip
REQUIRED = ("appointment_id", "location", "treatment", "start", "end", "patient_id", "first_name")
# What the event's fields are called in the file, so an error names the column to fix.
COLUMN_OF = {
    "id": "event_id",
    "appointment.id": "appointment_id",
    "appointment.location": "location",
    "appointment.treatment": "treatment",
    "appointment.provider": "provider",
    "appointment.start": "start",
    "appointment.end": "end",
    "patient.id": "patient_id",
    "patient.first_name": "first_name",
    "patient.last_name": "last_name",
    "patient.phone": "phone",
    "patient.email": "email",
    "patient.language": "language",
    "patient.consent.sms": "sms_consent",
    "patient.consent.email": "email_consent",
    "patient.consent.marketing": "marketing_consent",
}
YES = {"yes", "y", "true", "t", "1", "x"}
NO = {"no", "n", "false", "f", "0", ""}
# Below this many rows an import is over before a bar would be worth drawing.
PROGRESS_FROM = 100


class ImportFileError(Exception):
    """The file as a whole cannot be read: missing, not CSV text, or columns wrong."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    applied: int = 0
    unchanged: int = 0  # imported before, exactly so
    stale: int = 0  # older than what is known of the appointment: recorded, not applied
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        failed = len({e.line for e in self.errors})
        return (
            f"{self.rows} rows: {self.applied} applied, {self.unchanged} unchanged,"
            f" {self.stale} older than what we know, {failed} failed"
        )


@dataclass(frozen=True)
class Row:
    line: int  # where the record starts, counting the header as line 1, as spreadsheets do
    values: dict[str, str]
    problem: str | None = None  # a record the CSV reader could not line up with the header


class _BadRow(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


def import_csv(rt: Runtime, path: Path, progress: bool) -> ImportReport:
    """Applies every row of `path`; `progress` draws a bar on stderr for long files."""
    rows = read_rows(path)
    report = ImportReport(rows=len(rows))
    bar = ProgressBar(len(rows), sys.stderr) if progress and len(rows) >= PROGRESS_FROM else None
    for row in rows:
        _import_row(rt, row, report)
        if bar:
            bar.advance()
    if bar:
        bar.close()
    return report


def read_rows(path: Path) -> list[Row]:
    """Every record that is not blank, by column name."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: Excel's byte-order mark
            reader = csv.reader(file)
            header = _header(next(reader, []))
            rows, line = [], reader.line_num + 1
            for values in reader:
                if any(v.strip() for v in values):
                    rows.append(_row(header, values, line))
                line = reader.line_num + 1
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"{path}: not a UTF-8 CSV file: {exc}") from None
    return rows


def _header(names: list[str]) -> list[str]:
    header = [name.strip().lower() for name in names]
    unknown = [name for name in header if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in header]
    if unknown or missing:
        problems = [f"unknown column {name!r}" for name in unknown]
        problems += [f"missing column {name!r}" for name in missing]
        raise ImportFileError("; ".join(problems) + f" (the columns are: {', '.join(COLUMNS)})")
    return header


def _row(header: list[str], values: list[str], line: int) -> Row:
    if len(values) != len(header):
        return Row(line, {}, f"{len(values)} fields where the header has {len(header)}")
    return Row(line, {name: value.strip() for name, value in zip(header, values, strict=True)})


def _import_row(rt: Runtime, row: Row, report: ImportReport) -> None:
    if row.problem:
        report.errors.append(RowError(row.line, "", row.problem))
        return
    with rt.sessions() as session:
        try:
            payload = booking_event(row.values, rt.clinic, rt.clock(), session)
            outcome = apply_event(session, rt.clinic, payload, rt.clock())
        except _BadRow as exc:
            report.errors.append(RowError(row.line, exc.column, exc.reason))
            return
        except InvalidEvent as exc:
            report.errors += [RowError(row.line, COLUMN_OF.get(f, f), r) for f, r in exc.errors]
            return
        except EventConflict as exc:
            report.errors.append(RowError(row.line, "event_id", str(exc)))
            return
        except Exception as exc:  # one row's surprise must not cost the rows after it
            log.debug("line %d could not be imported", row.line, exc_info=True)
            report.errors.append(RowError(row.line, "", f"could not be imported: {_cause(exc)}"))
            return
    if outcome.duplicate:
        report.unchanged += 1
    elif outcome.outcome == "ignored_stale":
        report.stale += 1
    else:
        report.applied += 1


def _cause(exc: Exception) -> str:
    # A database error goes on with the statement and its values, the patient's data: the
    # first line says what went wrong.
    first = next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def booking_event(
    row: dict[str, str], clinic: Clinic, now: datetime, session: Session
) -> dict[str, Any]:
    """The contract event a row stands for. A row imported before gets that event's time back,
    so that it makes the very same event (and apply_event sees a replay, not a conflict)."""
    location = clinic.location(row.get("location", ""))
    zone = location.zone if location else None
    event_id = row.get("event_id") or derived_id(row)
    seen = events.by_id(session, event_id)
    # In UTC to the second, as the database gives it back: the replay must match byte for byte.
    default = (seen.occurred_at if seen else now).astimezone(UTC).replace(microsecond=0)
    occurred = _time(row, "occurred_at", zone) or default.isoformat()
    return {
        "id": event_id,
        "type": _type(row.get("type", "")),
        "occurred_at": occurred,
        "appointment": {
            "id": row.get("appointment_id"),
            "location": row.get("location"),
            "treatment": row.get("treatment"),
            "provider": row.get("provider") or None,
            "start": _time(row, "start", zone),
            "end": _time(row, "end", zone),
        },
        "patient": {
            "id": row.get("patient_id"),
            "first_name": row.get("first_name"),
            "last_name": row.get("last_name", ""),
            "phone": row.get("phone") or None,
            "email": row.get("email") or None,
            "language": row.get("language") or "en",
            "consent": {
                kind: _yes(row, f"{kind}_consent") for kind in ("sms", "email", "marketing")
            },
        },
    }


def derived_id(row: dict[str, str]) -> str:
    """The same content gives the same id; any change (a new time, say) gives a new event."""
    content = {k: v for k, v in row.items() if k not in ("event_id", "occurred_at")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"csv-{digest[:40]}"


def _type(value: str) -> str:
    name = (value.strip().lower() or "booked").replace("-", "_").removeprefix("appointment.")
    return f"appointment.{name}"


def _yes(row: dict[str, str], column: str) -> bool:
    value = row.get(column, "").lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise _BadRow(column, f"expected yes or no, got {row[column]!r}")


def _time(row: dict[str, str], column: str, zone: ZoneInfo | None) -> str | None:
    """ISO 8601 as given when it has an offset; a local time is read in the location's zone."""
    value = row.get(column, "")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _BadRow(column, f"not a date and time: {value!r} (like 2026-12-03 10:00)") from None
    problem = implausible_year(moment)
    if problem:
        raise _BadRow(column, problem)
    if moment.tzinfo is not None or zone is None:
        return value  # with no known location, ingest says what is wrong
    return _localized(moment, zone, column).isoformat()


def _localized(naive: datetime, zone: ZoneInfo, column: str) -> datetime:
    # Wall-clock times the clocks skip (spring) or show twice (autumn) cannot name one moment.
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise _BadRow(
            column,
            f"{naive:%Y-%m-%d %H:%M} is skipped or repeated when the clocks change here:"
            " give the offset, like 2026-11-01T01:30:00-05:00",
        )
    return first


class ProgressBar:
    """[#########-----------]  453/1000 rows, redrawn in place on stderr."""

    WIDTH = 30

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out, self.done, self.drawn = total, out, 0, 0

    def advance(self) -> None:
        self.done += 1
        percent = self.done * 100 // self.total
        if percent != self.drawn:  # at most a hundred redraws, however long the file
            self.drawn = percent
            filled = self.WIDTH * self.done // self.total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.out.write(f"\r[{bar}] {self.done:>{len(str(self.total))}}/{self.total} rows")
            self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()
