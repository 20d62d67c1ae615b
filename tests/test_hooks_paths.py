"""What tells the booking system: replies, links, receipts and the desk put exactly these
events in the outbox, with ids only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from notifier import hooks
from notifier.models import WebhookDelivery, WebhookEndpoint
from notifier.runtime import Runtime
from notifier.simulate import run_until
from notifier.web import create_app
from tests.fakes import FakeTwilio
from tests.test_link_pages import link
from tests.test_track import PHONE, book, receipt, reply


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def subscribe_all(rt: Runtime) -> None:
    with rt.sessions() as session:
        session.add(
            WebhookEndpoint(
                url="http://127.0.0.1:9/hooks", events=",".join(hooks.EVENTS),
                secret=hooks.new_secret(), created_at=rt.clock(),
            )
        )  # fmt: skip
        session.commit()


def told(rt: Runtime) -> list[tuple[str, dict[str, Any]]]:
    with rt.sessions() as session:
        rows = session.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
        return [(r.event, json.loads(r.payload)["data"]) for r in rows]


VISIT = {"appointment_id": "apt-1", "patient_id": "pat-1"}
PATIENT = {"patient_ids": ["pat-1"], "channel": "sms"}


def test_replies_tell_confirmed_reschedule_cancel_opt_out_and_opt_in(
    client: TestClient,
    rt: Runtime,
) -> None:
    book(rt)
    subscribe_all(rt)
    reply(client, rt, "C")
    reply(client, rt, "ok")  # confirmed already: nothing new to tell
    reply(client, rt, "R")
    reply(client, rt, "CANCEL")
    reply(client, rt, "STOP")  # opted out already
    reply(client, rt, "START")
    assert told(rt) == [
        ("appointment.confirmed", {**VISIT, "via": "sms"}),
        ("appointment.reschedule_requested", {**VISIT, "via": "sms"}),
        ("appointment.cancel_requested", {**VISIT, "via": "sms", "word": "CANCEL"}),
        (
            "patient.opted_out",
            {"patient_ids": ["pat-1"], "channel": "sms", "source": "keyword:CANCEL"},
        ),
        ("appointment.cancel_requested", {**VISIT, "via": "sms", "word": "STOP"}),
        (
            "patient.opted_in",
            {"patient_ids": ["pat-1"], "channel": "sms", "source": "keyword:START"},
        ),
    ]
    assert PHONE not in json.dumps(told(rt))


def test_a_link_answer_tells_it_came_by_link(client: TestClient, rt: Runtime) -> None:
    book(rt)
    subscribe_all(rt)
    client.post(link(rt, "reschedule"))
    client.post(link(rt, "confirm"))
    assert told(rt) == [
        ("appointment.reschedule_requested", {**VISIT, "via": "link"}),
        ("appointment.confirmed", {**VISIT, "via": "link"}),
    ]


def test_a_failed_receipt_tells_message_failed(
    client: TestClient,
    rt: Runtime,
    fake_twilio: FakeTwilio,
) -> None:
    book(rt, consent={"sms": True, "email": False, "marketing": False})
    run_until(rt, rt.clock())
    subscribe_all(rt)
    receipt(client, rt, fake_twilio.messages[0]["sid"], "undelivered", "30003")
    [(event, data)] = told(rt)
    assert event == "message.failed"
    assert data | {"message_id": None} == {
        **VISIT, "message_id": None, "channel": "sms", "kind": "confirmation",
        "status": "undelivered", "reason": "unreachable", "error_code": "30003",
    }  # fmt: skip
