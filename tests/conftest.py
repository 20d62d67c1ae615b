"""Real components for the suite: PostgreSQL, a fake Twilio API server, an SMTP server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from notifier import db
from notifier.runtime import Runtime
from notifier.settings import EXAMPLE_CLINIC, Settings
from notifier.simulate import SimulatedClock
from tests.fakes import FakeTwilio, SMTPSink

POSTGRES_ADMIN_URL = os.environ.get(
    "NOTIFIER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NOTIFIER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NEW_YORK = ZoneInfo("America/New_York")
TABLES = (
    "notification_events, notifications, inbound_messages, sms_opt_outs, early_receipts,"
    " appointments, patients,"
    " booking_events, api_keys, staff_sessions, staff_users, counters, sms_first_texts,"
    " visit_actions, audit_log, staff_recovery_codes, login_throttles,"
    " email_opt_outs, webhook_deliveries, webhook_endpoints,"
    " waitlist_offers, waitlist_slots, waitlist_entries"
)


# Tests that run real processes against the wall clock (a text a second, quiet hours to the
# second, SIGKILLs, a shared Redis): one xdist worker runs them one after another, so they
# neither share rate slots nor crowd each other's timing; the other worker runs the rest.
REAL_TIME = {
    "test_chaos.py",
    "test_send_crash.py",
    "test_send_promises.py",
    "test_processes.py",
    "test_hooks_crash.py",  # kills `notifier serve` mid-delivery, waits out a lease
    "test_attacks.py",  # times its answers, and floods a web process
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in REAL_TIME:
            item.add_marker(pytest.mark.xdist_group("real_time"))


def new_york(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this run, migrated once; dropped at the end."""
    name = f"notifier_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}); `make test` starts it"
        )
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each storage and pipeline test runs on both databases, starting empty."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/notifier.db"
    url: str = request.getfixturevalue("postgres_url")
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def fake_twilio(twilio_server: FakeTwilio) -> FakeTwilio:
    twilio_server.reset()
    return twilio_server


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


@pytest.fixture
def smtp(smtp_server: SMTPSink) -> SMTPSink:
    smtp_server.reset()
    return smtp_server


def unthrottled_clinic(directory: Path) -> Path:
    """The example clinic with a sender rate no test has to wait for (the default is 1 a second)."""
    path = directory / "clinic.toml"
    path.write_text(
        EXAMPLE_CLINIC.read_text().replace("[policy]\n", "[policy]\nsms_per_second = 1000\n", 1)
    )
    return path


@pytest.fixture(scope="session")
def clinic_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unthrottled_clinic(tmp_path_factory.mktemp("clinic"))


def provider_settings(
    database_url: str, twilio: FakeTwilio, smtp: SMTPSink, clinic: Path
) -> Settings:
    return Settings(
        database_url=database_url,
        config_path=clinic,
        public_url="https://reminders.clinic.example",
        api_keys=("test-key",),
        secret_key="test-secret",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from_number="+15165550100",
        twilio_api_base_url=twilio.url,
        smtp_url=smtp.url,
        mail_from="North Shore Skin & Neurology <reminders@northshore.example>",
    )


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(new_york(2026, 11, 30, 9, 0))


@pytest.fixture
def rt(
    database_url: str,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    clock: SimulatedClock,
    clinic_path: Path,
) -> Iterator[Runtime]:
    """The real send path (twilio SDK, smtplib) on simulated time, against loopback servers."""
    settings = provider_settings(database_url, fake_twilio, smtp, clinic_path)
    runtime = Runtime.build(settings, clock=clock)
    runtime.prepare_database()
    yield runtime
    runtime.engine.dispose()
