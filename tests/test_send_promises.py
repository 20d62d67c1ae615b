"""The send step's checks hold at the moment of the provider call, however long a text waits
for its sender's slot (issue 12).

At the clinic's default rate (1 text a second per sender number) 60 confirmations take a minute
to go out. A STOP, a cancel or the start of quiet hours that comes while they wait must win over
every text not yet handed to Twilio, and the row must say why it was withdrawn. Each scenario
runs the real processes against the fake Twilio, whose `received_at` is the moment it accepted
a message: on SQLite the one-process `notifier serve`, on PostgreSQL the production shape
(`notifier web`, two `notifier scheduler`s, a `notifier worker`, Redis).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from notifier.settings import EXAMPLE_CLINIC
from tests.events import event
from tests.fakes import FakeTwilio, wait_until
from tests.fakes.twilio import RecordedMessage
from tests.test_processes import AUTH, Stack, _healthy, _logs, launch, signed_reply, stack_env

BOOKINGS = 60
# The patients' own zone, not the location's (New York), so quiet hours are theirs; it keeps no
# daylight saving time, so "two hours later" on its wall clock is two hours later.
PATIENT_ZONE = ZoneInfo("Asia/Kolkata")
# The contract lets the send-time check be this much older than the provider call.
CHECK_BOUND = 1.0
# Patients booked well into the line: at 1 a second their texts would go 15-20 s after the
# event. (The cancellation notice still waits for the whole line, about a minute.)
STOPPING, CANCELLING = 18, 21
PENDING = {"scheduled", "queued", "sending"}

Launcher = Callable[[clock_time, clock_time], Stack]


def phone(n: int) -> str:
    return f"+1718555{100 + n:04d}"


def kind_of(body: str) -> str:
    if "you're booked" in body:
        return "confirmation"
    if "is cancelled" in body:
        return "cancellation"
    return "other"


def throttled_clinic(directory: Path, quiet_start: clock_time, quiet_end: clock_time) -> Path:
    """The example clinic at its default sender rate, with these quiet hours (to the second)."""
    example = EXAMPLE_CLINIC.read_text()
    default_quiet = 'quiet_hours = { start = "21:00", end = "08:00" }'
    assert default_quiet in example
    quiet = f'quiet_hours = {{ start = "{quiet_start:%H:%M:%S}", end = "{quiet_end:%H:%M:%S}" }}'
    path = directory / "throttled_clinic.toml"
    path.write_text(
        example.replace(default_quiet, quiet).replace(
            "[policy]\n", "[policy]\nsms_per_second = 1\n"
        )
    )
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def launcher(
    request: pytest.FixtureRequest, fake_twilio: FakeTwilio, tmp_path: Path
) -> Iterator[Launcher]:
    """Starts the stack of the parameter's database with the given quiet hours, ready to serve.

    The sender number is this run's own: the Redis rate limiter keeps its slots per sender, and
    other runs on the same Redis must not take ours."""
    sender = f"+1516555{random.randrange(2000, 10000):04d}"
    started: list[Stack] = []

    def start(quiet_start: clock_time, quiet_end: clock_time) -> Stack:
        clinic = throttled_clinic(tmp_path, quiet_start, quiet_end)
        if request.param == "sqlite":
            stack = Stack(_serve_env(fake_twilio, tmp_path), tmp_path)
            stack.env |= {"NOTIFIER_CONFIG": str(clinic), "TWILIO_FROM_NUMBER": sender}
            started.append(stack)
            stack.start("serve", "--port", str(stack.port))
            if not wait_until(lambda: _healthy(stack.url), timeout=20):
                pytest.fail(_logs(tmp_path))
        else:
            postgres_url = request.getfixturevalue("postgres_url")
            smtp = request.getfixturevalue("smtp")
            env = stack_env(postgres_url, fake_twilio, smtp, tmp_path)
            env |= {"NOTIFIER_CONFIG": str(clinic), "TWILIO_FROM_NUMBER": sender}
            stack = launch(env, tmp_path)
            started.append(stack)
        return stack

    try:
        yield start
    finally:
        for stack in started:
            stack.stop()


def _serve_env(fake_twilio: FakeTwilio, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    return env | {
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path}/notifier.db",
        "NOTIFIER_API_KEYS": "test-key",
        "NOTIFIER_SECRET_KEY": "test-secret",
        "NOTIFIER_PUBLIC_URL": "https://reminders.clinic.example",
        "TWILIO_ACCOUNT_SID": fake_twilio.account_sid,
        "TWILIO_AUTH_TOKEN": fake_twilio.auth_token,
        "TWILIO_API_BASE_URL": fake_twilio.url,
    }


def quiet_hours_far_off() -> tuple[clock_time, clock_time]:
    """Quiet hours that start 6 hours from now and last one: no scenario run comes near them."""
    local = datetime.now(PATIENT_ZONE)
    return (local + timedelta(hours=6)).time(), (local + timedelta(hours=7)).time()


@dataclass
class Line:
    """Sixty SMS-only bookings, one location and sender, each patient a number of their own."""

    stack: Stack
    start: datetime  # of every visit, three days ahead
    booked_at: float  # time.time() when the last booking was answered

    def booking(self, type_: str, n: int, occurred_at: datetime) -> dict[str, Any]:
        payload = event(
            type_,
            self.start,
            occurred_at=occurred_at,
            appointment_id=f"apt-{n}",
            patient_id=f"pat-{n}",
            phone=phone(n),
            email=None,
            consent={"sms": True, "email": False, "marketing": False},
        )
        payload["patient"]["time_zone"] = PATIENT_ZONE.key
        return payload

    def sms_confirmation(self, n: int) -> dict[str, Any]:
        answer = httpx.get(f"{self.stack.url}/v1/appointments/apt-{n}", headers=AUTH, timeout=10)
        (row,) = [
            r
            for r in answer.json()["notifications"]
            if (r["kind"], r["channel"]) == ("confirmation", "sms")
        ]
        return row

    @property
    def sender(self) -> str:
        return self.stack.env["TWILIO_FROM_NUMBER"]


def book_line(stack: Stack) -> Line:
    now = datetime.now(UTC)
    line = Line(stack, now + timedelta(days=3), 0.0)
    with httpx.Client(base_url=stack.url, headers=AUTH, timeout=10) as client:
        for n in range(BOOKINGS):
            answer = client.post("/v1/events", json=line.booking("booked", n, now))
            assert answer.status_code == 202, answer.text
    line.booked_at = time.time()
    return line


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def timeline(messages: list[RecordedMessage], since: float, what: str) -> str:
    """Every acceptance, in seconds relative to `since`, for the failure message."""
    rows = [
        f"  {m['received_at'] - since:+7.2f} s  {m['to']}  {kind_of(m['body'])}"
        for m in sorted(messages, key=lambda m: m["received_at"])
    ]
    return f"{what}\naccepted by Twilio, relative to the event:\n" + "\n".join(rows)


def assert_sent_once(messages: list[RecordedMessage], summary: str) -> None:
    twice = [
        key for key, count in Counter((m["to"], m["body"]) for m in messages).items() if count > 1
    ]
    assert not twice, f"sent more than once: {twice}\n{summary}"


def assert_paced(times: list[float], summary: str, until: float | None = None) -> None:
    """About one a second, the clinic's rate: never faster (the slack is for a request a busy
    machine delivers late while the next is on time), and no stall while texts still wait."""
    times = sorted(times)
    assert all(later - first >= 4.0 for first, later in zip(times, times[5:], strict=False)), (
        f"faster than 1 a second\n{summary}"
    )
    ends = [*times, until] if until is not None else times
    gaps = [later - first for first, later in zip(ends, ends[1:], strict=False)]
    assert max(gaps, default=0.0) <= 3.0, f"a stall of {max(gaps):.1f} s\n{summary}"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_stop_that_comes_while_the_text_waits_for_its_slot_wins(
    launcher: Launcher, fake_twilio: FakeTwilio
) -> None:
    line = book_line(launcher(*quiet_hours_far_off()))
    sleep_until(line.booked_at + 2)
    answer = signed_reply(line.stack, "STOP", patient=phone(STOPPING), sender=line.sender)
    stopped_at = time.time()
    assert answer.status_code == 200, answer.text

    settled = wait_until(
        lambda: line.sms_confirmation(STOPPING)["status"] not in PENDING,
        timeout=stopped_at + 28 - time.time(),
        interval=0.5,
    )
    sleep_until(stopped_at + 22)
    messages = fake_twilio.messages
    row = line.sms_confirmation(STOPPING)
    late = [m for m in messages if m["to"] == phone(STOPPING) and m["received_at"] > stopped_at]
    summary = timeline(
        messages,
        stopped_at,
        f"STOP from {phone(STOPPING)} answered at 0.00 s; its confirmation row: "
        f"{row['status']} ({row['reason']}){'' if settled else ', still pending'}; "
        f"texts to it after the STOP: {[round(m['received_at'] - stopped_at, 2) for m in late]}",
    )
    assert not late, summary
    assert (row["status"], row["reason"]) == ("suppressed", "opted_out"), summary
    assert_sent_once(messages, summary)
    assert_paced([m["received_at"] for m in messages], summary, until=time.time())


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_cancel_that_comes_while_the_confirmation_waits_for_its_slot_wins(
    launcher: Launcher, fake_twilio: FakeTwilio
) -> None:
    line = book_line(launcher(*quiet_hours_far_off()))
    sleep_until(line.booked_at + 2)
    cancel = line.booking("cancelled", CANCELLING, datetime.now(UTC))
    answer = httpx.post(f"{line.stack.url}/v1/events", json=cancel, headers=AUTH, timeout=10)
    cancelled_at = time.time()
    assert answer.status_code == 202, answer.text

    others = {phone(n) for n in range(BOOKINGS) if n != CANCELLING}

    def all_out() -> bool:
        messages = fake_twilio.messages
        notices = [m for m in messages if kind_of(m["body"]) == "cancellation"]
        return bool(notices) and others <= {m["to"] for m in messages}

    # The notice queues behind the other confirmations: about a minute at 1 a second.
    finished = wait_until(all_out, timeout=cancelled_at + 72 - time.time(), interval=0.2)
    wait_until(lambda: False, timeout=1.5)  # let any duplicate arrive before counting
    messages = fake_twilio.messages
    row = line.sms_confirmation(CANCELLING)
    theirs = [m for m in messages if m["to"] == phone(CANCELLING)]
    booked_late = [
        m
        for m in theirs
        if kind_of(m["body"]) == "confirmation" and m["received_at"] > cancelled_at
    ]
    notices = [m for m in theirs if kind_of(m["body"]) == "cancellation"]
    summary = timeline(
        messages,
        cancelled_at,
        f"cancel of apt-{CANCELLING} ({phone(CANCELLING)}) answered at 0.00 s; its confirmation "
        f"row: {row['status']} ({row['reason']}); to it: "
        + ", ".join(
            f"{kind_of(m['body'])} at {m['received_at'] - cancelled_at:+.2f} s" for m in theirs
        )
        + ("" if finished else "; the line had not finished"),
    )
    assert not booked_late, summary
    assert len(notices) == 1, summary
    assert row["status"] == "cancelled" and row["reason"], summary
    assert_sent_once(messages, summary)
    assert others <= {m["to"] for m in messages}, summary
    assert_paced([m["received_at"] for m in messages], summary)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_quiet_hours_that_begin_while_texts_wait_for_their_slots_hold_them_back(
    launcher: Launcher, fake_twilio: FakeTwilio
) -> None:
    # The clinic file is read at start, so quiet hours are set before it, with room to start.
    quiet_at = math.ceil(time.time() + 25)
    quiet_start = datetime.fromtimestamp(quiet_at, PATIENT_ZONE)
    quiet_end = quiet_start + timedelta(hours=2)
    stack = launcher(quiet_start.time(), quiet_end.time())
    if time.time() > quiet_at - 5:
        pytest.fail(f"the stack took too long to start: {quiet_at - time.time():.1f} s to spare")
    # Posting the bookings takes well under a second: quiet hours begin ~3 s after them.
    sleep_until(quiet_at - 3.5)
    line = book_line(stack)

    def held_back() -> bool:
        rows = [line.sms_confirmation(n) for n in range(BOOKINGS)]
        return not any(r["status"] in {"queued", "sending"} for r in rows)

    sleep_until(quiet_at + 12)
    wait_until(held_back, timeout=quiet_at + 15 - time.time(), interval=0.5)
    messages = fake_twilio.messages
    rows = {n: line.sms_confirmation(n) for n in range(BOOKINGS)}
    statuses = Counter(r["status"] for r in rows.values())
    late = [m["received_at"] - quiet_at for m in messages if m["received_at"] >= quiet_at]
    summary = timeline(
        messages,
        quiet_at,
        f"quiet hours begin at 0.00 s ({quiet_start:%H:%M:%S} {PATIENT_ZONE.key}), the last "
        f"booking was answered at {line.booked_at - quiet_at:+.2f} s; "
        f"{len(late)} accepted in quiet hours; confirmation rows: {dict(statuses)}",
    )
    assert not [t for t in late if t >= CHECK_BOUND], summary
    before = [m["received_at"] for m in messages if m["received_at"] < quiet_at]
    assert before, f"nothing went out before quiet hours: the check proves nothing\n{summary}"
    sent_to = {m["to"] for m in messages}
    for n, row in rows.items():
        if phone(n) in sent_to:
            continue
        due = datetime.fromisoformat(row["due_at"])
        deferred = row["status"] == "scheduled" and abs((due - quiet_end).total_seconds()) < 1
        assert deferred or (row["status"], row["reason"]) == ("suppressed", "quiet_hours"), (
            f"apt-{n}: {row['status']} ({row['reason']}) due {row['due_at']}, not deferred to "
            f"{quiet_end.astimezone(UTC):%H:%M:%S}Z\n{summary}"
        )
    assert_sent_once(messages, summary)
    assert_paced(before, summary)
