"""Two-way SMS and delivery tracking: replies signed exactly as Twilio signs them, receipts in
every order, the opt-out registry, the email fallback and the signed email links."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Sequence
from datetime import timedelta
from email.message import MIMEPart
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from notifier import db
from notifier.channels import Message
from notifier.ingest import apply_event
from notifier.links import make_token
from notifier.models import Appointment, EarlyReceipt, InboundMessage, Notification, SmsOptOut
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.staff.pages import opt_out_source
from notifier.track import intent, keyword
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

VISIT = new_york(2026, 12, 3, 10, 0)
PHONE = "+17185550134"
CLINIC_NUMBER = "+15165550100"
_sids = iter(range(1, 1_000_000))


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def book(rt: Runtime, **overrides: Any) -> None:
    with rt.sessions() as session:
        apply_event(
            session,
            rt.clinic,
            event("booked", VISIT, occurred_at=rt.clock(), **overrides),
            rt.clock(),
        )  # type: ignore[arg-type]


def signed_post(
    client: TestClient, rt: Runtime, path: str, form: dict[str, str], signed_url: str | None = None
) -> object:
    """Posts the form with the X-Twilio-Signature Twilio would compute for the public URL."""
    url = signed_url or rt.settings.public_url + path
    token = rt.settings.twilio_auth_token or ""
    signature = RequestValidator(token).compute_signature(url, form)
    return client.post(
        path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def reply(client: TestClient, rt: Runtime, body: str, sender: str = PHONE, to: str = CLINIC_NUMBER):  # type: ignore[no-untyped-def]
    form = {
        "MessageSid": f"SM{next(_sids):032d}",
        "From": sender,
        "To": to,
        "Body": body,
        "AccountSid": "AC1",
    }
    return signed_post(client, rt, "/twilio/inbound", form)


def confirmation(rt: Runtime, appointment_id: str = "apt-1") -> str:
    with rt.sessions() as session:
        return session.get_one(Appointment, appointment_id).confirmation


def opted_out(rt: Runtime, phone: str = PHONE) -> bool:
    with rt.sessions() as session:
        row = session.get(SmsOptOut, phone)
        return bool(row and row.active)


@pytest.mark.parametrize(
    "body, word",
    [
        ("c", "C"),
        (" Yes! ", "YES"),
        ("Sí", "SI"),
        ("si 👍", "SI"),
        ("STOP.", "STOP"),
        ("ok 🙂", "OK"),
    ],
)
def test_replies_are_reduced_to_their_word(body: str, word: str) -> None:
    assert keyword(body) == word


def test_yes_confirms_unless_the_number_opted_out() -> None:
    assert intent("YES", opted_out=False) == "confirm"
    assert intent("YES", opted_out=True) == "start"


@pytest.mark.parametrize(
    "body", ["C", "y", "YES", "Confirm", "confirmed", "ok", "SI", "Sí", " c. "]
)
def test_confirm_words_confirm_and_thank_in_twiml(
    client: TestClient, rt: Runtime, body: str
) -> None:
    book(rt)
    answer = reply(client, rt, body)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert "<Message>" in answer.text and "Thank you" in answer.text
    assert confirmation(rt) == "confirmed"


def test_spanish_patients_are_thanked_in_spanish(client: TestClient, rt: Runtime) -> None:
    book(rt, language="es")
    assert "Gracias" in reply(client, rt, "sí").text


@pytest.mark.parametrize("body", ["R", "reschedule", "N", "no"])
def test_reschedule_words_flag_the_appointment_and_give_the_phone(
    client: TestClient, rt: Runtime, body: str
) -> None:
    book(rt)
    answer = reply(client, rt, body)
    assert "(718) 555-0117" in answer.text
    assert confirmation(rt) == "wants_reschedule"


@pytest.mark.parametrize(
    "body", ["STOP", "stopall", "Unsubscribe", "END", "quit", "REVOKE", "optout", "cancel"]
)
def test_stop_words_record_an_opt_out_with_time_and_source(
    client: TestClient, rt: Runtime, body: str
) -> None:
    book(rt)
    reply(client, rt, body)
    with rt.sessions() as session:
        row = session.get_one(SmsOptOut, PHONE)
        assert (row.active, row.source, row.opted_out_at) == (
            True,
            f"keyword:{keyword(body)}",
            rt.clock(),
        )
    assert confirmation(rt) == "unconfirmed"


@pytest.mark.parametrize("body", ["START", "unstop", "YES"])
def test_start_words_opt_back_in(client: TestClient, rt: Runtime, body: str) -> None:
    book(rt)
    reply(client, rt, "STOP")
    reply(client, rt, body)
    assert not opted_out(rt)
    assert confirmation(rt) == "unconfirmed"


def with_policy(rt: Runtime, **changes: object) -> Runtime:
    """The same runtime with these `[policy]` settings of the clinic file changed."""
    policy = rt.clinic.policy.model_copy(update=changes)
    return dataclasses.replace(rt, clinic=rt.clinic.model_copy(update={"policy": policy}))


@pytest.mark.parametrize("body", ["HELP", "info"])
def test_help_answers_with_practice_phone_and_how_to_stop(
    client: TestClient, rt: Runtime, body: str
) -> None:
    book(rt)
    text = reply(client, rt, body).text
    assert "North Shore Skin &amp; Neurology" in text and "STOP" in text and "555-0117" in text


@pytest.mark.parametrize("body", ["STOP", "START"])
def test_twilio_answers_its_own_keywords_so_we_stay_silent(
    client: TestClient, rt: Runtime, body: str
) -> None:
    book(rt)
    answer = reply(client, rt, body)
    assert answer.status_code == 200 and "<Message>" not in answer.text


@pytest.mark.parametrize("body, answer", [("STOP", "no more texts"), ("START", "again")])
def test_with_twilio_opt_out_handling_off_we_answer_stop_and_start(
    rt: Runtime, body: str, answer: str
) -> None:
    ours = with_policy(rt, twilio_answers_keywords=False)
    book(ours)
    with TestClient(create_app(ours)) as client:
        assert answer in reply(client, ours, body).text


def test_a_messaging_service_that_answers_help_itself_leaves_us_silent(rt: Runtime) -> None:
    theirs = with_policy(rt, twilio_answers_help=True)
    book(theirs)
    with TestClient(create_app(theirs)) as client:
        answer = reply(client, theirs, "HELP")
    assert answer.status_code == 200 and "<Message>" not in answer.text


def test_a_confirmation_with_no_visit_ahead_goes_to_staff_with_one_auto_reply(
    client: TestClient, rt: Runtime
) -> None:
    answers = [reply(client, rt, "C", sender="+12125550199").text for _ in range(2)]
    assert ["<Message>" in a for a in answers] == [True, False]


def test_anything_else_goes_to_the_inbox_with_one_auto_reply_a_day(
    client: TestClient, rt: Runtime, clock: SimulatedClock
) -> None:
    book(rt)
    first = reply(client, rt, "Can I bring my sister?")
    second = reply(client, rt, "Also, is parking free?")
    clock.now += timedelta(days=1, minutes=1)
    third = reply(client, rt, "Hello?")
    assert ["<Message>" in r.text for r in (first, second, third)] == [True, False, True]
    with rt.sessions() as session:
        inbox = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        assert [(m.needs_staff, m.patient_id, m.appointment_id) for m in inbox] == [
            (True, "pat-1", "apt-1")
        ] * 3


def test_an_unknown_number_still_reaches_the_inbox(client: TestClient, rt: Runtime) -> None:
    reply(client, rt, "who is this", sender="+12125550199")
    with rt.sessions() as session:
        (message,) = session.scalars(select(InboundMessage)).all()
        assert (message.patient_id, message.appointment_id, message.needs_staff) == (
            None,
            None,
            True,
        )


def test_a_retried_webhook_changes_nothing(client: TestClient, rt: Runtime) -> None:
    book(rt)
    form = {"MessageSid": "SMretry", "From": PHONE, "To": CLINIC_NUMBER, "Body": "hello"}
    signed_post(client, rt, "/twilio/inbound", form)
    signed_post(client, rt, "/twilio/inbound", form)
    with rt.sessions() as session:
        assert len(session.scalars(select(InboundMessage)).all()) == 1


def test_the_reply_confirms_the_appointment_the_last_reminder_asked_about(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt)
    later = VISIT + timedelta(days=1)
    with rt.sessions() as session:
        apply_event(
            session,
            rt.clinic,
            event(
                "booked", VISIT - timedelta(days=1), appointment_id="apt-0", occurred_at=rt.clock()
            ),
            rt.clock(),
        )
        apply_event(
            session,
            rt.clinic,
            event("booked", later, appointment_id="apt-2", occurred_at=rt.clock()),
            rt.clock(),
        )
    run_until(rt, new_york(2026, 12, 2, 10, 30))  # apt-0 is over; apt-2's 48 h reminder went last
    reply(client, rt, "C")
    assert [confirmation(rt, a) for a in ("apt-1", "apt-2")] == ["unconfirmed", "confirmed"]


def test_a_reply_to_a_locations_own_number_matches_that_location(
    client: TestClient, rt: Runtime
) -> None:
    book(rt, location="forest-hills")
    with rt.sessions() as session:
        apply_event(
            session,
            rt.clinic,
            event(
                "booked",
                VISIT - timedelta(hours=2),
                appointment_id="apt-m",
                location="manhasset",
                occurred_at=rt.clock(),
            ),
            rt.clock(),
        )
    manhasset_number = rt.settings.twilio_from_number
    reply(client, rt, "C", to=manhasset_number or "")
    assert confirmation(rt, "apt-m") == "confirmed"


@pytest.mark.parametrize(
    "how",
    ["unsigned", "forged", "other_url", "other_body"],
)
def test_unsigned_or_forged_webhooks_are_403_and_change_nothing(
    client: TestClient, rt: Runtime, how: str
) -> None:
    book(rt)
    form = {"MessageSid": "SMforged", "From": PHONE, "To": CLINIC_NUMBER, "Body": "STOP"}
    token = rt.settings.twilio_auth_token or ""
    good = RequestValidator(token).compute_signature(
        rt.settings.public_url + "/twilio/inbound", form
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if how == "forged":
        headers["X-Twilio-Signature"] = RequestValidator("not-the-token").compute_signature(
            rt.settings.public_url + "/twilio/inbound", form
        )
    elif how == "other_url":
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(
            "https://evil.example/twilio/inbound", form
        )
    elif how == "other_body":
        headers["X-Twilio-Signature"] = good
        form = {**form, "Body": "C"}
    answer = client.post("/twilio/inbound", content=urlencode(form), headers=headers)
    assert answer.status_code == 403
    assert not opted_out(rt) and confirmation(rt) == "unconfirmed"
    with rt.sessions() as session:
        assert session.scalars(select(InboundMessage)).all() == []


def test_stop_then_a_scheduled_reminder_is_suppressed_and_start_sends_again(
    client: TestClient, rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt)
    run_until(rt, clock())
    reply(client, rt, "STOP")
    run_until(rt, new_york(2026, 12, 1, 12, 0))  # the 48 h reminder falls due
    with rt.sessions() as session:
        rows = session.scalars(select(Notification).where(Notification.kind == "reminder")).all()
        by_channel = {(n.channel, n.slot): (n.status, n.reason) for n in rows}
    assert by_channel[("sms", "48h")] == ("suppressed", "opted_out")
    assert by_channel[("email", "48h")][0] == "sent"  # email goes on: its consent stands
    reply(client, rt, "START")
    run_until(rt, VISIT)
    assert fake_twilio.messages[-1]["body"].startswith("North Shore Skin & Neurology: Ana, see you")


def test_twilio_error_21610_records_the_opt_out(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt, consent={"sms": True, "email": False, "marketing": False})
    fake_twilio.fail_next(
        status=400, code=21610, message="Attempt to send to unsubscribed recipient"
    )
    run_until(rt, clock())
    with rt.sessions() as session:
        row = session.get_one(SmsOptOut, PHONE)
        assert (row.active, row.source) == (True, "carrier:opted_out")
        (sms,) = session.scalars(select(Notification).where(Notification.status == "failed")).all()
        assert (sms.error_code, sms.reason) == ("21610", "opted_out")


def test_a_permanent_sms_failure_is_retried_once_by_email(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt)
    run_until(rt, new_york(2026, 12, 3, 7, 59))  # confirmation and 48 h reminder, both channels
    fake_twilio.fail_next(
        status=400, code=21614, message="'To' number is not a valid mobile number"
    )
    run_until(rt, new_york(2026, 12, 3, 8, 5))  # the 2 h reminder is SMS only
    with rt.sessions() as session:
        rows = session.scalars(
            select(Notification).where(
                Notification.slot.like("2h%") | Notification.slot.like("fallback:%")
            )
        ).all()
        assert sorted((n.channel, n.status, n.reason) for n in rows) == [
            ("email", "sent", None),
            ("sms", "failed", "not_mobile"),
        ]
    assert smtp.messages[-1]["Subject"].startswith("Reminder")


def receipt(client: TestClient, rt: Runtime, sid: str, status: str, code: str | None = None):  # type: ignore[no-untyped-def]
    form = {"MessageSid": sid, "MessageStatus": status}
    if code:
        form["ErrorCode"] = code
    return signed_post(client, rt, "/twilio/status", form)


def sent_sms(rt: Runtime) -> Notification:
    with rt.sessions() as session:
        return session.scalars(
            select(Notification)
            .where(Notification.channel == "sms", Notification.status != "scheduled")
            .order_by(Notification.id)
        ).first()  # type: ignore[return-value]


@pytest.mark.parametrize(
    "order, final",
    [
        (["sent", "delivered"], "delivered"),
        (["delivered", "sent"], "delivered"),
        (["queued", "sent", "undelivered"], "undelivered"),
        (["undelivered", "delivered"], "undelivered"),
        (["failed", "sent", "queued"], "failed"),
    ],
)
def test_receipts_in_any_order_never_move_a_state_backwards(
    client: TestClient,
    rt: Runtime,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    order: list[str],
    final: str,
) -> None:
    book(rt, consent={"sms": True, "email": False, "marketing": False})
    run_until(rt, rt.clock())
    sid = fake_twilio.messages[0]["sid"]
    for status in order:
        assert (
            receipt(client, rt, sid, status, "30003" if status != "delivered" else None).status_code
            == 204
        )
    assert sent_sms(rt).status == final


def test_a_receipt_for_an_unknown_message_is_answered_and_ignored(
    client: TestClient, rt: Runtime
) -> None:
    assert receipt(client, rt, "SMnobody", "delivered").status_code == 204


def test_an_undeliverable_receipt_sends_the_email_instead(
    client: TestClient, rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt, consent={"sms": True, "email": True, "marketing": False})
    # Each text at its time: all due at one moment, the budget would send only the first.
    run_until(rt, new_york(2026, 12, 3, 8, 0))
    with rt.sessions() as session:
        two_hour = session.scalars(
            select(Notification.provider_id)
            .where(Notification.channel == "sms", Notification.status == "sent")
            .order_by(Notification.due_at.desc())
        ).first()
    assert two_hour is not None
    emails_before = len(smtp.messages)
    receipt(client, rt, two_hour, "undelivered", "30006")
    run_until(rt, clock())
    assert len(smtp.messages) == emails_before + 1


def link(rt: Runtime, action: str, expires=VISIT + timedelta(minutes=30)) -> str:  # type: ignore[no-untyped-def]
    return "/links/" + make_token(rt.settings.secret_key or "", "apt-1", action, expires)


def test_the_48_hour_reminder_email_carries_signed_links(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt)
    run_until(rt, new_york(2026, 12, 1, 10, 0))
    html = cast(MIMEPart, smtp.messages[-1].get_body(("html",))).get_content()
    assert f"{rt.settings.public_url}/links/" in html


def test_an_email_link_asks_first_then_confirms(client: TestClient, rt: Runtime) -> None:
    book(rt)
    page = client.get(link(rt, "confirm"))
    assert page.status_code == 200 and "Confirm your appointment?" in page.text
    assert confirmation(rt) == "unconfirmed"  # a mail scanner's GET confirms nothing
    done = client.post(link(rt, "confirm"))
    assert done.status_code == 200 and "confirmed" in done.text
    assert confirmation(rt) == "confirmed"


def test_a_reschedule_link_flags_the_appointment(client: TestClient, rt: Runtime) -> None:
    book(rt)
    client.post(link(rt, "reschedule"))
    assert confirmation(rt) == "wants_reschedule"


def test_tampered_and_expired_links_get_a_clear_page(
    client: TestClient, rt: Runtime, clock: SimulatedClock
) -> None:
    book(rt)
    tampered = link(rt, "confirm")[:-3] + "abc"
    answer = client.post(tampered)
    assert (answer.status_code, "not valid" in answer.text) == (400, True)
    expired = link(rt, "confirm", expires=clock() - timedelta(minutes=1))
    answer = client.post(expired)
    assert (answer.status_code, "expired" in answer.text) == (410, True)
    assert confirmation(rt) == "unconfirmed"


class ReceiptRacesTheCommit:
    """Twilio's status callback arrives while the worker is still between call and commit."""

    def __init__(self, rt: Runtime, client: TestClient, status: str, code: str | None) -> None:
        self.rt, self.client, self.status, self.code = rt, client, status, code

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        return self.rt.sms.pace(messages, within)

    def send(self, message: Message) -> str:
        sid = self.rt.sms.send(message)
        assert receipt(self.client, self.rt, sid, self.status, self.code).status_code == 204
        return sid

    def find(self, message: Message, known: Collection[str]) -> str | None:
        return None


@pytest.mark.parametrize(
    "status, code, final",
    [("delivered", None, "delivered"), ("undelivered", "30006", "undelivered")],
)
def test_a_receipt_that_beats_the_commit_is_applied_when_the_send_is_recorded(
    client: TestClient,
    rt: Runtime,
    fake_twilio: FakeTwilio,
    status: str,
    code: str | None,
    final: str,
) -> None:
    book(rt, consent={"sms": True, "email": False, "marketing": False})
    racing = dataclasses.replace(rt, sms=ReceiptRacesTheCommit(rt, client, status, code))
    run_until(racing, rt.clock())
    row = sent_sms(rt)
    assert (row.status, row.error_code) == (final, code)
    with rt.sessions() as session:
        assert session.scalars(select(EarlyReceipt)).all() == []


def test_receipts_waiting_at_the_upgrade_keep_what_twilios_code_meant(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/old.db")
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        connection.exec_driver_sql(
            "INSERT INTO early_receipts (provider_id, status, error_code, received_at) VALUES"
            " ('SM1', 'failed', '21610', '2026-11-30 14:00:00'),"
            " ('SM2', 'undelivered', '30008', '2026-11-30 14:00:00'),"
            " ('SM3', 'delivered', NULL, '2026-11-30 14:00:00')"
        )
    db.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT provider_id, reason FROM early_receipts ORDER BY provider_id"
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [("SM1", "opted_out"), ("SM2", None), ("SM3", None)]


@pytest.mark.parametrize(
    "source, shown",
    [("carrier:opted_out", "carrier (opted_out)"), ("twilio:21610", "carrier (21610)")],
)
def test_staff_read_a_carrier_opt_out_old_or_new(source: str, shown: str) -> None:
    assert opt_out_source(source) == shown
