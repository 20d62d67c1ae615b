"""Webhooks out: events in the outbox, signed deliveries, retries, order, dead letters."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from notifier import hooks
from notifier.models import Base, WebhookDelivery, WebhookEndpoint
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock
from notifier.store import webhooks
from tests.conftest import new_york
from tests.fakes.webhook_receiver import WebhookReceiver

NOW = new_york(2026, 11, 30, 9, 0)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def add_endpoint(rt: Runtime, url: str, events: str = ",".join(hooks.EVENTS)) -> int:
    with rt.sessions() as session:
        endpoint = WebhookEndpoint(
            url=url, events=events, secret=hooks.new_secret(), created_at=NOW
        )
        session.add(endpoint)
        session.commit()
        return endpoint.id


def test_the_migration_makes_the_tables_the_models_describe(rt: Runtime) -> None:
    mine = {"webhook_endpoints", "webhook_deliveries"}
    with rt.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if mine & set(re.findall(r"\w+", str(d)))] == []


def test_an_event_waits_in_the_outbox_once_per_subscribed_endpoint(rt: Runtime) -> None:
    both = add_endpoint(rt, "http://127.0.0.1:9/a")
    failed_only = add_endpoint(rt, "http://127.0.0.1:9/b", "message.failed")
    with rt.sessions() as session:
        hooks.emit(session, "appointment.confirmed", {"appointment_id": "apt-1"}, NOW)
        hooks.emit(session, "message.failed", {"message_id": 7}, NOW)
        session.commit()
        rows = session.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
    assert [(r.endpoint_id, r.event, r.status) for r in rows] == [
        (both, "appointment.confirmed", "pending"),
        (both, "message.failed", "pending"),
        (failed_only, "message.failed", "pending"),
    ]
    assert rows[1].message_id == rows[2].message_id != rows[0].message_id
    sent = json.loads(rows[0].payload)
    assert sent == {
        "type": "appointment.confirmed",
        "timestamp": "2026-11-30T14:00:00+00:00",
        "data": {"appointment_id": "apt-1"},
    }


def test_an_event_rolled_back_leaves_nothing_to_deliver(rt: Runtime) -> None:
    add_endpoint(rt, "http://127.0.0.1:9/a")
    with rt.sessions() as session:
        hooks.emit(session, "patient.opted_out", {"patient_ids": ["pat-1"]}, NOW)
        session.rollback()
        assert webhooks.claim(session, NOW, NOW, 10) == []


def test_an_unknown_event_is_a_mistake_in_the_code(rt: Runtime) -> None:
    with rt.sessions() as session, pytest.raises(hooks.UnknownEvent):
        hooks.emit(session, "appointment.exploded", {}, NOW)


# --- delivery -------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def subscribe(rt: Runtime, url: str, events: Iterable[str] = hooks.EVENTS) -> int:
    with rt.sessions() as session:
        endpoint = WebhookEndpoint(
            url=url, events=",".join(events), secret=SECRET, created_at=rt.clock()
        )
        session.add(endpoint)
        session.commit()
        return endpoint.id


def emit(rt: Runtime, event: str, **data: Any) -> None:
    with rt.sessions() as session:
        hooks.emit(session, event, data, rt.clock())
        session.commit()


def play_until(rt: Runtime, clock: SimulatedClock, end: datetime) -> int:
    """Jumps the clock to each due delivery up to `end` and delivers it; returns the attempts."""
    attempts = 0
    while True:
        with rt.sessions() as session:
            due = webhooks.next_due(session)
        if due is None or due > end:
            clock.now = max(clock.now, end)
            return attempts
        clock.now = max(clock.now, due)
        attempts += hooks.deliver_due(rt)


def statuses(rt: Runtime) -> list[tuple[str, str, int]]:
    with rt.sessions() as session:
        rows = session.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
        return [(r.event, r.status, r.attempts) for r in rows]


def test_a_receiver_verifies_the_signature_with_the_standard_library(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    subscribe(rt, receiver.url)
    emit(rt, "appointment.confirmed", appointment_id="apt-1", patient_id="pat-1", via="sms")
    assert hooks.deliver_due(rt) == 1
    [got] = receiver.received
    assert got.type == "appointment.confirmed"
    assert got.body["data"] == {"appointment_id": "apt-1", "patient_id": "pat-1", "via": "sms"}
    assert got.message_id.startswith("msg_")
    assert receiver.refused == []
    assert statuses(rt) == [("appointment.confirmed", "delivered", 1)]


def test_a_wrong_secret_fails_verification_so_the_receiver_would_notice(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    with rt.sessions() as session:
        session.add(
            WebhookEndpoint(
                url=receiver.url, events="patient.opted_out", secret=hooks.new_secret(),
                created_at=rt.clock(),
            )
        )  # fmt: skip
        session.commit()
    emit(rt, "patient.opted_out", patient_ids=["pat-1"])
    hooks.deliver_due(rt)
    assert receiver.received == [] and receiver.refused[0].startswith("signature")
    assert statuses(rt) == [("patient.opted_out", "pending", 1)]


def test_ten_minutes_of_500s_then_every_event_once_in_order(
    rt: Runtime, clock: SimulatedClock, receiver: WebhookReceiver
) -> None:
    start = clock.now
    receiver.failing = lambda: clock.now < start + timedelta(minutes=10)
    subscribe(rt, receiver.url)
    emit(rt, "appointment.confirmed", appointment_id="apt-1")
    clock.now += timedelta(seconds=30)
    emit(rt, "appointment.reschedule_requested", appointment_id="apt-2")
    clock.now += timedelta(minutes=5)
    emit(rt, "patient.opted_out", patient_ids=["pat-3"])
    play_until(rt, clock, start + timedelta(hours=1))
    assert receiver.types() == [
        "appointment.confirmed",
        "appointment.reschedule_requested",
        "patient.opted_out",
    ]
    # The first was tried at 5:30 (the clock's first beat), 6:30, 8:30 (500s) and 12:30; the
    # later ones waited behind it, and went right after it.
    assert [a for _, _, a in statuses(rt)] == [4, 1, 1]
    assert len(receiver.refused) == 3


def test_a_failing_endpoint_holds_up_only_its_own_deliveries(
    rt: Runtime, clock: SimulatedClock, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver(SECRET) as broken:
        broken.failing = lambda: True
        subscribe(rt, broken.url)
        subscribe(rt, receiver.url)
        emit(rt, "appointment.confirmed", appointment_id="apt-1")
        emit(rt, "appointment.confirmed", appointment_id="apt-2")
        play_until(rt, clock, clock.now + timedelta(minutes=30))
        assert [r.body["data"]["appointment_id"] for r in receiver.received] == ["apt-1", "apt-2"]
        assert broken.received == []
        assert statuses(rt) == [
            ("appointment.confirmed", "pending", 5),
            ("appointment.confirmed", "delivered", 1),
            ("appointment.confirmed", "pending", 0),
            ("appointment.confirmed", "delivered", 1),
        ]


def test_retries_last_more_than_a_day_then_the_delivery_is_dead_and_can_go_again(
    rt: Runtime, clock: SimulatedClock, receiver: WebhookReceiver
) -> None:
    start = clock.now
    receiver.failing = lambda: True
    subscribe(rt, receiver.url)
    emit(rt, "message.failed", message_id=1)
    emit(rt, "message.failed", message_id=2)
    tries: list[datetime] = []
    receiver.on_receive = lambda r: None
    original = receiver.take

    def counted(headers: dict[str, str], payload: bytes) -> int:
        tries.append(clock.now)
        return original(headers, payload)

    receiver.take = counted  # type: ignore[method-assign]
    play_until(rt, clock, start + timedelta(days=3))
    minutes = [int((t - start).total_seconds() // 60) for t in tries[:14]]
    assert minutes == [0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 871, 1231, 1591, 1591]
    # The first is dead at its 13th failure (26 h 31 min); the second goes at once, and gets
    # its own 13 tries.
    assert len(tries) == 26
    assert statuses(rt)[0] == ("message.failed", "dead", 13)
    with rt.sessions() as session:
        assert [d.id for d in webhooks.dead(session)] == [2, 1]
        assert webhooks.redeliver(session, [1], clock.now) == 1
        session.commit()
    receiver.failing = lambda: False
    play_until(rt, clock, clock.now + timedelta(minutes=1))
    assert [r.body["data"]["message_id"] for r in receiver.received] == [1]


def test_a_claim_whose_worker_died_goes_again_and_the_late_worker_changes_nothing(
    rt: Runtime, clock: SimulatedClock, receiver: WebhookReceiver
) -> None:
    subscribe(rt, receiver.url)
    emit(rt, "patient.opted_in", patient_ids=["pat-1"])
    with rt.sessions() as session:
        [claimed] = webhooks.claim(session, clock.now, clock.now + timedelta(seconds=30), 10)
        session.commit()
    assert hooks.deliver_due(rt) == 0  # held by the (dead) worker's lease
    clock.now += timedelta(seconds=31)
    assert hooks.deliver_due(rt) == 1
    assert receiver.types() == ["patient.opted_in"]
    with rt.sessions() as session:
        assert not webhooks.delivered(session, claimed, 1, clock.now)  # the first attempt's
    assert statuses(rt) == [("patient.opted_in", "delivered", 2)]


def test_a_removed_endpoint_gets_nothing_more(rt: Runtime, receiver: WebhookReceiver) -> None:
    endpoint_id = subscribe(rt, receiver.url)
    emit(rt, "patient.opted_in", patient_ids=["pat-1"])
    with rt.sessions() as session:
        assert webhooks.remove(session, endpoint_id, rt.clock())
        session.commit()
    emit(rt, "patient.opted_in", patient_ids=["pat-2"])
    assert hooks.deliver_due(rt) == 0
    assert statuses(rt) == [("patient.opted_in", "dead", 0)]


def test_two_clocks_at_once_deliver_each_event_once_in_order(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    subscribe(rt, receiver.url)
    with rt.sessions() as session:
        for n in range(20):
            hooks.emit(session, "message.failed", {"message_id": n}, rt.clock())
        session.commit()
    with ThreadPoolExecutor(2) as clocks:
        list(clocks.map(lambda _: [hooks.deliver_due(rt) for _ in range(15)], range(2)))
    hooks.deliver_due(rt)
    assert [r.body["data"]["message_id"] for r in receiver.received] == list(range(20))
