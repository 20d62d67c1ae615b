"""A second SMS provider, a generic JSON gateway, behind the same seam as Twilio: a booking is
texted through it, its receipts and the patient's reply come back through it, and the services
in between are the ones Twilio's webhooks reach."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi import Request, Response
from fastapi.testclient import TestClient
from sqlalchemy import select

from notifier.channels import Message, SendError
from notifier.channels.sms.gateway import GatewaySMS, GatewayWebhooks
from notifier.models import InboundMessage, SmsOptOut
from notifier.runtime import Runtime
from notifier.simulate import run_until
from notifier.web import create_app
from notifier.web.webhooks import inbound_text, receipt
from tests.fakes import FakeTwilio
from tests.fakes.gateway import FakeGateway
from tests.test_track import CLINIC_NUMBER, PHONE, book, confirmation, opted_out, sent_sms

SMS_ONLY = {"sms": True, "email": False, "marketing": False}


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeGateway]:
    with FakeGateway() as server:
        yield server


@pytest.fixture
def gateway(gateway_server: FakeGateway) -> FakeGateway:
    gateway_server.messages.clear()
    gateway_server.faults.clear()
    return gateway_server


@pytest.fixture
def via_gateway(rt: Runtime, gateway: FakeGateway) -> Runtime:
    sms = GatewaySMS(
        gateway.url,
        gateway.api_key,
        from_number=CLINIC_NUMBER,
        status_url=rt.settings.public_url + "/gateway/status",
    )
    return dataclasses.replace(rt, sms=sms)


@pytest.fixture
def client(via_gateway: Runtime, gateway: FakeGateway) -> Iterator[TestClient]:
    """The app, with the gateway's webhooks on routes of their own and the web layer's doors."""
    rt, hooks = via_gateway, GatewayWebhooks(gateway.secret)
    app = create_app(rt)

    @app.post("/gateway/inbound")
    async def gateway_inbound(request: Request) -> Response:
        return await inbound_text(rt, hooks, request)

    @app.post("/gateway/status", status_code=204)
    async def gateway_status(request: Request) -> Response:
        return await receipt(rt, hooks, request)

    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, path: str, signed: tuple[bytes, dict[str, str]]):  # type: ignore[no-untyped-def]
    body, headers = signed
    return client.post(path, content=body, headers=headers)


def test_a_booking_is_texted_and_confirmed_through_the_gateway(
    client: TestClient, via_gateway: Runtime, gateway: FakeGateway, fake_twilio: FakeTwilio
) -> None:
    book(via_gateway, consent=SMS_ONLY)
    run_until(via_gateway, via_gateway.clock())
    (texted,) = gateway.messages
    sms = sent_sms(via_gateway)
    assert (texted["to"], texted["from"], texted["reference"]) == (
        PHONE,
        CLINIC_NUMBER,
        str(sms.id),
    )
    assert texted["status_url"] == "https://reminders.clinic.example/gateway/status"
    assert (sms.status, sms.provider_id) == ("sent", texted["id"])
    assert fake_twilio.messages == []

    assert post(client, "/gateway/status", gateway.receipt(texted["id"], "sent")).status_code == 204
    assert sent_sms(via_gateway).status == "sent"
    assert (
        post(client, "/gateway/status", gateway.receipt(texted["id"], "delivered")).status_code
        == 204
    )
    assert sent_sms(via_gateway).status == "delivered"

    answer = post(client, "/gateway/inbound", gateway.inbound(PHONE, CLINIC_NUMBER, "C"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert "Thank you" in answer.json()["reply"]
    assert confirmation(via_gateway) == "confirmed"


def test_a_forged_gateway_webhook_is_refused_and_changes_nothing(
    client: TestClient, via_gateway: Runtime, gateway: FakeGateway
) -> None:
    book(via_gateway, consent=SMS_ONLY)
    body, headers = gateway.inbound(PHONE, CLINIC_NUMBER, "C")
    forged = body.replace(b'"C"', b'"R"')
    answer = client.post("/gateway/inbound", content=forged, headers=headers)
    assert answer.status_code == 403
    assert answer.json() == {"detail": "bad or missing X-Gateway-Signature"}
    assert confirmation(via_gateway) == "unconfirmed"
    with via_gateway.sessions() as session:
        assert session.scalars(select(InboundMessage)).all() == []


def test_the_gateways_stop_keyword_opts_out_whatever_the_word(
    client: TestClient, via_gateway: Runtime, gateway: FakeGateway
) -> None:
    book(via_gateway, language="es", consent=SMS_ONLY)
    signed = gateway.inbound(PHONE, CLINIC_NUMBER, "BAJA", keyword="stop")
    assert post(client, "/gateway/inbound", signed).status_code == 200
    with via_gateway.sessions() as session:
        assert session.get_one(SmsOptOut, PHONE).source == "keyword:BAJA"
    assert opted_out(via_gateway)


def test_a_number_the_gateway_says_opted_out_is_recorded_as_a_carrier_opt_out(
    via_gateway: Runtime, gateway: FakeGateway
) -> None:
    book(via_gateway, consent=SMS_ONLY)
    gateway.fail_next(400, "opted_out")
    run_until(via_gateway, via_gateway.clock())
    sms = sent_sms(via_gateway)
    assert (sms.status, sms.error_code, sms.reason) == ("failed", "opted_out", "opted_out")
    with via_gateway.sessions() as session:
        assert session.get_one(SmsOptOut, PHONE).source == "carrier:opted_out"


def test_a_failed_receipt_carries_the_reason_the_gateways_code_means(
    client: TestClient, via_gateway: Runtime, gateway: FakeGateway
) -> None:
    book(via_gateway, consent=SMS_ONLY)
    run_until(via_gateway, via_gateway.clock())
    (texted,) = gateway.messages
    signed = gateway.receipt(texted["id"], "undelivered", "landline")
    assert post(client, "/gateway/status", signed).status_code == 204
    sms = sent_sms(via_gateway)
    assert (sms.status, sms.error_code, sms.reason) == ("undelivered", "landline", "not_mobile")


def test_a_receipt_before_the_send_is_recorded_keeps_its_reason(
    client: TestClient, via_gateway: Runtime, gateway: FakeGateway
) -> None:
    signed = gateway.receipt("gw-1", "failed", "opted_out")
    assert post(client, "/gateway/status", signed).status_code == 204
    book(via_gateway, consent=SMS_ONLY)
    run_until(via_gateway, via_gateway.clock())
    sms = sent_sms(via_gateway)
    assert (sms.provider_id, sms.status, sms.reason) == ("gw-1", "failed", "opted_out")
    assert opted_out(via_gateway)


def test_the_gateway_finds_what_it_took_for_a_notification(gateway: FakeGateway) -> None:
    sms = GatewaySMS(gateway.url, gateway.api_key, from_number=CLINIC_NUMBER, status_url="x")
    message = Message(notification_id=7, to=PHONE, text="See you Thursday")
    assert sms.find(message, known=()) is None
    sent = sms.send(message)
    assert sms.find(message, known=()) == sent
    assert sms.find(message, known={sent}) is None


@pytest.mark.parametrize(
    "status, code, outcome",
    [
        (400, "invalid_number", "permanent"),
        (429, "rate_limited", "transient"),
        (503, "x", "transient"),
    ],
)
def test_gateway_refusals_say_whether_to_try_again(
    gateway: FakeGateway, status: int, code: str, outcome: str
) -> None:
    sms = GatewaySMS(gateway.url, gateway.api_key, from_number=CLINIC_NUMBER, status_url="x")
    gateway.fail_next(status, code)
    with pytest.raises(SendError) as refused:
        sms.send(Message(notification_id=8, to=PHONE, text="Hello"))
    assert (refused.value.outcome, refused.value.code) == (outcome, code)


def test_an_unreachable_gateway_is_worth_trying_again() -> None:
    sms = GatewaySMS("http://127.0.0.1:9", "key", from_number=CLINIC_NUMBER, status_url="x")
    with pytest.raises(SendError) as refused:
        sms.send(Message(notification_id=9, to=PHONE, text="Hello"))
    assert refused.value.outcome == "transient"
