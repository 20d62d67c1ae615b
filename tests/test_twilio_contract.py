"""Twilio's webhooks as Twilio sends them: the bodies in tests/fixtures/twilio, built from
Twilio's public documentation with their empty fields, signed by the twilio SDK over every field
and posted byte for byte. The outside world is the test, not our idea of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode
from xml.etree import ElementTree

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from notifier.models import EarlyReceipt, InboundMessage, Notification, SmsOptOut
from notifier.render import sms_segments
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.track import intent
from notifier.web import create_app
from tests.conftest import new_york
from tests.fakes import FakeTwilio, SMTPSink
from tests.test_track import (
    PHONE,
    VISIT,
    book,
    confirmation,
    opted_out,
    sent_sms,
    with_policy,
)

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
INBOUND, STATUS = "/twilio/inbound", "/twilio/status"


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


class TwilioParams(dict[str, list[str]]):
    """Every field of a form with all its values, the way the SDK's signer reads a multi-valued
    form (it asks for `getlist`, as on Django's QueryDict)."""

    def getlist(self, key: str) -> list[str]:
        return self[key]


def fixture(name: str, **changes: str) -> str:
    """A body from the corpus, with some fields' values changed in place."""
    body = (FIXTURES / name).read_text(encoding="utf-8")
    if not changes:
        return body
    fields = parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    return urlencode([(key, changes.get(key, value)) for key, value in fields])


def twilio_signature(rt: Runtime, path: str, body: str) -> str:
    """X-Twilio-Signature as Twilio computes it: the URL it calls and every field sent."""
    params = TwilioParams(parse_qs(body, keep_blank_values=True, strict_parsing=True))
    url = rt.settings.public_url + path
    return RequestValidator(rt.settings.twilio_auth_token or "").compute_signature(url, params)


def post_as_twilio(
    client: TestClient, rt: Runtime, path: str, body: str, signature: str | None = None
) -> httpx.Response:
    return client.post(
        path,
        content=body.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature or twilio_signature(rt, path, body),
        },
    )


def answer_text(answer: httpx.Response) -> str | None:
    """The text of the TwiML <Message>, or None for an empty <Response/>."""
    message = ElementTree.fromstring(answer.text).find("Message")
    return None if message is None else message.text


def inbox(rt: Runtime) -> list[InboundMessage]:
    with rt.sessions() as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def test_the_corpus_keeps_twilios_empty_fields() -> None:
    sms = parse_qs(fixture("inbound-sms.txt"), keep_blank_values=True)
    assert [sms[key] for key in ("FromCity", "FromState", "FromZip", "ToCity", "ToZip")] == [
        [""]
    ] * 5
    assert parse_qs(fixture("inbound-mms.txt"), keep_blank_values=True)["Body"] == [""]
    assert parse_qs(fixture("status-delivered.txt"), keep_blank_values=True)["ErrorCode"] == [""]


def test_a_real_inbound_sms_with_empty_fields_is_accepted_and_confirms(
    client: TestClient, rt: Runtime
) -> None:
    book(rt)
    answer = post_as_twilio(client, rt, INBOUND, fixture("inbound-sms.txt"))  # "¡Sí!"
    assert answer.status_code == 200
    assert "Thank you" in (answer_text(answer) or "")
    assert confirmation(rt) == "confirmed"
    (message,) = inbox(rt)
    assert (message.body, message.from_number, message.intent) == ("¡Sí!", PHONE, "confirm")


def test_a_picture_message_with_an_empty_body_reaches_the_staff_inbox(
    client: TestClient, rt: Runtime
) -> None:
    book(rt)
    answer = post_as_twilio(client, rt, INBOUND, fixture("inbound-mms.txt"))
    assert answer.status_code == 200
    (message,) = inbox(rt)
    assert (message.body, message.needs_staff, message.appointment_id) == ("", True, "apt-1")
    assert confirmation(rt) == "unconfirmed"


@pytest.mark.parametrize(
    "name, final, code",
    [
        ("status-delivered.txt", "delivered", None),
        ("status-undelivered.txt", "undelivered", "30003"),
    ],
)
def test_a_status_callback_with_or_without_an_error_code_is_applied(
    client: TestClient,
    rt: Runtime,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    name: str,
    final: str,
    code: str | None,
) -> None:
    book(rt, consent={"sms": True, "email": False, "marketing": False})
    run_until(rt, rt.clock())
    sid = fake_twilio.messages[0]["sid"]
    answer = post_as_twilio(client, rt, STATUS, fixture(name, MessageSid=sid, SmsSid=sid))
    assert answer.status_code == 204
    row = sent_sms(rt)
    assert (row.status, row.error_code) == (final, code)


def test_a_receipt_before_the_send_is_recorded_keeps_no_error_code(
    client: TestClient, rt: Runtime
) -> None:
    assert post_as_twilio(client, rt, STATUS, fixture("status-delivered.txt")).status_code == 204
    with rt.sessions() as session:
        (early,) = session.scalars(select(EarlyReceipt)).all()
        assert (early.status, early.error_code) == ("delivered", None)


def test_repeated_fields_are_signed_with_every_value(client: TestClient, rt: Runtime) -> None:
    # Twilio adds parameters without notice; one sent twice is signed with both values.
    book(rt)
    body = fixture("inbound-sms.txt") + "&Extra=first&Extra=second"
    answer = post_as_twilio(client, rt, INBOUND, body)
    assert answer.status_code == 200
    assert confirmation(rt) == "confirmed"


def test_a_repeated_field_is_read_by_its_first_value(client: TestClient, rt: Runtime) -> None:
    book(rt)
    body = fixture("inbound-sms.txt", Body="C") + "&Body=see+you"
    assert post_as_twilio(client, rt, INBOUND, body).status_code == 200
    assert [m.body for m in inbox(rt)] == ["C"]


def _fill_a_blank(body: str) -> str:
    return body.replace("FromCity=&", "FromCity=NASHUA&")


def _drop_a_blank(body: str) -> str:
    return body.replace("&ToZip=&", "&")


def _drop_a_repeat(body: str) -> str:
    return body.removesuffix("&Extra=second")


def _change_the_body(body: str) -> str:
    return body.replace("Body=BAJA", "Body=HOLA")


@pytest.mark.parametrize("tamper", [_fill_a_blank, _drop_a_blank, _drop_a_repeat, _change_the_body])
def test_a_body_changed_after_signing_is_refused(
    client: TestClient, rt: Runtime, tamper: Callable[[str], str]
) -> None:
    book(rt)
    signed = fixture("inbound-opt-out-stop.txt") + "&Extra=first&Extra=second"
    sent = tamper(signed)
    assert sent != signed
    answer = post_as_twilio(client, rt, INBOUND, sent, twilio_signature(rt, INBOUND, signed))
    assert answer.status_code == 403
    assert inbox(rt) == [] and not opted_out(rt)


def test_a_signature_with_another_token_is_refused(client: TestClient, rt: Runtime) -> None:
    body = fixture("inbound-sms.txt")
    url = rt.settings.public_url + INBOUND
    forged = RequestValidator("not-the-token").compute_signature(
        url, TwilioParams(parse_qs(body, keep_blank_values=True))
    )
    assert post_as_twilio(client, rt, INBOUND, body, forged).status_code == 403
    assert inbox(rt) == []


@pytest.mark.parametrize(
    "word, opted_out_before, opt_out_type, meant",
    [
        ("BAJA", False, "STOP", "stop"),
        ("PARAR", False, "stop", "stop"),
        ("ALTA", True, "START", "start"),
        ("AYUDA", False, "HELP", "help"),
        ("YES", False, "START", "confirm"),  # Twilio flags YES even from a number not opted out
        ("YES", True, "START", "start"),
        ("BAJA", False, "", "other"),  # without Twilio's flag, a word of Twilio's config only
    ],
)
def test_twilios_opt_out_type_decides_whatever_the_word(
    word: str, opted_out_before: bool, opt_out_type: str, meant: str
) -> None:
    assert intent(word, opted_out_before, opt_out_type) == meant


def test_a_custom_spanish_opt_out_word_stops_texts_until_the_opt_in_word(
    client: TestClient, rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt, language="es")
    run_until(rt, clock())
    answer = post_as_twilio(client, rt, INBOUND, fixture("inbound-opt-out-stop.txt"))
    assert answer.status_code == 200 and answer_text(answer) is None  # Twilio answered it
    with rt.sessions() as session:
        row = session.get_one(SmsOptOut, PHONE)
        assert (row.active, row.source, row.opted_out_at) == (True, "keyword:BAJA", clock())
    run_until(rt, new_york(2026, 12, 1, 12, 0))  # the 48 h reminder falls due
    with rt.sessions() as session:
        reminder = session.scalars(
            select(Notification).where(
                Notification.kind == "reminder",
                Notification.channel == "sms",
                Notification.slot == "48h",
            )
        ).one()
        assert (reminder.status, reminder.reason) == ("suppressed", "opted_out")

    answer = post_as_twilio(client, rt, INBOUND, fixture("inbound-opt-out-start.txt"))
    assert answer.status_code == 200 and not opted_out(rt)
    texts_before = len(fake_twilio.messages)
    run_until(rt, VISIT - timedelta(minutes=30))  # the 2 h reminder goes again
    assert len(fake_twilio.messages) == texts_before + 1
    assert fake_twilio.messages[-1]["to"] == PHONE


@pytest.mark.parametrize(
    "body", ["SÍ", "Sí", "si", "sí", "¡Sí!", "Sí.", "confirmo", "Confirmo.", "¡CONFIRMO!"]
)
def test_spanish_confirmations_confirm(client: TestClient, rt: Runtime, body: str) -> None:
    book(rt, language="es")
    answer = post_as_twilio(client, rt, INBOUND, fixture("inbound-sms.txt", Body=body))
    assert "Gracias" in (answer_text(answer) or "")
    assert confirmation(rt) == "confirmed"


@pytest.mark.parametrize(
    "name, changes",
    [("inbound-opt-out-help.txt", {}), ("inbound-sms.txt", {"Body": "help"})],
    ids=["custom-word-flagged-help", "help"],
)
@pytest.mark.parametrize(
    "language, says", [("en", "Call (718) 555-0117"), ("es", "Llame al (718) 555-0117")]
)
def test_help_names_the_practice_its_phone_and_stop_in_the_patients_language(
    client: TestClient,
    rt: Runtime,
    name: str,
    changes: dict[str, str],
    language: str,
    says: str,
) -> None:
    book(rt, language=language)
    text = answer_text(post_as_twilio(client, rt, INBOUND, fixture(name, **changes)))
    assert text is not None
    assert text.startswith("North Shore Skin & Neurology") and says in text and "STOP" in text
    assert sms_segments(text) == 1


def test_no_help_answer_when_the_messaging_service_answers_help(rt: Runtime) -> None:
    theirs = with_policy(rt, twilio_answers_help=True)
    book(theirs)
    with TestClient(create_app(theirs)) as client:
        answer = post_as_twilio(client, theirs, INBOUND, fixture("inbound-opt-out-help.txt"))
    assert answer.status_code == 200 and answer_text(answer) is None
    (message,) = inbox(theirs)
    assert (message.intent, message.needs_staff) == ("help", False)
