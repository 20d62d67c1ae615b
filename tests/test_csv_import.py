"""`notifier import FILE.csv`: each row through apply_event, bad rows named by line and column,
the same file twice changing nothing; on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifier import ingest
from notifier.clinic import Clinic
from notifier.csv_import import ImportFileError, ProgressBar, RowError, import_csv
from notifier.ingest import EventOutcome
from notifier.models import Appointment, BookingEvent, Notification, NotificationEvent
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock
from notifier.staff.commands import add_commands

HEADER = (
    "appointment_id,location,treatment,provider,start,end,patient_id,first_name,last_name,"
    "phone,email,language,sms_consent,email_consent,marketing_consent"
)
ANA = (
    "apt-1,forest-hills,botox-cosmetic,Dr. E. Jacob Simhaee,2026-12-03T10:00:00-05:00,"
    "2026-12-03T10:30:00-05:00,pat-1,Ana,Ruiz,+1 718 555 0134,ana@example.org,en,yes,yes,no"
)
# Local wall-clock times, as a spreadsheet has them: read in Manhasset's zone.
CARLOS = (
    "apt-2,manhasset,botox-spasm,,2026-12-04 11:00,2026-12-04 11:45,pat-2,Carlos,Vega,"
    "+1 516 555 0188,,es,y,n,"
)


def csv_file(directory: Path, *rows: str, header: str = HEADER) -> Path:
    path = directory / "bookings.csv"
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


def stored(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Appointment, BookingEvent, Notification, NotificationEvent)
        }


def test_rows_become_appointments_with_their_reminders(rt: Runtime, tmp_path: Path) -> None:
    report = import_csv(rt, csv_file(tmp_path, ANA, CARLOS), progress=False)
    assert (report.rows, report.applied, report.errors) == (2, 2, [])
    with rt.sessions() as session:
        ana = session.get_one(Appointment, "apt-1")
        carlos = session.get_one(Appointment, "apt-2")
        kinds = session.scalars(
            select(Notification.kind).where(Notification.appointment_id == "apt-1")
        ).all()
        assert ana.start_at == datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
        assert ana.patient.consent_sms and not ana.patient.consent_marketing
        assert sorted(kinds) == ["aftercare"] * 2 + ["confirmation"] * 2 + ["reminder"] * 3
        # 11:00 in New York in December is 16:00 UTC (EST, UTC-5).
        assert carlos.start_at == datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
        assert carlos.provider is None
        assert (carlos.patient.language, carlos.patient.email) == ("es", None)


def test_bad_rows_are_named_by_line_and_column_and_the_rest_go_in(
    rt: Runtime, tmp_path: Path
) -> None:
    quoted = ANA.replace("apt-1", "apt-3").replace("Dr. E. Jacob Simhaee", '"Dr. Rivera\nRoom 2"')
    rows = (
        ANA,  # line 2
        ANA.replace("apt-1", "apt-4").replace("+1 718 555 0134", "+1 800 555 0199"),
        ANA.replace("apt-1", "apt-5").replace("forest-hills", "brooklyn"),
        quoted,  # lines 5 and 6: one record, two lines
        ANA.replace("apt-1", "apt-6").replace("10:30:00", "09:30:00"),
        CARLOS.replace("apt-2", "apt-7").replace(",y,n,", ",maybe,n,"),
        # 01:30 happens twice on the night the clocks go back.
        CARLOS.replace("apt-2", "apt-8").replace("2026-12-04 11:00", "2026-11-01 01:30"),
        "apt-9,manhasset,botox-spasm",
        "",
        CARLOS,  # line 12
    )
    report = import_csv(rt, csv_file(tmp_path, *rows), progress=False)
    assert [(e.line, e.column) for e in report.errors] == [
        (3, "phone"),
        (4, "location"),
        (7, "end"),
        (8, "sms_consent"),
        (9, "start"),
        (10, ""),
    ]
    reasons = {e.line: e.reason for e in report.errors}
    assert "not a mobile number" in reasons[3]
    assert "unknown location 'brooklyn'" in reasons[4]
    assert reasons[8] == "expected yes or no, got 'maybe'"
    assert "clocks change" in reasons[9]
    assert reasons[10] == "3 fields where the header has 15"
    assert (report.rows, report.applied, report.ok) == (9, 3, False)
    assert report.summary() == (
        "9 rows: 3 applied, 0 unchanged, 0 older than what we know, 6 failed"
    )
    with rt.sessions() as session:
        assert set(session.scalars(select(Appointment.id))) == {"apt-1", "apt-2", "apt-3"}
        assert session.get_one(Appointment, "apt-3").provider == "Dr. Rivera\nRoom 2"


def test_the_same_file_again_changes_nothing(
    rt: Runtime, clock: SimulatedClock, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, ANA, CARLOS)
    import_csv(rt, path, progress=False)
    before = stored(rt)
    clock.now += timedelta(hours=3)
    again = import_csv(rt, path, progress=False)
    assert (again.applied, again.unchanged, again.errors) == (0, 2, [])
    assert stored(rt) == before


def test_a_changed_row_is_a_new_event_that_reschedules(
    rt: Runtime, clock: SimulatedClock, tmp_path: Path
) -> None:
    import_csv(rt, csv_file(tmp_path, ANA), progress=False)
    clock.now += timedelta(minutes=10)
    moved = ANA.replace("2026-12-03T10:", "2026-12-04T10:")
    report = import_csv(rt, csv_file(tmp_path, moved), progress=False)
    assert report.applied == 1
    with rt.sessions() as session:
        ana = session.get_one(Appointment, "apt-1")
        pending = session.scalars(
            select(Notification.due_at).where(
                Notification.kind == "reminder", Notification.status == "scheduled"
            )
        ).all()
    assert ana.rescheduled and ana.start_at == datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    assert min(pending) == datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def test_a_cancel_row_and_an_explicit_event_id(rt: Runtime, tmp_path: Path) -> None:
    header = "event_id,type," + HEADER
    booked, cancelled = f"evt-7,,{ANA}", f"evt-8,Cancelled,{ANA}"
    report = import_csv(rt, csv_file(tmp_path, booked, cancelled, header=header), False)
    assert (report.applied, report.errors) == (2, [])
    with rt.sessions() as session:
        assert session.get_one(Appointment, "apt-1").status == "cancelled"
        assert session.get(BookingEvent, "evt-8") is not None


def test_an_event_id_used_for_another_row_is_refused(rt: Runtime, tmp_path: Path) -> None:
    header = "event_id," + HEADER
    rows = (f"evt-7,{ANA}", f"evt-7,{CARLOS}")
    report = import_csv(rt, csv_file(tmp_path, *rows, header=header), progress=False)
    assert report.errors == [
        RowError(3, "event_id", "event id 'evt-7' was already used for a different event")
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (HEADER + ",notes", "unknown column 'notes'"),
        (HEADER.replace("location,", ""), "missing column 'location'"),
    ],
)
def test_wrong_columns_refuse_the_whole_file(
    rt: Runtime, tmp_path: Path, header: str, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message):
        import_csv(rt, csv_file(tmp_path, header=header), progress=False)


def test_the_progress_bar_counts_rows_on_one_line() -> None:
    out = io.StringIO()
    bar = ProgressBar(200, out)
    for _ in range(200):
        bar.advance()
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 100  # one redraw per percent, not per row
    assert frames[0] == "[" + "-" * 30 + "]   2/200 rows"
    assert frames[-1] == "[" + "#" * 30 + "] 200/200 rows\n"


def command(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="notifier")
    add_commands(parser.add_subparsers(required=True))
    return parser.parse_args(argv)


def test_the_command_lists_bad_rows_and_exits_non_zero(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("NOTIFIER_CONFIG", str(rt.settings.config_path))
    path = csv_file(tmp_path, ANA, ANA.replace("apt-1", "apt-4").replace("yes,yes", "si,yes"))
    args = command(["import", str(path)])
    assert args.run(args) == 1
    out, err = capsys.readouterr()
    assert err == f"{path}:3: sms_consent: expected yes or no, got 'si'\n"
    assert out == "2 rows: 1 applied, 0 unchanged, 0 older than what we know, 1 failed\n"
    again = command(["import", str(csv_file(tmp_path, ANA))])
    assert again.run(again) == 0
    assert capsys.readouterr().out.startswith("1 rows: 0 applied, 1 unchanged")


def test_the_command_says_when_the_file_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{tmp_path}/notifier.db")
    args = command(["import", str(tmp_path / "missing.csv")])
    assert args.run(args) == 2
    assert "missing.csv: cannot read: No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("start", "end", "column"),
    [
        ("9999-12-31 23:00", "9999-12-31 23:30", "start"),
        ("2026-12-04 11:00", "9999-12-31T23:30:00-05:00", "end"),
        ("0001-01-01 00:00", "0001-01-01 00:30", "start"),
        ("0001-01-01T00:00:00+05:00", "2026-12-04 11:45", "start"),
    ],
)
def test_a_time_at_the_end_of_the_calendar_is_that_row_s_error(
    rt: Runtime, tmp_path: Path, start: str, end: str, column: str
) -> None:
    far = CARLOS.replace("2026-12-04 11:00", start).replace("2026-12-04 11:45", end)
    report = import_csv(rt, csv_file(tmp_path, far, ANA), progress=False)
    assert [(e.line, e.column) for e in report.errors][:1] == [(2, column)]
    assert "outside 1970-2199" in report.errors[0].reason
    assert report.applied == 1  # Ana, on the next line


def failing_for(appointment_id: str) -> Callable[..., EventOutcome]:
    """apply_event, except that one appointment's row meets an error nobody foresaw."""

    def apply_event(session: Session, clinic: Clinic, payload: Any, now: datetime) -> EventOutcome:
        if payload["appointment"]["id"] == appointment_id:
            raise RuntimeError("disk on fire\nand the rest of a long story")
        return ingest.apply_event(session, clinic, payload, now)

    return apply_event


def test_a_row_that_fails_unexpectedly_is_reported_and_the_rest_go_in(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("notifier.csv_import.apply_event", failing_for("apt-1"))
    report = import_csv(rt, csv_file(tmp_path, ANA, CARLOS), progress=False)
    assert report.errors == [RowError(2, "", "could not be imported: RuntimeError: disk on fire")]
    assert report.summary() == "2 rows: 1 applied, 0 unchanged, 0 older than what we know, 1 failed"
    with rt.sessions() as session:
        assert set(session.scalars(select(Appointment.id))) == {"apt-2"}


def test_the_command_reports_an_unexpected_failure_without_a_traceback(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("NOTIFIER_CONFIG", str(rt.settings.config_path))
    monkeypatch.setattr("notifier.csv_import.apply_event", failing_for("apt-2"))
    path = csv_file(tmp_path, ANA, CARLOS)
    args = command(["import", str(path)])
    assert args.run(args) == 1
    out, err = capsys.readouterr()
    assert err == f"{path}:3: could not be imported: RuntimeError: disk on fire\n"
    assert out == "2 rows: 1 applied, 0 unchanged, 0 older than what we know, 1 failed\n"
