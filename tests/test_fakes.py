"""The fakes, exercised through the real clients: the twilio SDK and smtplib."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
import requests
import urllib3
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from tests.fakes import wait_until
from tests.fakes.smtp import SMTPSink
from tests.fakes.twilio import FakeTwilio

PATIENT = "+15551230001"
CLINIC = "+15559870000"

MakeClient = Callable[..., Client]


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def make_client(fake: FakeTwilio) -> Iterator[MakeClient]:
    """Builds SDK clients aimed at the fake, the way notifier aims them at TWILIO_API_BASE_URL."""
    http_clients: list[TwilioHttpClient] = []

    def make(auth_token: str | None = None, timeout: float | None = None) -> Client:
        http_client = TwilioHttpClient(timeout=timeout)
        http_clients.append(http_client)
        client = Client(fake.account_sid, auth_token or fake.auth_token, http_client=http_client)
        client.api.base_url = fake.url
        return client

    yield make
    for http_client in http_clients:
        if http_client.session is not None:
            http_client.session.close()


@pytest.fixture
def client(make_client: MakeClient) -> Client:
    return make_client()


def send(
    client: Client, body: str = "Reminder: dentist tomorrow at 09:30", **kwargs: str
) -> MessageInstance:
    kwargs.setdefault("from_", CLINIC)
    return client.messages.create(to=kwargs.pop("to", PATIENT), body=body, **kwargs)


# -- Twilio: the happy path -----------------------------------------------------------------


def test_create_returns_a_message_instance_and_is_recorded(
    fake: FakeTwilio, client: Client
) -> None:
    message = send(client, status_callback="http://127.0.0.1:1/twilio/status")

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.to, message.from_) == ("queued", PATIENT, CLINIC)
    assert message.date_created is not None and message.num_segments == "1"
    [recorded] = fake.messages
    assert recorded["sid"] == message.sid
    assert recorded["body"] == "Reminder: dentist tomorrow at 09:30"
    assert recorded["from_"] == CLINIC and recorded["messaging_service_sid"] is None
    assert recorded["status_callback"] == "http://127.0.0.1:1/twilio/status"
    assert recorded["params"]["To"] == [PATIENT]
    assert fake.requests[0]["status"] == 201


def test_messaging_service_may_replace_from(fake: FakeTwilio, client: Client) -> None:
    message = client.messages.create(to=PATIENT, messaging_service_sid="MG" + "1" * 32, body="x")

    assert message.status == "accepted"  # Twilio has yet to pick the sender
    assert fake.messages[0]["messaging_service_sid"] == "MG" + "1" * 32


def test_long_unicode_bodies_count_ucs2_segments(client: Client) -> None:
    assert send(client, body="é" * 160).num_segments == "1"  # é is in GSM-7
    assert send(client, body="✓" * 71).num_segments == "2"  # ✓ is not: 70 per single segment


def test_list_filters_by_recipient_and_date_sent(fake: FakeTwilio, client: Client) -> None:
    mine = send(client)
    send(client, to="+15551230002")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)

    found = client.messages.list(to=PATIENT, date_sent_after=an_hour_ago)

    assert [m.sid for m in found] == [mine.sid]
    assert found[0].body == mine.body and found[0].status == "sent"
    assert client.messages.list(to=PATIENT, date_sent_before=an_hour_ago) == []


def test_list_follows_next_page_uri(client: Client) -> None:
    sids = [send(client, body=f"n{i}").sid for i in range(3)]

    listed = client.messages.list(page_size=2)

    assert [m.sid for m in listed] == sids[::-1]  # newest first, like Twilio


def test_fetch_one_message(client: Client) -> None:
    sid = send(client).sid

    assert client.messages(sid).fetch().to == PATIENT
    with pytest.raises(TwilioRestException) as missing:
        client.messages("SM" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)


# -- Twilio: answers the SDK turns into TwilioRestException ----------------------------------


def test_wrong_token_is_401_code_20003(fake: FakeTwilio, make_client: MakeClient) -> None:
    with pytest.raises(TwilioRestException) as error:
        send(make_client(auth_token="wrong"))

    assert (error.value.status, error.value.code) == (401, 20003)
    assert fake.messages == [] and fake.requests[0]["status"] == 401


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": ""}, 21604),
        ({"to": "555-0100"}, 21211),
        ({"from_": ""}, 21603),
        ({"body": ""}, 21602),
        ({"body": "x" * 1601}, 21617),
    ],
)
def test_invalid_parameters_are_rejected_like_twilio(
    fake: FakeTwilio, client: Client, kwargs: dict[str, str], code: int
) -> None:
    with pytest.raises(TwilioRestException) as error:
        send(client, **kwargs)

    assert (error.value.status, error.value.code) == (400, code)
    assert fake.messages == []


def test_fail_next_answers_once_with_the_given_error(fake: FakeTwilio, client: Client) -> None:
    fake.fail_next(400, 21211)

    with pytest.raises(TwilioRestException) as error:
        send(client)
    assert (error.value.status, error.value.code) == (400, 21211)
    assert "not a valid phone number" in error.value.msg
    send(client)  # times=1: the next one goes through
    assert len(fake.messages) == 1


def test_fail_next_with_429(fake: FakeTwilio, client: Client) -> None:
    fake.fail_next(429, 20429, "Too Many Requests", times=2)

    for _ in range(2):
        with pytest.raises(TwilioRestException) as error:
            send(client)
        assert (error.value.status, error.value.code) == (429, 20429)


def test_a_sender_faster_than_its_rate_is_refused_with_429(
    fake: FakeTwilio, client: Client
) -> None:
    fake.enforce_rates({CLINIC: 2.0}, tolerance=0.1)
    send(client)  # its first turn
    with pytest.raises(TwilioRestException) as error:
        send(client)  # at once: half a second too soon
    assert (error.value.status, error.value.code) == (429, 20429)
    time.sleep(0.45)  # within the tolerance of its turn
    send(client)
    assert len(fake.messages) == 2
    assert fake.refused_over_rate == {CLINIC: 1}


def test_list_errors_are_a_bare_twilio_exception(make_client: MakeClient) -> None:
    # Unlike create/fetch, list() raises the base TwilioException("Unable to fetch page",
    # response): no .status or .code, and `except TwilioRestException` misses it.
    with pytest.raises(TwilioException) as error:
        make_client(auth_token="wrong").messages.list(to=PATIENT)

    assert not isinstance(error.value, TwilioRestException)
    assert error.value.args[1].status_code == 401


# -- Twilio: transport failures (the SDK does not wrap these; requests' exceptions surface) --


def test_hang_trips_the_client_timeout_as_requests_read_timeout(
    fake: FakeTwilio, make_client: MakeClient
) -> None:
    fake.hang_next(0.6)
    started = time.monotonic()

    # requests.exceptions.ReadTimeout: the request went out, so the outcome is unknown.
    # (Not a ConnectionError, unlike ConnectTimeout, which means nothing was sent.)
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(make_client(timeout=0.2))

    assert time.monotonic() - started < 0.5
    # Twilio may still create it after the client gave up.
    assert wait_until(lambda: len(fake.messages) == 1, timeout=2)


def test_reset_releases_a_hung_request_without_recording_it(
    fake: FakeTwilio, make_client: MakeClient
) -> None:
    fake.hang_next(0.3)
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(make_client(timeout=0.1))

    fake.reset()  # what a session-scoped fixture does between tests

    # Left alone, the request would have been recorded at 0.3 s, into the next test.
    assert not wait_until(lambda: fake.messages, timeout=0.5)


def test_drop_records_the_message_but_the_client_sees_a_connection_error(
    fake: FakeTwilio, client: Client
) -> None:
    fake.drop_next()

    # requests.exceptions.ConnectionError wrapping urllib3's ProtocolError
    # ("Connection aborted.", RemoteDisconnected): sent, but no answer -- outcome unknown.
    with pytest.raises(requests.exceptions.ConnectionError) as error:
        send(client)

    assert isinstance(error.value.args[0], urllib3.exceptions.ProtocolError)
    assert len(fake.messages) == 1 and fake.requests[-1]["status"] is None


def test_refused_connection_is_a_connection_error_of_another_shape(
    fake: FakeTwilio, client: Client
) -> None:
    fake.stop()

    # Also requests.exceptions.ConnectionError, but wrapping MaxRetryError(NewConnectionError):
    # nothing was sent.  Only the wrapped urllib3 error tells this apart from a drop.
    with pytest.raises(requests.exceptions.ConnectionError) as error:
        send(client)

    assert isinstance(error.value.args[0], urllib3.exceptions.MaxRetryError)
    assert isinstance(error.value.args[0].reason, urllib3.exceptions.NewConnectionError)


def test_reset_forgets_messages_requests_and_faults(fake: FakeTwilio, client: Client) -> None:
    send(client)
    fake.fail_next()

    fake.reset()

    assert fake.messages == [] and fake.requests == []
    send(client)
    assert len(fake.messages) == 1


# -- SMTP -----------------------------------------------------------------------------------


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


def reminder_email() -> EmailMessage:
    email = EmailMessage()
    email["From"] = "Clinic <clinic@example.test>"
    email["To"] = "patient@example.test"
    email["Subject"] = "Your appointment on Tuesday"
    email.set_content("See you at 09:30.")
    email.add_alternative("<p>See you at <b>09:30</b>.</p>", subtype="html")
    return email


def test_smtp_multipart_message_is_parsed(sink: SMTPSink) -> None:
    assert sink.url == f"smtp://127.0.0.1:{sink.port}"
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.send_message(reminder_email())

    [message] = sink.wait_for(1)
    assert message["Subject"] == "Your appointment on Tuesday"
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",))
    assert html is not None and "<b>09:30</b>" in html.get_content()
    assert sink.received[0].mail_from == "clinic@example.test"
    assert sink.received[0].rcpt_tos == ("patient@example.test",)


@pytest.mark.parametrize("code", [550, 451])
def test_smtp_fail_next_at_data(sink: SMTPSink, code: int) -> None:
    sink.fail_next(code, "Try later" if code == 451 else "Rejected")

    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as error:
            smtp.send_message(reminder_email())
        assert error.value.smtp_code == code
        smtp.send_message(reminder_email())  # times=1: the next one is kept

    assert len(sink.messages) == 1


def test_smtp_fail_next_at_rcpt(sink: SMTPSink) -> None:
    sink.fail_next(550, "5.1.1 No such mailbox", stage="RCPT")

    with (
        smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp,
        pytest.raises(smtplib.SMTPRecipientsRefused) as error,
    ):
        smtp.send_message(reminder_email())

    assert error.value.recipients["patient@example.test"][0] == 550
    assert sink.messages == []
