"""FHIR write-back: a patient's confirmation, by SMS or link, becomes `accepted` on the clinic's
FHIR Appointment, once, through the webhook outbox, over a version conflict."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from notifier import hooks
from notifier.models import WebhookEndpoint
from notifier.runtime import Runtime
from notifier.store import webhooks
from tests.fakes.fhir_server import DEFAULT_TOKEN, FakeFhirServer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_fhir import AUTH, fixture, integrations_app
from tests.test_track import CLINIC_NUMBER, PHONE, signed_post

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_sids = itertools.count(900_000)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeFhirServer]:
    with FakeFhirServer() as running:
        yield running


@pytest.fixture
def fhir(server: FakeFhirServer) -> FakeFhirServer:
    server.reset()
    appointment = fixture("appointment-booked.json")
    for participant in appointment["participant"]:
        participant["status"] = "needs-action"  # booked, not yet confirmed by the patient
    server.put(appointment)
    return server


@pytest.fixture
def writing_rt(rt: Runtime, fhir: FakeFhirServer) -> Runtime:
    settings = replace(rt.settings, fhir_writeback_url=fhir.url, fhir_token=DEFAULT_TOKEN)
    return replace(rt, settings=settings)


@pytest.fixture
def client(writing_rt: Runtime, fhir: FakeFhirServer) -> Iterator[TestClient]:
    with TestClient(integrations_app(writing_rt)) as test_client:
        answer = test_client.post(
            "/v1/fhir/Appointment", json=fixture("appointment-booked.json"), headers=AUTH
        )
        assert answer.status_code == 202, answer.text
        yield test_client


def text(client: TestClient, rt: Runtime, body: str) -> None:
    form = {
        "MessageSid": f"SM{next(_sids):032d}",
        "From": PHONE,
        "To": CLINIC_NUMBER,
        "Body": body,
        "AccountSid": "AC1",
    }
    answer: Any = signed_post(client, rt, "/twilio/inbound", form)
    assert answer.status_code == 200, answer.text


def patient_status(fhir: FakeFhirServer) -> list[str]:
    participants = fhir.resources["Appointment/apt-1"]["participant"]
    return [p["status"] for p in participants if p["actor"]["reference"] == "#patient"]


def test_a_confirmation_by_sms_updates_the_fhir_server_once(
    client: TestClient, writing_rt: Runtime, fhir: FakeFhirServer
) -> None:
    with WebhookReceiver(SECRET) as receiver:
        with writing_rt.sessions() as session:
            session.add(
                WebhookEndpoint(
                    url=receiver.url, events="appointment.confirmed", secret=SECRET,
                    created_at=writing_rt.clock(),
                )
            )  # fmt: skip
            session.commit()
        text(client, writing_rt, "C")
        text(client, writing_rt, "Yes")  # a second yes changes nothing, so tells nothing
        hooks.deliver_due(writing_rt)
        hooks.deliver_due(writing_rt)
        assert receiver.types() == ["appointment.confirmed"]
        assert receiver.received[0].body["data"] == {
            "appointment_id": "apt-1",
            "patient_id": "pat-1",
            "via": "sms",
        }
    assert len(fhir.writes) == 1
    assert patient_status(fhir) == ["accepted"]
    assert fhir.resources["Appointment/apt-1"]["meta"]["versionId"] == "2"
    # Everything else on the Appointment is as it was.
    others = [p["status"] for p in fhir.writes[0]["participant"]]
    assert others.count("accepted") == 1


def test_an_edit_in_between_is_read_again_not_overwritten(
    client: TestClient, writing_rt: Runtime, fhir: FakeFhirServer
) -> None:
    edits = iter([True])

    def someone_else_edits(fake: FakeFhirServer) -> None:
        if next(edits, False):
            fake.edit("Appointment/apt-1", lambda r: r.update(comment="Bring the consent form"))

    fhir.before_write = someone_else_edits
    text(client, writing_rt, "C")
    hooks.deliver_due(writing_rt)
    assert fhir.conflicts == ['W/"1"']
    assert len(fhir.writes) == 1
    stored = fhir.resources["Appointment/apt-1"]
    assert stored["comment"] == "Bring the consent form"  # the other edit is kept
    assert patient_status(fhir) == ["accepted"] and stored["meta"]["versionId"] == "3"


def test_a_server_down_is_retried_by_the_outbox(
    client: TestClient, writing_rt: Runtime, fhir: FakeFhirServer
) -> None:
    fhir.fail_with = 503
    text(client, writing_rt, "C")
    hooks.deliver_due(writing_rt)
    assert fhir.writes == []
    fhir.fail_with = None
    clock: Any = writing_rt.clock
    with writing_rt.sessions() as session:
        clock.now = webhooks.next_due(session)
    hooks.deliver_due(writing_rt)
    assert len(fhir.writes) == 1 and patient_status(fhir) == ["accepted"]


def test_a_confirmation_without_a_write_back_url_writes_nothing(
    rt: Runtime, fhir: FakeFhirServer
) -> None:
    with TestClient(integrations_app(rt)) as plain:
        plain.post("/v1/fhir/Appointment", json=fixture("appointment-booked.json"), headers=AUTH)
        text(plain, rt, "C")
    hooks.deliver_due(rt)
    assert fhir.writes == []


def test_an_appointment_gone_from_the_server_is_a_dead_letter_at_once(
    client: TestClient, writing_rt: Runtime, fhir: FakeFhirServer
) -> None:
    del fhir.resources["Appointment/apt-1"]
    text(client, writing_rt, "C")
    hooks.deliver_due(writing_rt)
    with writing_rt.sessions() as session:
        [dead] = webhooks.dead(session)
        assert (dead.event, dead.attempts, dead.endpoint_id) == ("fhir.write_back", 1, None)
        assert "not on the FHIR server" in (dead.last_error or "")
