"""`notifier waitlist import FILE.csv`: waitlist entries from a spreadsheet, one a row.

A file of its own rather than a column of the booking import: a waitlisted patient has no visit
yet, and what they wait for (weekdays, hours) fits no booking column. Each row goes through the
same checks as `POST /v1/waitlist`; a row's `waitlist_id` makes importing it again harmless. The
columns are documented in docs/staff.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .csv_import import NO, YES, ImportFileError, RowError
from .ingest import InvalidEvent
from .runtime import Runtime
from .waitlist_entries import add, parse_entry

COLUMNS = (
    "waitlist_id", "patient_id", "first_name", "last_name", "phone", "email", "language",
    "sms_consent", "location", "treatment", "days", "earliest", "latest",
)  # fmt: skip
REQUIRED = ("waitlist_id", "patient_id", "first_name", "phone", "location", "treatment")
COLUMN_OF = {
    "id": "waitlist_id",
    "patient.id": "patient_id",
    "patient.first_name": "first_name",
    "patient.last_name": "last_name",
    "patient.phone": "phone",
    "patient.email": "email",
    "patient.language": "language",
}


@dataclass
class WaitlistImport:
    rows: int = 0
    added: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        failed = len({e.line for e in self.errors})
        return f"{self.rows} rows: {self.added} added, {self.unchanged} unchanged, {failed} failed"


def import_waitlist(rt: Runtime, path: Path) -> WaitlistImport:
    report = WaitlistImport()
    for line, values in _rows(path):
        report.rows += 1
        try:
            given = parse_entry(_entry(values), rt.clinic)
        except InvalidEvent as exc:
            report.errors += [RowError(line, COLUMN_OF.get(f, f), r) for f, r in exc.errors]
            continue
        except ValueError as exc:
            report.errors.append(RowError(line, "sms_consent", str(exc)))
            continue
        with rt.sessions() as session:
            _, new = add(session, given, "csv", rt.clock())
            session.commit()
        report.added += new
        report.unchanged += not new
    return report


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = [name.strip().lower() for name in reader.fieldnames or []]
            unknown = [name for name in header if name not in COLUMNS]
            missing = [name for name in REQUIRED if name not in header]
            if unknown or missing:
                wrong = f"unknown column {unknown[0]!r}" if unknown else f"no {missing[0]!r} column"
                raise ImportFileError(f"{path}: {wrong}; columns: {', '.join(COLUMNS)}")
            rows = []
            for record in reader:
                values = {k.strip().lower(): (v or "").strip() for k, v in record.items() if k}
                if any(values.values()):
                    rows.append((reader.line_num, values))
            return rows
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"{path}: not a UTF-8 CSV file: {exc}") from None


def _entry(values: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": values.get("waitlist_id", ""),
        "patient": {
            "id": values.get("patient_id", ""),
            "first_name": values.get("first_name", ""),
            "last_name": values.get("last_name", ""),
            "phone": values.get("phone") or None,
            "email": values.get("email") or None,
            "language": values.get("language") or "en",
            "consent": {"sms": _yes(values.get("sms_consent", "yes")), "email": False},
        },
        "location": values.get("location", ""),
        "treatment": values.get("treatment", ""),
    }
    if values.get("days"):
        entry["days"] = values["days"].replace(",", " ").split()
    for bound in ("earliest", "latest"):
        if values.get(bound):
            entry[bound] = values[bound]
    return entry


def _yes(value: str) -> bool:
    # Put on a waitlist for text offers: an empty cell means yes, as the wish implies.
    word = value.strip().lower()
    if word in YES or word == "":
        return True
    if word in NO:
        return False
    raise ValueError(f"{value!r} is neither yes nor no")
