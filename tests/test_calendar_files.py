"""Calendar files that follow the visit (RFC 5545, RFC 5546): one UID per appointment, a
SEQUENCE that grows by one at each change, METHOD:CANCEL when the visit is cancelled; read by
two independent parsers (icalendar, vobject) off emails the real SMTP sink took."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
import vobject
from alembic import command
from alembic.config import Config
from icalendar import Calendar
from sqlalchemy import create_engine, select, text

from notifier import db
from notifier.ingest import apply_event
from notifier.models import Appointment
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from tests.conftest import POSTGRES_ADMIN_URL, new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

VISIT = new_york(2026, 12, 3, 10, 0)
MOVED = new_york(2026, 12, 4, 14, 0)
UID = "appointment-apt-1@northshore.example"


@dataclass(frozen=True)
class CalendarFile:
    """One .ics attachment as both parsers read it."""

    content_type: str
    params: dict[str, str]
    method: str
    uid: str
    sequence: int
    start: datetime
    summary: str
    status: str
    organizer: str
    attendees: list[str]


def post(rt: Runtime, payload: dict[str, Any]) -> None:
    with rt.sessions() as session:
        apply_event(session, rt.clinic, payload, rt.clock())


def calendar_of(mail: EmailMessage) -> CalendarFile:
    (part,) = [p for p in mail.iter_attachments() if p.get_filename() == "appointment.ics"]
    data = cast(bytes, part.get_payload(decode=True))
    # icalendar
    calendar = Calendar.from_ical(data)
    (event_,) = calendar.walk("VEVENT")
    # vobject, which shares no code with icalendar, must read the same.
    other = vobject.readOne(data.decode("utf-8"))
    assert other.method.value == str(calendar["method"])
    assert other.vevent.uid.value == str(event_["uid"])
    assert int(other.vevent.sequence.value) == event_.decoded("sequence")
    assert other.vevent.dtstart.value == event_.decoded("dtstart")
    assert other.vevent.summary.value == str(event_["summary"])
    params = {key: str(value) for key, value in (part.get_params() or [])[1:]}
    return CalendarFile(
        content_type=part.get_content_type(),
        params=params,
        method=str(calendar["method"]),
        uid=str(event_["uid"]),
        sequence=event_.decoded("sequence"),
        start=event_.decoded("dtstart"),
        summary=str(event_["summary"]),
        status=str(event_["status"]),
        organizer=str(event_["organizer"]),
        attendees=[str(a) for a in _as_list(event_.get("attendee"))],
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def emails_of_kind(smtp: SMTPSink, subject_part: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if subject_part in str(m["Subject"])]


def test_a_visit_booked_moved_and_cancelled_keeps_one_event_in_the_calendar(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    run_until(rt, new_york(2026, 11, 30, 12, 0))
    post(rt, event("rescheduled", MOVED, occurred_at=clock()))
    run_until(rt, new_york(2026, 11, 30, 15, 0))
    post(rt, event("cancelled", MOVED, occurred_at=clock()))
    run_until(rt, clock())

    booked, moved = [calendar_of(m) for m in emails_of_kind(smtp, "Your appointment")[:2]]
    (cancel_mail,) = emails_of_kind(smtp, "cancelled")
    cancelled = calendar_of(cancel_mail)

    assert booked.uid == moved.uid == cancelled.uid == UID
    assert (booked.sequence, moved.sequence, cancelled.sequence) == (0, 1, 2)
    assert (booked.method, moved.method, cancelled.method) == ("PUBLISH", "PUBLISH", "CANCEL")
    assert (booked.status, moved.status, cancelled.status) == (
        "CONFIRMED",
        "CONFIRMED",
        "CANCELLED",
    )
    assert booked.start == VISIT.astimezone(UTC) and moved.start == MOVED.astimezone(UTC)
    for file, method in ((booked, "PUBLISH"), (moved, "PUBLISH"), (cancelled, "CANCEL")):
        assert file.content_type == "text/calendar"
        assert file.params == {"method": method, "charset": "UTF-8"}
        assert file.organizer == "mailto:reminders@northshore.example"
    # RFC 5546: a PUBLISH has no attendees; the CANCEL of the whole event names them.
    assert booked.attendees == [] and cancelled.attendees == ["mailto:ana@example.org"]
    assert cancel_mail["To"] == "ana@example.org"


def test_the_cancellation_email_needs_an_address_and_consent(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    consent = {"sms": True, "email": False, "marketing": False}
    post(rt, event("booked", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, clock())
    post(rt, event("cancelled", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, clock())
    assert smtp.messages == []
    assert "is cancelled" in fake_twilio.messages[-1]["body"]


def test_a_change_the_calendar_does_not_show_keeps_the_sequence(
    rt: Runtime, clock: SimulatedClock
) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    # Same time, same place: only the provider changed.
    same = event("booked", VISIT, occurred_at=clock() + timedelta(minutes=1))
    same["appointment"]["provider"] = "Dr. Someone Else"
    post(rt, same)
    post(
        rt, event("booked", VISIT, occurred_at=clock() + timedelta(minutes=2), location="manhasset")
    )
    with rt.sessions() as session:
        appointment = session.scalars(select(Appointment)).one()
        assert appointment.calendar_sequence == 1


def test_a_replayed_event_moves_the_sequence_once(rt: Runtime, clock: SimulatedClock) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    moved = event("rescheduled", MOVED, occurred_at=clock() + timedelta(minutes=1))
    post(rt, moved)
    post(rt, moved)
    with rt.sessions() as session:
        assert session.scalars(select(Appointment.calendar_sequence)).one() == 1


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_appointments_booked_before_the_counter_keep_their_calendars_sequence(
    dialect: str, tmp_path: Path
) -> None:
    """Their calendar files said SEQUENCE = the booking time in seconds; the counter starts
    there, or the next file would look older than the one the calendar holds."""
    with scratch_database(dialect, tmp_path) as url:
        engine = db.make_engine(url)
        config = Config()
        config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            for statement in OLD_ROWS:
                connection.exec_driver_sql(statement)
        db.upgrade(engine)
        with engine.connect() as connection:
            (sequence,) = connection.exec_driver_sql(
                "SELECT calendar_sequence FROM appointments"
            ).one()
        engine.dispose()
    assert sequence == int(datetime(2026, 11, 30, 14, 0, 5, tzinfo=UTC).timestamp())


OLD_ROWS = (
    "INSERT INTO locations (id, name, time_zone) VALUES ('fh', 'Forest Hills', 'UTC')",
    "INSERT INTO treatments (id, name) VALUES ('bx', 'Botox')",
    "INSERT INTO patients (id, first_name, last_name, language, consent_sms, consent_email,"
    " consent_marketing, updated_at) VALUES ('p1', 'Ana', 'Ruiz', 'en', true, true, false,"
    " '2026-11-30 14:00:05')",
    "INSERT INTO appointments (id, patient_id, location_id, treatment_id, start_at, end_at,"
    " status, confirmation, booked_at, rescheduled, last_event_at, created_at, updated_at)"
    " VALUES ('a1', 'p1', 'fh', 'bx', '2026-12-03 15:00:00', '2026-12-03 15:30:00', 'booked',"
    " 'unconfirmed', '2026-11-30 14:00:05', false, '2026-11-30 14:00:05',"
    " '2026-11-30 14:00:05', '2026-11-30 14:00:05')",
)


@contextlib.contextmanager
def scratch_database(dialect: str, tmp_path: Path) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    name = f"notifier_migration_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
