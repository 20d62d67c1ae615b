"""The checks hold at the moment of the provider call, in one process: a batch sends only what
its sender can send within the next second, a STOP or a cancel that comes while a message waits
for its slot wins, quiet hours are checked right before the call, and each acceptance is
written down before the next call of the batch starts."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select

from notifier.channels import Channel, Message
from notifier.channels.sms.twilio import TwilioSMS
from notifier.dispatch import tick
from notifier.ingest import apply_event
from notifier.models import Notification
from notifier.runtime import Runtime
from notifier.send import RECORD_SECONDS, WITHIN_SECONDS, deliver
from notifier.simulate import SimulatedClock
from notifier.store import opt_outs
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink
from tests.test_faults import SMS_ONLY, VISIT, Around, book_patients


def at_one_a_second(rt: Runtime) -> Runtime:
    assert isinstance(rt.sms, TwilioSMS)
    rt.sms.per_second = lambda sender: 1.0
    return rt


def rows(rt: Runtime, ids: Sequence[int]) -> list[Notification]:
    with rt.sessions() as session:
        found = session.scalars(select(Notification).where(Notification.id.in_(ids))).all()
        session.expunge_all()
    return sorted(found, key=lambda n: n.id)


def test_a_batch_sends_the_next_second_and_hands_the_rest_back_in_line(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    ids = book_patients(at_one_a_second(rt), 5)
    now = rt.clock()
    fates = deliver(rt, ids)
    # At 1 a second, the slots of the next second are the one now and the one a second away.
    assert [fates[i] for i in ids] == ["sent", "sent", "scheduled", "scheduled", "scheduled"]
    assert len(fake_twilio.messages) == 2
    later = rows(rt, ids)[2:]
    assert {n.status for n in later} == {"scheduled"}
    assert {n.lease_owner for n in later} == {None}
    # Each due shortly before its sender's slot, one a second apart, nothing reserved for it.
    due = [(n.due_at - now).total_seconds() for n in later]
    assert 1 <= due[0] < 2 and due == sorted(due) and due[-1] - due[0] >= 1.9


def test_a_message_waiting_for_its_slot_can_still_be_cancelled(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    ids = book_patients(at_one_a_second(rt), 4)
    deliver(rt, ids)
    with rt.sessions() as session:
        cancel = event(
            "cancelled", VISIT, occurred_at=rt.clock() + timedelta(seconds=1), consent=SMS_ONLY,
            appointment_id="apt-3", patient_id="pat-3", phone="+17185550103",
        )  # fmt: skip
        apply_event(session, rt.clinic, cancel, rt.clock())
    waiting = rows(rt, ids)[3]
    assert (waiting.status, waiting.reason) == ("cancelled", "plan_changed")


class StopWhileWaiting(Around):
    """Gives the second message a slot 0.9 s away; while it waits, its patient texts STOP."""

    def __init__(self, rt: Runtime, phone: str) -> None:
        super().__init__(rt.sms)
        self.rt, self.phone, self.calls = rt, phone, 0

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        return [0.9 * i for i in range(len(messages))]

    def send(self, message: Message) -> str:
        self.calls += 1
        with self.rt.sessions() as session:  # the STOP lands after the first call began
            opt_outs.register(session, self.phone, "keyword:STOP", self.rt.clock())
            session.commit()
        return self.channel.send(message)


def test_a_stop_that_comes_while_a_message_waits_for_its_slot_wins(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    ids = book_patients(rt, 2)
    stop = StopWhileWaiting(rt, "+17185550101")
    fates = deliver(dataclasses.replace(rt, sms=stop), ids)
    assert [fates[i] for i in ids] == ["sent", "suppressed"]
    assert [m["to"] for m in fake_twilio.messages] == ["+17185550100"]
    withdrawn = rows(rt, ids)[1]
    assert (withdrawn.status, withdrawn.reason) == ("suppressed", "opted_out")


class QuietHoursBeginWhileWaiting(Around):
    """The slot is half a second away, and by then it is 21:00 for the patient."""

    def __init__(self, rt: Runtime, clock: SimulatedClock) -> None:
        super().__init__(rt.sms)
        self.clock = clock

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        self.clock.now = new_york(2026, 11, 30, 21, 0)
        return [0.5] * len(messages)


def test_quiet_hours_are_checked_right_before_the_call(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    ids = book_patients(rt, 1)
    fates = deliver(dataclasses.replace(rt, sms=QuietHoursBeginWhileWaiting(rt, clock)), ids)
    assert fates == {ids[0]: "scheduled"} and fake_twilio.messages == []
    row = rows(rt, ids)[0]
    assert row.due_at == new_york(2026, 12, 1, 8, 0)


class SeesEachSendRecorded(Around):
    """Before each call, reads from the database how many of the batch's sends are recorded."""

    def __init__(self, rt: Runtime, channel: Channel) -> None:
        super().__init__(channel)
        self.rt = rt
        self.recorded_before: list[int] = []

    def send(self, message: Message) -> str:
        with self.rt.sessions() as session:
            sent = select(Notification.id).where(Notification.status == "sent")
            self.recorded_before.append(len(session.scalars(sent).all()))
        return self.channel.send(message)


def book_by_email(rt: Runtime, count: int) -> list[int]:
    for n in range(count):
        with rt.sessions() as session:
            payload = event(
                "booked", VISIT, occurred_at=rt.clock(), appointment_id=f"apt-{n}",
                patient_id=f"pat-{n}", phone=None, email=f"pat{n}@example.org",
                consent={"sms": False, "email": True, "marketing": False},
            )  # fmt: skip
            apply_event(session, rt.clinic, payload, rt.clock())
    ids: list[int] = []
    tick(rt, ids.extend, "clock")
    return ids


def test_each_email_accepted_is_written_down_before_the_next_call(
    rt: Runtime, smtp: SMTPSink
) -> None:
    ids = book_by_email(rt, 5)
    watching = SeesEachSendRecorded(rt, rt.email)
    one_at_a_time = dataclasses.replace(rt.settings, send_concurrency=1)
    deliver(dataclasses.replace(rt, email=watching, settings=one_at_a_time), ids)
    assert watching.recorded_before == [0, 1, 2, 3, 4]


class SlowAfterTheFirst(Around):
    """Answers the first text at once and each later one after 0.2 s."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt.sms)
        self.rt, self.calls = rt, 0
        self.recorded_before: list[int] = []

    def send(self, message: Message) -> str:
        self.calls += 1
        if self.calls > 1:
            time.sleep(0.2)
            with self.rt.sessions() as session:
                sent = select(Notification.id).where(Notification.status == "sent")
                self.recorded_before.append(len(session.scalars(sent).all()))
        return self.channel.send(message)


def test_a_text_accepted_is_written_down_within_moments_while_others_are_in_flight(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    ids = book_patients(rt, 3)
    slow = SlowAfterTheFirst(rt)
    deliver(dataclasses.replace(rt, sms=slow), ids)
    # The first acceptance was written down (within RECORD_SECONDS) while the others were
    # still with the provider, not when the batch ended.
    assert RECORD_SECONDS < 0.2 and slow.recorded_before == [1, 1]


def test_emails_do_not_wait_behind_text_pacing(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    for n in range(15):  # a confirmation by text and one by email for each
        with rt.sessions() as session:
            payload = event(
                "booked", VISIT, occurred_at=rt.clock(), appointment_id=f"apt-{n}",
                patient_id=f"pat-{n}", phone=f"+1718555{n:04d}", email=f"pat{n}@example.org",
                consent={"sms": True, "email": True, "marketing": False},
            )  # fmt: skip
            apply_event(session, rt.clinic, payload, rt.clock())
    ids: list[int] = []
    tick(at_one_a_second(rt), ids.extend, "clock")
    began = time.monotonic()
    fates = deliver(rt, ids)
    assert time.monotonic() - began < WITHIN_SECONDS + 1
    emails = [n.id for n in rows(rt, ids) if n.channel == "email"]
    assert [fates[i] for i in emails] == ["sent"] * 15
    assert len(smtp.messages) == 15 and len(fake_twilio.messages) == 2


def test_a_text_handed_back_into_quiet_hours_is_due_in_the_morning(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    clock.now = new_york(2026, 11, 30, 20, 59, 58)
    ids = book_patients(at_one_a_second(rt), 5)
    fates = deliver(rt, ids)
    assert [fates[i] for i in ids] == ["sent", "sent", "scheduled", "scheduled", "scheduled"]
    due = [n.due_at for n in rows(rt, ids)[2:]]
    # The first place in line is still before 21:00; the later ones wait for the morning
    # instead of being claimed at night only to be put off again.
    assert due[0] < new_york(2026, 11, 30, 21, 0)
    assert due[1:] == [new_york(2026, 12, 1, 8, 0)] * 2
