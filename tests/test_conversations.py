"""Staff text a patient back, and the worklist gathers what needs a person: on both databases,
through the real send path to the fake Twilio server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from notifier import db
from notifier.channels import InboundText
from notifier.ingest import apply_event
from notifier.links import make_token
from notifier.models import InboundMessage, Notification, NotificationEvent
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.staff.conversations import (
    Answered,
    CannotText,
    answer,
    settle_failure,
    thread,
    unread,
    worklist,
)
from notifier.store import opt_outs
from notifier.track import receive
from notifier.web import create_app
from tests.conftest import POSTGRES_ADMIN_URL, new_york
from tests.events import event
from tests.fakes import FakeTwilio
from tests.test_staff_web import (
    AMY,
    TODAY_3PM,
    a_reply,
    book,
    csrf,
    fail_confirmation_sms,
    flash,
    log_in,
    new_staff,
)

ANA, PHONE = "pat-apt-1", "+17185550134"
FORM = "form-id-0123456789abcdef"
PRACTICE = "North Shore Skin & Neurology"


@pytest.fixture
def booked(rt: Runtime, fake_twilio: FakeTwilio) -> Runtime:
    """Ana's visit at Forest Hills today at 3 PM; its confirmations already sent."""
    book(rt, "apt-1", TODAY_3PM)
    run_until(rt, rt.clock())
    fake_twilio.reset()
    return rt


def answered(rt: Runtime, text: str, form: str = FORM, **kw: object) -> Answered:
    with rt.sessions() as session:
        return answer(session, rt.clinic, ANA, text, AMY, form, rt.clock(), **kw)  # type: ignore[arg-type]


def staff_messages(rt: Runtime) -> list[Notification]:
    with rt.sessions() as session:
        query = select(Notification).where(Notification.kind == "staff_message")
        return list(session.scalars(query.order_by(Notification.id)))


def texted(fake_twilio: FakeTwilio) -> list[tuple[str, str]]:
    return [(m["to"], m["body"]) for m in fake_twilio.messages]


def test_an_answer_goes_out_once_naming_the_clinic_however_often_its_form_is_posted(
    booked: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    reply = a_reply(booked, "Can I bring my daughter?", clock())
    first = answered(booked, "Of course, see you at 3!", reply_id=reply)
    again = answered(booked, "Of course, see you at 3!", reply_id=reply)
    assert (first.state, again.state) == ("sent", "again")
    run_until(booked, clock())
    assert texted(fake_twilio) == [(PHONE, f"{PRACTICE}, Forest Hills: Of course, see you at 3!")]
    (sent,) = staff_messages(booked)
    assert (sent.status, sent.staff, sent.quiet_override) == ("sent", AMY, False)
    with booked.sessions() as session:
        handled = session.get_one(InboundMessage, reply)
        assert (handled.handled_by, handled.handled_at) == (AMY, clock())


def test_inside_quiet_hours_an_answer_is_held_unless_it_answers_a_text_of_the_last_hour(
    booked: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    clock.now = new_york(2026, 11, 30, 22, 0)
    held = answered(booked, "We open at 8.", form="held-form-0123456789")
    assert (held.state, held.due_at) == ("held", new_york(2026, 12, 1, 8, 0))
    with pytest.raises(CannotText, match="within the last hour"):
        answered(booked, "Now please", form="early-form-0123456789", send_now=True)
    a_reply(booked, "Is my visit tomorrow?", new_york(2026, 11, 30, 21, 15))
    now = answered(booked, "It was today at 3.", form="now-form-0123456789ab", send_now=True)
    assert now.state == "sent"
    run_until(booked, clock())
    assert texted(fake_twilio) == [(PHONE, f"{PRACTICE}, Forest Hills: It was today at 3.")]
    with booked.sessions() as session:
        details = session.scalars(
            select(NotificationEvent.detail).where(NotificationEvent.status == "scheduled")
        ).all()
    assert f"staff message by {AMY}, sent inside quiet hours in answer to the patient's text" in (
        details
    )
    run_until(booked, new_york(2026, 12, 1, 8, 0))
    assert texted(fake_twilio)[-1] == (PHONE, f"{PRACTICE}, Forest Hills: We open at 8.")
    assert len(fake_twilio.messages) == 2


def test_a_patient_who_opted_out_is_not_texted(booked: Runtime, clock: SimulatedClock) -> None:
    with booked.sessions() as session:
        opt_outs.register(session, PHONE, "keyword:STOP", clock())
        session.commit()
        shown = thread(session, booked.clinic, ANA, clock())
    assert shown is not None and shown.reason_not == "not sent: patient opted out of texts"
    with pytest.raises(CannotText, match="Not sent: patient opted out of texts"):
        answered(booked, "Hello?")
    assert staff_messages(booked) == []


def test_a_visit_that_moves_keeps_the_answer_waiting_for_the_morning(
    booked: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    clock.now = new_york(2026, 11, 30, 22, 0)
    answered(booked, "Call us in the morning.")
    moved = event(
        "rescheduled", new_york(2026, 12, 4, 11, 0), occurred_at=clock(), appointment_id="apt-1",
        patient_id=ANA,
    )  # fmt: skip
    with booked.sessions() as session:
        apply_event(session, booked.clinic, moved, clock())
    (held,) = staff_messages(booked)
    assert held.status == "scheduled"


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    new_staff(rt)
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def test_a_reschedule_asked_by_email_link_waits_on_the_worklist_once(
    booked: Runtime, client: TestClient, clock: SimulatedClock
) -> None:
    token = make_token("test-secret", "apt-1", "reschedule", TODAY_3PM + timedelta(hours=1))
    assert client.post(f"/links/{token}").status_code == 200
    assert client.post(f"/links/{token}").status_code == 200
    with booked.sessions() as session:
        items = worklist(session, booked.clinic, None)
    assert [(i.what, i.label, i.patient and i.patient.id) for i in items] == [
        ("reschedule", "Wants another time (by email link)", ANA)
    ]


def test_stop_from_a_patient_with_a_booked_visit_asks_for_a_call(
    booked: Runtime, clock: SimulatedClock
) -> None:
    with booked.sessions() as session:
        receive(booked, session, InboundText("SM-stop-1", PHONE, "+15165550100", "CANCEL"), clock())
        items = worklist(session, booked.clinic, "forest-hills")
    assert [(i.what, i.label) for i in items] == [
        ("opted_out", "Opted out of texts — call to check whether they meant to cancel")
    ]


def test_replies_count_unread_by_location_until_the_conversation_is_opened(
    booked: Runtime, clock: SimulatedClock
) -> None:
    a_reply(booked, "Running late", clock())
    with booked.sessions() as session:
        receive(booked, session, InboundText("SM-c-1", PHONE, "+15165550100", "C"), clock())
        assert unread(session, booked.clinic) == [("Manhasset", 0), ("Forest Hills", 1)]
        shown = thread(session, booked.clinic, ANA, clock())
        assert unread(session, booked.clinic) == [("Manhasset", 0), ("Forest Hills", 0)]
    assert shown is not None
    ours = [e for e in shown.entries if not e.incoming]
    theirs = [(e.text, e.auto_replied) for e in shown.entries if e.incoming]
    assert theirs == [("Running late", True), ("C", True)]
    assert ours and all(e.kind == "confirmation" for e in ours)


def test_a_failed_message_leaves_the_worklist_once_settled(
    rt: Runtime, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    booked = rt
    failed = fail_confirmation_sms(booked)
    with booked.sessions() as session:
        (item,) = worklist(session, booked.clinic, None)
        assert item.what == "failed" and item.failure is not None
        assert settle_failure(session, failed, AMY, clock())
        assert not settle_failure(session, failed, AMY, clock())
        assert worklist(session, booked.clinic, None) == []
    with booked.sessions() as session:
        row = session.get_one(Notification, failed)
        assert (row.status, row.settled_by, row.settled_at) == ("failed", AMY, clock())


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_wrapper_names_the_clinic_and_keeps_the_words(rt: Runtime, lang: str) -> None:
    context = {
        "practice": {"name": PRACTICE},
        "location": {"name": "Manhasset", "phone": "(516) 555-0142"},
        "staff_message": "Sí, el viernes a las 2:30 está bien.",
    }
    rendered = rt.renderer.render("staff_message", "sms", lang, context)
    assert rendered.text == f"{PRACTICE}, Manhasset: Si, el viernes a las 2:30 esta bien."


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"text": "Hi"}, "This form is out of date: reload the page and write again."),
        ({"text": "Hi", "form_id": "x" * 65}, "This form is out of date"),
        ({"text": "Hi", "form_id": "../../../etc/passwd00"}, "This form is out of date"),
        ({"text": "  \n ", "form_id": FORM}, "Write a message first."),
        ({"text": "a" * 5000, "form_id": FORM}, "That is 5000 characters"),
        ({"text": "Hi", "form_id": FORM, "reply_id": "9" * 40}, "Sent:"),
        ({"text": "Hi", "form_id": FORM, "reply_id": "-1", "send_now": "yes"}, "Sent:"),
    ],
)
def test_a_hostile_answer_form_is_refused_in_words(
    booked: Runtime, client: TestClient, form: dict[str, str], said: str
) -> None:
    assert log_in(client).status_code == 303
    token = csrf(client.get("/staff/patients/pat-apt-1/conversation"))
    answer = client.post("/staff/patients/pat-apt-1/messages", data={"csrf": token, **form})
    assert answer.status_code == 200
    assert flash(answer).startswith(said)
    assert len(staff_messages(booked)) == (1 if said == "Sent:" else 0)


def test_an_unknown_patient_has_no_conversation(booked: Runtime, client: TestClient) -> None:
    assert log_in(client).status_code == 303
    assert client.get("/staff/patients/nobody/conversation").status_code == 404
    token = csrf(client.get("/staff/worklist"))
    sent = client.post(
        "/staff/patients/nobody/messages", data={"csrf": token, "text": "Hi", "form_id": FORM}
    )
    assert flash(sent) == "There is no such patient."
    bad = client.post("/staff/patients/a b/messages", data={"csrf": token, "text": "Hi"})
    assert bad.status_code == 422


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_migration_counts_handled_replies_read_and_goes_back(
    tmp_path: Path, dialect: str
) -> None:
    url, drop = _empty_database(tmp_path, dialect)
    engine = db.make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            connection.exec_driver_sql(
                "INSERT INTO inbound_messages (provider_id, from_number, to_number, body,"
                " received_at, intent, needs_staff, auto_replied, handled_at, handled_by) VALUES"
                " ('SM1', '+17185550134', '+15165550100', 'late?', '2026-11-30 14:00:00',"
                "  'other', true, false, '2026-11-30 15:00:00', 'amy'),"
                " ('SM2', '+17185550134', '+15165550100', 'hi', '2026-11-30 16:00:00',"
                "  'other', true, false, NULL, NULL)"
            )
        db.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT provider_id, channel, read_at FROM inbound_messages ORDER BY provider_id"
            ).all()
        assert [(r[0], r[1], r[2] is not None) for r in rows] == [
            ("SM1", "sms", True),
            ("SM2", "sms", False),
        ]
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
            command.upgrade(config, "head")
    finally:
        engine.dispose()
        drop()


def _empty_database(tmp_path: Path, dialect: str) -> tuple[str, Callable[[], None]]:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path}/old.db", lambda: None
    name = f"notifier_migration_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


def test_the_page_says_held_until_8_and_offers_send_now_only_after_a_fresh_text(
    booked: Runtime, client: TestClient, clock: SimulatedClock
) -> None:
    clock.now = new_york(2026, 11, 30, 22, 0)
    assert log_in(client).status_code == 303
    page = client.get("/staff/patients/pat-apt-1/conversation")
    assert "Send at 8:00 AM" in page.text and "Send now" not in page.text
    held = client.post(
        "/staff/patients/pat-apt-1/messages",
        data={"csrf": csrf(page), "text": "See you soon", "form_id": FORM},
    )
    assert flash(held) == "Held until 8:00 AM (quiet hours): it goes out then."
    assert "held until 8:00 AM" in held.text
    a_reply(booked, "Are you open tomorrow?", new_york(2026, 11, 30, 21, 50))
    page = client.get("/staff/patients/pat-apt-1/conversation")
    assert "Send now (answering their text)" in page.text


def test_a_failed_message_is_settled_from_the_worklist_page(
    rt: Runtime, client: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    failed = fail_confirmation_sms(rt)
    assert log_in(client).status_code == 303
    page = client.get("/staff/worklist")
    assert "Message failed" in page.text and "21211" in page.text
    assert "Booking confirmation by SMS" in page.text
    settled = client.post(f"/staff/failed/{failed}/settle", data={"csrf": csrf(page)})
    assert "Nothing waiting." in settled.text
    again = client.post(f"/staff/failed/{failed}/settle", data={"csrf": csrf(page)})
    assert flash(again) == "Someone took care of this message already."
