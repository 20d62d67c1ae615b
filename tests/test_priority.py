"""When more is due than can go out at once, the time-critical goes first: the clock claims due
rows by priority, a sender's slots go to its most urgent messages, and a message placed in line
is placed behind the more urgent ones only."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select, text

from notifier import db, priority
from notifier.channels import Message
from notifier.channels.sms.twilio import TwilioSMS
from notifier.dispatch import claim_due, tick
from notifier.ingest import apply_event
from notifier.models import Notification
from notifier.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from notifier.runtime import Runtime
from notifier.send import deliver
from notifier.simulate import SimulatedClock
from tests.conftest import REDIS_URL
from tests.events import event
from tests.fakes import FakeTwilio
from tests.test_faults import SMS_ONLY

SENDER = "+15165550177"


def test_each_kind_has_its_priority() -> None:
    assert priority.of("reminder", "2h") == priority.URGENT
    assert priority.of("reminder", "0.5h") == priority.URGENT
    assert priority.of("staff_message") == priority.URGENT
    assert priority.of("waitlist_offer") == priority.URGENT
    assert priority.of("manual") == priority.URGENT
    assert priority.of("confirmation", "2026-12-03T15:00Z") == priority.STANDARD
    assert priority.of("reminder", "48h") == priority.STANDARD
    assert priority.of("cancellation") == priority.STANDARD
    assert priority.of("aftercare") == priority.AFTERCARE
    assert priority.of("rebook") == priority.MARKETING
    # A kind the table does not know yet, or a slot that is not a number of hours.
    assert priority.of("something_new") == priority.STANDARD
    assert priority.of("reminder", "fallback:x") == priority.STANDARD
    assert sorted(priority.LEVELS) == list(priority.LEVELS)


def _book(rt: Runtime, n: int, start_in: timedelta) -> None:
    with rt.sessions() as session:
        payload = event(
            "booked", rt.clock() + start_in, occurred_at=rt.clock(), consent=SMS_ONLY,
            appointment_id=f"apt-{n}", patient_id=f"pat-{n}", phone=f"+1718555020{n}",
        )  # fmt: skip
        apply_event(session, rt.clinic, payload, rt.clock())


def _plant(rt: Runtime, kinds: list[tuple[str, str]], due_in: list[timedelta]) -> list[int]:
    """Rows of these (kind, slot) on apt-0, due at these offsets from now; their priority is
    the one the model's default gives them."""
    now = rt.clock()
    with rt.sessions() as session:
        template = session.scalars(select(Notification)).first()
        assert template is not None
        columns = {
            c.key: getattr(template, c.key)
            for c in Notification.__table__.columns
            if c.key not in {"id", "priority"}
        }
        rows = [
            {**columns, "kind": kind, "slot": slot, "due_at": now + offset, "status": "scheduled"}
            for (kind, slot), offset in zip(kinds, due_in, strict=True)
        ]
        ids = list(session.scalars(insert(Notification).returning(Notification.id), rows))
        session.commit()
    return ids


def test_the_claim_takes_the_most_urgent_due_rows_first(rt: Runtime) -> None:
    _book(rt, 0, timedelta(days=5))
    with rt.sessions() as session:  # the booking's own confirmation is not part of this test
        session.execute(text("UPDATE notifications SET status = 'cancelled'"))
        session.commit()
    kinds = [
        ("rebook", ""),
        ("aftercare", ""),
        ("confirmation", "x"),
        ("reminder", "48h"),
        ("reminder", "2h"),
        ("manual", ""),
        ("reminder", "2h"),
    ]
    # The less urgent fell due first; the last 2-hour reminder is not due yet.
    due_in = [timedelta(minutes=-m) for m in (60, 50, 40, 30, 20, 10)] + [timedelta(minutes=5)]
    ids = _plant(rt, kinds, due_in)
    with rt.sessions() as session:
        query = select(Notification.id, Notification.priority).where(Notification.id.in_(ids))
        stored = dict(session.execute(query).tuples().all())
    assert [stored[i] for i in ids] == [3, 2, 1, 1, 0, 0, 0]
    with rt.sessions() as session:
        first = claim_due(session, rt.clock(), "clock", limit=3)
        rest = claim_due(session, rt.clock(), "clock", limit=10)
    # Within a priority the row due first goes first.
    assert first == [ids[4], ids[5], ids[2]]
    assert rest == [ids[3], ids[1], ids[0]]


@pytest.fixture(params=["redis", "local"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "redis":
        return RedisRateLimiter(REDIS_URL, prefix=f"test:rate:{uuid.uuid4().hex}:")
    return LocalRateLimiter()


def test_an_urgent_message_is_placed_in_line_ahead_of_the_less_urgent(
    limiter: RateLimiter,
) -> None:
    # At 1 a second, ten confirmations take the slots at 0 and 1 s and are placed from 2 s on.
    assert limiter.reserve(SENDER, 1, 10, 1, priority.STANDARD) == (0, 2, 2)
    # A 2-hour reminder asking now finds no slot, and is placed at the head of the line.
    wait, taken, line = limiter.reserve(SENDER, 1, 1, 1, priority.URGENT)
    assert taken == 0 and 1.9 < wait <= 2.0 and 1.9 < line <= 2.0
    # A second one goes behind the first; aftercare behind every place given so far.
    assert 2.9 < limiter.reserve(SENDER, 1, 1, 1, priority.URGENT).line <= 3.0
    # (the eight confirmations placed hold 2 to 9 s).
    assert 9.9 < limiter.reserve(SENDER, 1, 1, 1, priority.AFTERCARE).line <= 10.0
    # A confirmation goes behind the urgent places and the confirmations, not the aftercare.
    assert 9.9 < limiter.reserve(SENDER, 1, 1, 1, priority.STANDARD).line <= 10.0
    assert 10.9 < limiter.reserve(SENDER, 1, 1, 1, priority.STANDARD).line <= 11.0
    # Aftercare placed after it stays behind everything.
    assert 11.9 < limiter.reserve(SENDER, 1, 1, 1, priority.AFTERCARE).line <= 12.0


def test_no_slot_goes_to_a_less_urgent_message_while_urgent_ones_wait_in_line(
    limiter: RateLimiter,
) -> None:
    # At 10 a second, five urgent messages take the slots at 0 and 0.1 s; three are placed in
    # line at 0.2, 0.3 and 0.4 s.
    assert limiter.reserve(SENDER, 10, 5, 0.1, priority.URGENT) == (0, 2, pytest.approx(0.2))
    time.sleep(0.25)
    # The slot now is free, but it is an urgent message's turn: a confirmation waits.
    wait, taken, line = limiter.reserve(SENDER, 10, 1, 0.1, priority.STANDARD)
    assert taken == 0 and 0.2 < line <= 0.25
    # An urgent one takes it.
    assert limiter.reserve(SENDER, 10, 1, 0.1, priority.URGENT).taken == 1
    time.sleep(0.3)  # the urgent line has passed
    assert limiter.reserve(SENDER, 10, 1, 0.1, priority.STANDARD).taken == 1


def test_a_senders_slots_go_to_its_most_urgent_messages(limiter: RateLimiter) -> None:
    sms = TwilioSMS(
        account_sid="AC" + "0" * 32, auth_token="x", from_number=SENDER,
        messaging_service_sid=None, status_callback="https://reminders.clinic.example/s",
        limiter=limiter, per_second=lambda sender: 1.0,
    )  # fmt: skip
    levels = [priority.MARKETING, priority.STANDARD, priority.AFTERCARE, priority.URGENT]
    messages = [Message(i, "+17185550300", "hi", priority=p) for i, p in enumerate(levels)]
    delays = sms.pace(messages, 1.0)
    # Two slots within the next second: the urgent one's and the confirmation's.
    assert delays[3] == 0 and 0.9 < delays[1] <= 1.0
    assert 1.0 < delays[2] < delays[0]


def test_a_throttled_sender_sends_its_two_hour_reminders_before_its_confirmations(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    """The real send path (claim, batch, pacing, the twilio SDK against the fake) on the wall
    clock, one sender at 1 text a second: three visits booked for two hours and a minute
    from now, so each confirmation falls due a minute before its 2-hour reminder."""
    assert isinstance(rt.sms, TwilioSMS)
    rt.sms.per_second = lambda sender: 1.0
    # The message budget would fold a 2-hour reminder into a confirmation sent a minute before
    # it: set aside here, so that both fall due together and only their priorities order them.
    policy = rt.clinic.policy.model_copy(update={"sms_spacing_minutes": 0})
    rt.clinic = rt.clinic.model_copy(update={"policy": policy})
    for n in range(3):
        _book(rt, n, timedelta(hours=2, minutes=1))
    clock.now += timedelta(minutes=1)
    with rt.sessions() as session:
        due = session.execute(
            select(Notification.id, Notification.kind).where(
                Notification.status == "scheduled", Notification.due_at <= clock.now
            )
        ).all()
    assert sorted(kind for _, kind in due) == ["confirmation"] * 3 + ["reminder"] * 3
    base, started = clock.now, time.monotonic()
    while len(fake_twilio.messages) < 6 and time.monotonic() - started < 30:
        clock.now = base + timedelta(seconds=time.monotonic() - started)
        tick(rt, lambda ids: _deliver(rt, ids), "clock")
        time.sleep(0.05)
    sent = sorted(fake_twilio.messages, key=lambda m: m["received_at"])
    with rt.sessions() as session:
        kind_of = dict(
            session.execute(select(Notification.provider_id, Notification.kind)).tuples().all()
        )
    assert [kind_of[m["sid"]] for m in sent] == ["reminder"] * 3 + ["confirmation"] * 3
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(sent, sent[1:], strict=False)]
    # Paced at the sender's rate all the same: each text at its slot, one a second (a text that
    # leaves late does not move the next one's slot).
    assert sent[-1]["received_at"] - sent[0]["received_at"] > 4.5 and min(gaps) > 0.5


def _deliver(rt: Runtime, ids: Sequence[int]) -> None:
    deliver(rt, ids)


def test_the_upgrade_gives_planned_rows_their_kinds_priority(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/old.db")
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
        connection.exec_driver_sql("INSERT INTO locations VALUES ('l', 'L', 'America/New_York');")
        connection.exec_driver_sql("INSERT INTO treatments VALUES ('t', 'T')")
        connection.exec_driver_sql(
            "INSERT INTO patients (id, first_name, last_name, language, consent_sms,"
            " consent_email, consent_marketing, updated_at)"
            " VALUES ('p', 'A', 'B', 'en', 1, 0, 0, '2026-11-30 14:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO appointments (id, patient_id, location_id, treatment_id, start_at,"
            " end_at, status, confirmation, booked_at, rescheduled, last_event_at, created_at,"
            " updated_at) VALUES ('a', 'p', 'l', 't', '2026-12-03 15:00:00',"
            " '2026-12-03 15:30:00', 'booked', 'unconfirmed', '2026-11-30 14:00:00', 0,"
            " '2026-11-30 14:00:00', '2026-11-30 14:00:00', '2026-11-30 14:00:00')"
        )
        for kind, slot in [("reminder", "2h"), ("reminder", "48h"), ("rebook", ""), ("x", "")]:
            connection.exec_driver_sql(
                "INSERT INTO notifications (appointment_id, patient_id, kind, channel, slot,"
                " ask_confirm, planned_for, due_at, expires_at, status, attempts, created_at,"
                " updated_at) VALUES ('a', 'p', ?, 'sms', ?, 0, '2026-12-03 13:00:00',"
                " '2026-12-03 13:00:00', '2026-12-03 15:00:00', 'scheduled', 0,"
                " '2026-11-30 14:00:00', '2026-11-30 14:00:00')",
                (kind, slot),
            )
    db.upgrade(engine)
    with engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT kind, slot, priority FROM notifications ORDER BY id"
        ).all()
    assert [tuple(r) for r in found] == [
        ("reminder", "2h", 0), ("reminder", "48h", 1), ("rebook", "", 3), ("x", "", 1)
    ]  # fmt: skip
    engine.dispose()
