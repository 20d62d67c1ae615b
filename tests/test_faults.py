"""Exactly once under faults, in one process: each provider error class, timeouts, dropped
connections and a worker dying between the provider's acceptance and the commit."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy import Table, select

from notifier.channels import Channel, Message
from notifier.channels.sms.twilio import TwilioSMS
from notifier.dispatch import tick
from notifier.ingest import apply_event
from notifier.logs import mask
from notifier.models import Notification
from notifier.runtime import Runtime
from notifier.send import MAX_ATTEMPTS, backoff
from notifier.simulate import SimulatedClock, run_until
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

VISIT = new_york(2026, 12, 3, 10, 0)
SMS_ONLY = {"sms": True, "email": False, "marketing": False}
EMAIL_ONLY = {"sms": False, "email": True, "marketing": False}


def book(rt: Runtime, consent: dict[str, bool] = SMS_ONLY) -> None:
    with rt.sessions() as session:
        payload = event("booked", VISIT, occurred_at=rt.clock(), consent=consent)
        apply_event(session, rt.clinic, payload, rt.clock())


def confirmation(rt: Runtime) -> Notification:
    with rt.sessions() as session:
        query = select(Notification).where(Notification.kind == "confirmation")
        row = session.scalars(query).one()
        session.expunge(row)
        return row


def history(rt: Runtime, notification_id: int) -> list[str]:
    with rt.sessions() as session:
        return [e.status for e in session.get_one(Notification, notification_id).history]


def send_due(rt: Runtime) -> None:
    run_until(rt, rt.clock())


@pytest.mark.parametrize(
    "code, reason",
    [(21211, "invalid_number"), (21614, "not_mobile"), (21610, "opted_out"), (30006, "not_mobile")],
)
def test_permanent_twilio_errors_fail_at_once_with_the_code(
    rt: Runtime, fake_twilio: FakeTwilio, code: int, reason: str
) -> None:
    book(rt)
    fake_twilio.fail_next(status=400, code=code, message="permanent")
    send_due(rt)
    row = confirmation(rt)
    assert (row.status, row.error_code, row.reason, row.attempts) == (
        "failed",
        str(code),
        reason,
        1,
    )
    assert fake_twilio.messages == []


@pytest.mark.parametrize("status, code", [(500, 20500), (503, 20503), (429, 20429)])
def test_transient_twilio_errors_back_off_and_then_send(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, status: int, code: int
) -> None:
    book(rt)
    fake_twilio.fail_next(status=status, code=code, message="try later")
    send_due(rt)
    row = confirmation(rt)
    assert row.status == "scheduled" and row.error_code == str(code)
    assert timedelta(seconds=20) <= row.due_at - clock() <= timedelta(seconds=40)
    run_until(rt, clock() + timedelta(minutes=1))
    assert confirmation(rt).status == "sent"
    assert len(fake_twilio.messages) == 1
    # The claims (queued) leave no history row: the clock's busiest statement stays one UPDATE.
    assert history(rt, row.id) == ["scheduled", "sending", "scheduled", "sending", "sent"]


def test_transient_errors_give_up_after_the_limit(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    book(rt)
    fake_twilio.fail_next(status=503, code=20503, message="down", times=MAX_ATTEMPTS)
    run_until(rt, clock() + timedelta(days=1))
    row = confirmation(rt)
    assert (row.status, row.reason, row.attempts) == ("failed", "gave_up", MAX_ATTEMPTS)


def test_backoff_grows_and_is_capped() -> None:
    steps = [backoff(n).total_seconds() for n in (1, 2, 3, 12)]
    assert 22 <= steps[0] <= 38 and 45 <= steps[1] <= 75 and 90 <= steps[2] <= 150
    assert steps[3] <= 3600 * 1.25


def with_settings(rt: Runtime, **changes: object) -> Runtime:
    """The same runtime with other provider settings (a short timeout, say), channels rebuilt."""
    from notifier.runtime import sms_channel

    settings = dataclasses.replace(rt.settings, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(rt, settings=settings, sms=sms_channel(settings, rt.clinic))


def test_connection_refused_is_transient(rt: Runtime) -> None:
    refused = with_settings(rt, twilio_api_base_url="http://127.0.0.1:9")
    book(refused)
    send_due(refused)
    assert confirmation(rt).status == "scheduled"


def test_a_timeout_is_unknown_then_reconciled_as_sent_without_a_resend(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    quick = with_settings(rt, provider_timeout=0.3)
    book(quick)
    fake_twilio.hang_next(0.8)
    send_due(quick)
    row = confirmation(rt)
    assert row.status == "unknown"
    time.sleep(0.8)  # the provider finishes the request after the client gave up
    run_until(quick, clock() + timedelta(seconds=quick.settings.sending_lease_seconds + 1))
    row = confirmation(rt)
    assert (row.status, row.provider_id) == ("sent", fake_twilio.messages[0]["sid"])
    assert len(fake_twilio.messages) == 1
    assert history(rt, row.id)[-2:] == ["unknown", "sent"]


def test_a_dropped_answer_is_unknown_then_reconciled_as_sent(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    book(rt)
    fake_twilio.drop_next()
    send_due(rt)
    assert confirmation(rt).status == "unknown"
    run_until(rt, clock() + timedelta(seconds=rt.settings.sending_lease_seconds + 1))
    row = confirmation(rt)
    assert (row.status, row.provider_id) == ("sent", fake_twilio.messages[0]["sid"])
    assert len(fake_twilio.messages) == 1


class Around:
    """A channel around the real one: what a subclass does not change, the real one does."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        return self.channel.pace(messages, within)

    def send(self, message: Message) -> str:
        return self.channel.send(message)

    def find(self, message: Message, known: Collection[str]) -> str | None:
        return self.channel.find(message, known)


class DiesAfter(Around):
    """A channel whose worker is killed right after (or right before) the provider call."""

    def __init__(self, channel: Channel, reach_provider: bool) -> None:
        super().__init__(channel)
        self.reach_provider = reach_provider

    def send(self, message: Message) -> str:
        if self.reach_provider:
            self.channel.send(message)
        raise KeyboardInterrupt("worker killed")  # nothing after this line runs, like SIGKILL


@pytest.mark.parametrize("reached", [True, False])
def test_a_worker_killed_mid_send_leaves_exactly_one_message(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, reached: bool
) -> None:
    book(rt)
    dying = dataclasses.replace(rt, sms=DiesAfter(rt.sms, reach_provider=reached))
    with pytest.raises(KeyboardInterrupt):
        send_due(dying)
    assert confirmation(rt).status == "sending"
    run_until(rt, clock() + timedelta(seconds=rt.settings.sending_lease_seconds + 1))
    row = confirmation(rt)
    assert row.status == "sent"
    assert [m["sid"] for m in fake_twilio.messages] == [row.provider_id]
    expected = "found at the provider" if reached else "not at the provider"
    with rt.sessions() as session:
        details = [e.detail for e in session.get_one(Notification, row.id).history]
    assert any(expected in (d or "") for d in details)


def test_an_expired_queued_claim_is_claimed_again_and_sent_once(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    book(rt)
    lost: list[int] = []
    tick(rt, lost.extend, "clock")  # the broker loses the task
    assert confirmation(rt).status == "queued" and lost
    run_until(rt, clock() + timedelta(seconds=rt.settings.queue_lease_seconds + 1))
    assert confirmation(rt).status == "sent"
    assert len(fake_twilio.messages) == 1


def test_a_redelivered_task_sends_nothing_twice(rt: Runtime, fake_twilio: FakeTwilio) -> None:
    from notifier.send import deliver

    book(rt)
    ids: list[int] = []
    tick(rt, ids.extend, "clock")
    deliver(rt, ids)
    deliver(rt, ids)  # the broker hands the same task out twice
    assert len(fake_twilio.messages) == 1


@pytest.mark.parametrize(
    "code, status", [(451, "scheduled"), (421, "scheduled"), (550, "failed"), (554, "failed")]
)
def test_smtp_4xx_is_transient_and_5xx_permanent(
    rt: Runtime, smtp: SMTPSink, code: int, status: str
) -> None:
    book(rt, consent=EMAIL_ONLY)
    smtp.fail_next(code=code, message="no")
    send_due(rt)
    row = confirmation(rt)
    assert (row.status, row.error_code) == (status, str(code))


def test_an_unreachable_smtp_server_is_transient(rt: Runtime) -> None:
    from notifier.runtime import email_channel

    settings = dataclasses.replace(rt.settings, smtp_url="smtp://127.0.0.1:9")
    closed = dataclasses.replace(rt, email=email_channel(settings))
    book(closed, consent=EMAIL_ONLY)
    send_due(closed)
    assert confirmation(rt).status == "scheduled"


def test_an_unknown_email_is_sent_again_with_the_same_message_id(
    rt: Runtime, clock: SimulatedClock, smtp: SMTPSink
) -> None:
    book(rt, consent=EMAIL_ONLY)
    dying = dataclasses.replace(rt, email=DiesAfter(rt.email, reach_provider=True))
    with pytest.raises(KeyboardInterrupt):
        send_due(dying)
    run_until(rt, clock() + timedelta(seconds=rt.settings.sending_lease_seconds + 1))
    assert confirmation(rt).status == "sent"
    ids = [str(m["Message-ID"]) for m in smtp.messages]
    assert len(ids) == 2 and len(set(ids)) == 1  # a de-duplicating mail store keeps one


@pytest.mark.parametrize(
    "line, masked",
    [
        ("to +17185550134 failed", "to +1718•••0134 failed"),
        ("mail for ana.ruiz@example.org", "mail for a•••@example.org"),
        ("notification 42 sent", "notification 42 sent"),
    ],
)
def test_phone_numbers_and_emails_are_masked_in_logs(line: str, masked: str) -> None:
    assert mask(line) == masked


def test_the_log_filter_masks_what_a_library_logs(caplog: pytest.LogCaptureFixture) -> None:
    from notifier.logs import MaskingFilter

    logger = logging.getLogger("some.library")
    caplog.handler.addFilter(MaskingFilter())
    logger.warning("The 'To' number %s is not valid", "+17185550134")
    assert "+17185550134" not in caplog.text and "+1718•••0134" in caplog.text


class SlowProvider(Around):
    """Each call takes 20 s of simulated time; `meanwhile` runs during the first one."""

    def __init__(
        self, channel: Channel, clock: SimulatedClock, meanwhile: Callable[[], None]
    ) -> None:
        super().__init__(channel)
        self.clock, self.meanwhile = clock, meanwhile
        self.calls = 0

    def send(self, message: Message) -> str:
        self.calls += 1
        if self.calls == 1:
            self.meanwhile()
        self.clock.now += timedelta(seconds=20)
        return self.channel.send(message)


def book_patients(rt: Runtime, count: int) -> list[int]:
    """Books `count` patients and claims their confirmations: the ids of one batch."""
    for n in range(count):
        with rt.sessions() as session:
            payload = event(
                "booked", VISIT, occurred_at=rt.clock(), consent=SMS_ONLY,
                appointment_id=f"apt-{n}", patient_id=f"pat-{n}", phone=f"+1718555010{n}",
            )  # fmt: skip
            apply_event(session, rt.clinic, payload, rt.clock())
    ids: list[int] = []
    tick(rt, ids.extend, "clock")
    return ids


class AllAtOnce(Around):
    """Lets no call through until `count` calls are waiting together."""

    def __init__(self, channel: Channel, count: int) -> None:
        super().__init__(channel)
        self.barrier = threading.Barrier(count, timeout=10)

    def send(self, message: Message) -> str:
        self.barrier.wait()  # BrokenBarrierError if the calls came one after another
        return self.channel.send(message)


def test_a_batch_has_its_provider_calls_in_flight_together(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    from notifier.send import deliver

    ids = book_patients(rt, 4)
    fates = deliver(dataclasses.replace(rt, sms=AllAtOnce(rt.sms, 4)), ids)
    assert [fates[i] for i in ids] == ["sent"] * 4
    assert sorted(m["to"] for m in fake_twilio.messages) == [f"+1718555010{n}" for n in range(4)]
    with rt.sessions() as session:
        assert {session.get_one(Notification, i).status for i in ids} == {"sent"}


class Latency(Around):
    """Answers after `seconds` of real time, as a provider across the internet does; counts
    the most calls it had at once."""

    def __init__(self, channel: Channel, seconds: float) -> None:
        super().__init__(channel)
        self.seconds, self.now, self.most = seconds, 0, 0
        self.lock = threading.Lock()

    def send(self, message: Message) -> str:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return self.channel.send(message)


def test_more_calls_are_in_flight_while_the_provider_is_slow(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    from notifier.calls import FEWEST_IN_FLIGHT
    from notifier.send import deliver

    ids = book_patients(rt, 10)
    slow = Latency(rt.sms, 0.1)
    eight = dataclasses.replace(rt.settings, send_concurrency=8)
    fates = deliver(dataclasses.replace(rt, sms=slow, settings=eight), ids)
    assert [fates[i] for i in ids] == ["sent"] * 10
    assert FEWEST_IN_FLIGHT < slow.most <= 8


def test_calls_in_flight_grow_while_answers_are_slow_and_shrink_when_quick() -> None:
    from notifier.calls import FEWEST_IN_FLIGHT, InFlight

    window = InFlight(16)
    assert window.size == FEWEST_IN_FLIGHT
    assert [window.answered(0.2) for _ in range(14)] == [2] * 12 + [1, 1]
    assert window.size == 16
    assert [window.answered(0.001) for _ in range(14)] == [0] * 12 + [1, 1]
    assert window.size == FEWEST_IN_FLIGHT
    assert InFlight(1).answered(0.2) == 1  # never more than the pool allows


def test_an_unreachable_rate_limiter_sends_nothing_and_retries_later(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    from notifier.ratelimit import RedisRateLimiter
    from notifier.send import deliver

    ids = book_patients(rt, 2)
    assert isinstance(rt.sms, TwilioSMS)
    rt.sms.limiter = RedisRateLimiter("redis://127.0.0.1:9/0")  # nothing listens there
    fates = deliver(rt, ids)
    assert [fates[i] for i in ids] == ["scheduled", "scheduled"]
    assert fake_twilio.messages == []
    with rt.sessions() as session:
        last = session.get_one(Notification, ids[0]).history[-1]
    assert last.status == "scheduled" and "rate limiter unavailable" in (last.detail or "")


class SlotInASecond(Around):
    """Gives each message a slot a second away, the longest a held message waits; while it
    waits, most of the lease goes by on the simulated clock, and the reaper runs during the
    call once the lease the batch first took is over."""

    def __init__(self, rt: Runtime, clock: SimulatedClock) -> None:
        super().__init__(rt.sms)
        self.rt, self.clock = rt, clock

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        margin = self.rt.settings.provider_timeout + 10
        later = timedelta(seconds=self.rt.settings.sending_lease_seconds - margin + 1)
        threading.Timer(0.5, lambda: setattr(self.clock, "now", self.clock.now + later)).start()
        return [1.0] * len(messages)

    def send(self, message: Message) -> str:
        from notifier.dispatch import reap

        self.clock.now += timedelta(seconds=self.rt.settings.provider_timeout + 10)
        with self.rt.sessions() as session:
            reap(session, self.clock())
        return self.channel.send(message)


def test_a_held_message_has_its_lease_renewed_before_its_call(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    from notifier.send import deliver

    ids = book_patients(rt, 1)
    fates = deliver(dataclasses.replace(rt, sms=SlotInASecond(rt, clock)), ids)
    # Without the renewal before the call, the reaper would have made the row `unknown`.
    assert fates == {ids[0]: "sent"}
    assert len(fake_twilio.messages) == 1
    assert "unknown" not in history(rt, ids[0])


def test_a_long_batch_renews_its_lease_and_skips_rows_it_lost(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    from notifier.send import deliver

    ids = book_patients(rt, 3)

    def reaper_takes_the_last_row() -> None:
        with rt.sessions() as session:
            session.execute(
                cast(Table, Notification.__table__)
                .update()
                .where(Notification.id == ids[-1])
                .values(status="unknown", lease_owner=None)
            )
            session.commit()

    slow = SlowProvider(rt.sms, clock, reaper_takes_the_last_row)
    one_at_a_time = dataclasses.replace(rt.settings, send_concurrency=1)
    fates = deliver(dataclasses.replace(rt, sms=slow, settings=one_at_a_time), ids)
    assert [fates[i] for i in ids] == ["sent", "sent", "lost-race"]
    assert len(fake_twilio.messages) == 2
    with rt.sessions() as session:
        assert [session.get_one(Notification, i).status for i in ids] == ["sent", "sent", "unknown"]
