"""CTIA: the first text to a number, and every marketing text, ends with how to opt out; the
number's first text is recorded with its send, through the real send path (twilio SDK against
the fake Twilio), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from notifier import states
from notifier.channels import DeliveryReceipt
from notifier.ingest import apply_event
from notifier.models import Notification, SmsFirstText
from notifier.render import OPT_OUT_LINES, Renderer, with_opt_out_line
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.track import delivery_receipt
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

VISIT = new_york(2026, 12, 3, 10, 0)
STOP_EN = "Reply STOP to opt out"
STOP_ES = "Responda STOP para no recibir mas"  # "más" in GSM-7: á is not in the alphabet


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(Path(__file__).resolve().parent.parent / "templates")


def post(rt: Runtime, payload: dict) -> None:
    with rt.sessions() as session:
        apply_event(session, rt.clinic, payload, rt.clock())


def texts_to(twilio: FakeTwilio, phone: str) -> list[str]:
    return [m["body"] for m in twilio.messages if m["to"] == phone]


def first_texts(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        return {r.phone: r.notification_id for r in session.scalars(select(SmsFirstText))}


def test_the_first_text_to_a_new_number_carries_the_line_and_the_second_does_not(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, new_york(2026, 12, 1, 10, 0))  # the confirmation, then the 48 h reminder

    first, second = texts_to(fake_twilio, "+17185550134")
    assert first.endswith(". " + STOP_EN) and first.count("STOP") == 1
    assert "STOP" not in second
    with rt.sessions() as session:
        confirmation = session.scalars(
            select(Notification).where(
                Notification.kind == "confirmation", Notification.channel == "sms"
            )
        ).one()
    assert first_texts(rt) == {"+17185550134": confirmation.id}
    # Emails never count as a number's first text, and carry no SMS wording.
    assert all("STOP" not in str(mail.get_body(("plain",))) for mail in smtp.messages)


def test_a_spanish_first_text_says_it_in_spanish(rt: Runtime, fake_twilio: FakeTwilio) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), language="es"))
    run_until(rt, rt.clock())
    (text,) = texts_to(fake_twilio, "+17185550134")
    assert text.endswith(". " + STOP_ES)


def test_a_new_number_of_a_known_patient_gets_the_line_again(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    run_until(rt, clock())
    moved = VISIT + timedelta(days=1)
    post(rt, event("rescheduled", moved, occurred_at=clock(), phone="+1 718 555 0188"))
    run_until(rt, clock())
    (old,) = texts_to(fake_twilio, "+17185550134")
    (new,) = texts_to(fake_twilio, "+17185550188")
    assert old.endswith(STOP_EN) and new.endswith(STOP_EN)
    assert set(first_texts(rt)) == {"+17185550134", "+17185550188"}


def test_the_rebook_nudge_always_carries_the_line(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    consent = {"sms": True, "email": False, "marketing": True}
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), consent=consent))
    run_until(rt, VISIT + timedelta(days=90))
    bodies = texts_to(fake_twilio, "+17185550134")
    assert len(bodies) == 5  # confirmation, two reminders, aftercare, rebook
    assert [b.endswith(STOP_EN) for b in bodies] == [True, False, False, False, True]


def test_a_number_keeps_its_first_text_and_a_rolled_back_send_marks_nothing(
    rt: Runtime,
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    with rt.sessions() as session:
        ids = [n.id for n in session.scalars(select(Notification).order_by(Notification.id))]
        at = rt.clock()
        states.record_first_texts(session, [{"nid": ids[1], "at": at, "phone": "+1555"}])
        session.rollback()
        assert first_texts(rt) == {}
        states.record_first_texts(
            session,
            [
                {"nid": ids[2], "at": at, "phone": "+1555"},
                {"nid": ids[1], "at": at, "phone": "+1555"},
                {"nid": ids[0], "at": at, "phone": None},
            ],
        )
        session.commit()
        states.record_first_texts(session, [{"nid": ids[3], "at": at, "phone": "+1555"}])
        session.commit()
    assert first_texts(rt) == {"+1555": ids[1]}


def test_the_staff_preview_shows_the_line_the_text_will_carry(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    from notifier.staff.timeline import timeline

    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    with rt.sessions() as session:
        before = timeline(rt, session, "apt-1", rt.clock())
    run_until(rt, rt.clock())
    with rt.sessions() as session:
        after = timeline(rt, session, "apt-1", rt.clock())
    sms_before = [e.preview for e in before.ahead if e.notification.channel == "sms"]
    sms_after = [e.preview for e in after.ahead if e.notification.channel == "sms"]
    assert all(p is not None and p.text.endswith(STOP_EN) for p in sms_before)
    assert sms_after and all(p is not None and "STOP" not in p.text for p in sms_after)


def test_the_line_joins_a_text_as_a_sentence() -> None:
    assert with_opt_out_line("Call (718) 555-0117", "en") == f"Call (718) 555-0117. {STOP_EN}"
    assert with_opt_out_line("See you!", "en") == f"See you! {STOP_EN}"
    assert with_opt_out_line("Bonjour.", "fr") == f"Bonjour. {STOP_EN}"
    assert OPT_OUT_LINES["es"] == "Responda STOP para no recibir más"


def test_the_renderer_adds_the_line_only_when_told(renderer: Renderer) -> None:
    from notifier.doctor import example_context

    for told in (True, False):
        context = example_context("reminder", "es")
        context["notification"]["opt_out_line"] = told
        text = renderer.render("reminder", "sms", "es", context).text
        assert text.endswith(STOP_ES) is told


def test_a_first_text_settled_by_reconciliation_is_recorded_then(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    consent = {"sms": True, "email": False, "marketing": False}
    post(rt, event("booked", VISIT, occurred_at=clock(), consent=consent))
    fake_twilio.drop_next()  # Twilio takes the text, its answer is lost: `unknown`
    run_until(rt, clock())
    assert first_texts(rt) == {}
    run_until(rt, clock() + timedelta(seconds=rt.settings.sending_lease_seconds + 1))
    with rt.sessions() as session:
        (confirmation,) = session.scalars(
            select(Notification).where(Notification.kind == "confirmation")
        )
        assert confirmation.status == "sent"
    assert first_texts(rt) == {"+17185550134": confirmation.id}
    (text,) = texts_to(fake_twilio, "+17185550134")
    assert text.endswith(STOP_EN)


def test_a_first_text_that_never_arrived_leaves_the_line_to_the_next(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    consent = {"sms": True, "email": False, "marketing": False}
    post(rt, event("booked", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, clock())
    (sid,) = [m["sid"] for m in fake_twilio.messages]
    with rt.sessions() as session:
        receipt = DeliveryReceipt(sid, "undelivered", "30003", "unreachable")
        assert delivery_receipt(session, rt.clinic, receipt, clock()) is not None
    assert first_texts(rt) == {}
    run_until(rt, new_york(2026, 12, 1, 10, 0))
    first, reminder = texts_to(fake_twilio, "+17185550134")
    assert first.endswith(STOP_EN) and reminder.endswith(STOP_EN)
    assert set(first_texts(rt)) == {"+17185550134"}
