"""The front desk acts on visits (confirm, cancel, no-show, completed, undo), sees failures in
plain words, stops texting landlines, is told what a reminder really does, and finds patients;
over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from notifier.channels.failure_words import in_plain_words
from notifier.clinic import load_clinic
from notifier.models import Appointment, BookingEvent, Notification, Patient, VisitAction
from notifier.plan import Recipient, Visit, plan
from notifier.runtime import Runtime
from notifier.settings import EXAMPLE_CLINIC
from notifier.simulate import SimulatedClock, run_until
from notifier.staff.desk import ALREADY, act
from notifier.staff.search import as_phone
from notifier.states import Status
from notifier.track import opt_outs
from notifier.web import create_app
from tests.conftest import new_york
from tests.fakes import FakeTwilio
from tests.fakes.smtp import SMTPSink
from tests.test_staff_web import AMY, TODAY_3PM, book, csrf, flash, log_in, new_staff
from tests.test_track import receipt

THURSDAY_10AM = new_york(2026, 12, 3, 10, 0)


@pytest.fixture
def amy(rt: Runtime) -> Iterator[TestClient]:
    new_staff(rt)
    with TestClient(create_app(rt)) as client:
        assert log_in(client).status_code == 303
        yield client


def later(amy: TestClient, clock: SimulatedClock, when: datetime) -> None:
    """The clock moves on to `when`, hours at the desk: longer than a session's idle limit,
    so Amy signs in again."""
    clock.now = when
    assert log_in(amy).status_code == 303


def token(page_text: str, action: str) -> str:
    """The one-time token of the page's form for `action`."""
    found = re.search(
        rf'name="token" value="([^"]+)">\s*<input type="hidden" name="action" value="{action}"',
        page_text,
    )
    assert found, f"no {action} form"
    return found[1]


def press(amy: TestClient, apt: str, action: str, **extra: str) -> tuple[str, str]:
    """Presses the action's button on the appointment page: (the flash, the token used)."""
    page = amy.get(f"/staff/appointments/{apt}")
    form = {"csrf": csrf(page), "action": action, "token": token(page.text, action), **extra}
    return flash(amy.post(f"/staff/appointments/{apt}/visit", data=form)), form["token"]


def statuses(rt: Runtime, apt: str) -> list[tuple[str, str, str, str]]:
    with rt.sessions() as s:
        rows = s.scalars(select(Notification).where(Notification.appointment_id == apt))
        return sorted((n.kind, n.channel, n.slot, n.status) for n in rows)


def test_cancelling_withdraws_the_reminders_tells_the_patient_and_a_replay_changes_nothing(
    rt: Runtime, amy: TestClient
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    said, used = press(amy, "apt-1", "cancel", sure="on")
    assert said == "Cancelled. The patient is told, and their reminders are withdrawn."
    rows = statuses(rt, "apt-1")
    assert [r for r in rows if r[0] == "reminder"] == [
        ("reminder", "email", "48h", "cancelled"),
        ("reminder", "sms", "2h", "cancelled"),
        ("reminder", "sms", "48h", "cancelled"),
    ]
    assert ("cancellation", "sms", "", "scheduled") in rows
    page = amy.get("/staff/appointments/apt-1")
    assert f"Cancelled</strong> by {AMY}" in page.text
    assert "Undo" not in page.text  # a cancel the patient has been told of is not undone
    with rt.sessions() as s:
        events_before = s.scalar(select(func.count()).select_from(BookingEvent))
    again = {"csrf": csrf(page), "action": "cancel", "token": used, "sure": "on"}
    assert flash(amy.post("/staff/appointments/apt-1/visit", data=again)).startswith("Already done")
    assert statuses(rt, "apt-1") == rows
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(BookingEvent)) == events_before
        assert s.scalars(select(VisitAction.staff)).all() == [AMY]


def test_a_no_show_withdraws_the_aftercare_and_undo_restores_it(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    later(amy, clock, TODAY_3PM + timedelta(minutes=10))
    said, _ = press(amy, "apt-1", "no_show")
    assert said == "Marked as a no-show. Its aftercare is withdrawn."
    assert {r[3] for r in statuses(rt, "apt-1") if r[0] == "aftercare"} == {"cancelled"}
    page = amy.get("/staff/appointments/apt-1")
    undo = re.search(r'action="(/staff/appointments/apt-1/undo/\d+)"', page.text)
    assert undo, page.text
    tokens = re.findall(r'name="token" value="([^"]+)"', page.text)
    answer = amy.post(undo[1], data={"csrf": csrf(page), "token": tokens[-1]})
    assert flash(answer) == "Undone: the visit is booked again (it was no-show)."
    aftercare = [r for r in statuses(rt, "apt-1") if r[0] == "aftercare"]
    assert sorted(r[3] for r in aftercare) == ["cancelled", "cancelled", "scheduled", "scheduled"]
    with rt.sessions() as s:
        assert s.get_one(Appointment, "apt-1").status == "booked"
        done = s.scalars(select(VisitAction).order_by(VisitAction.id)).all()
        assert [(a.action, a.undone_by) for a in done] == [("no_show", AMY), ("undo", None)]
    assert "(undone by" in amy.get("/staff/appointments/apt-1").text


def test_a_completed_time_must_be_after_the_start_and_not_ahead(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    later(amy, clock, TODAY_3PM + timedelta(minutes=40))
    assert press(amy, "apt-1", "complete", ended="14:00")[0] == (
        "The end time must be after the visit's start."
    )
    assert press(amy, "apt-1", "complete", ended="17:00")[0] == (
        "The end time must not be later than now."
    )
    assert press(amy, "apt-1", "complete", ended="soon")[0] == (
        "Give the time the visit ended, like 10:45."
    )
    assert press(amy, "apt-1", "complete", ended="15:35")[0] == (
        "Marked completed. Aftercare follows from the end time given."
    )
    assert "Mark completed" not in amy.get("/staff/appointments/apt-1").text
    with rt.sessions() as s:
        apt = s.get_one(Appointment, "apt-1")
        assert apt.end_at == TODAY_3PM + timedelta(minutes=35)
        due = s.scalars(
            select(Notification.due_at).where(
                Notification.kind == "aftercare", Notification.status == Status.SCHEDULED
            )
        ).all()
    assert set(due) == {TODAY_3PM + timedelta(minutes=95)}


def test_a_confirm_by_staff_sets_the_confirmation_and_can_be_undone(
    rt: Runtime, amy: TestClient
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    assert press(amy, "apt-1", "confirm")[0] == "Confirmed."
    with rt.sessions() as s:
        assert s.get_one(Appointment, "apt-1").confirmation == "confirmed"
        assert s.scalar(select(func.count()).select_from(BookingEvent)) == 1  # the booking only
    page = amy.get("/staff/appointments/apt-1")
    undo = re.search(r'action="(/staff/appointments/apt-1/undo/\d+)"', page.text)
    assert undo
    tokens = re.findall(r'name="token" value="([^"]+)"', page.text)
    answer = amy.post(undo[1], data={"csrf": csrf(page), "token": tokens[-1]})
    assert flash(answer) == "Undone: the visit is unconfirmed again."
    with rt.sessions() as s:
        assert s.get_one(Appointment, "apt-1").confirmation == "unconfirmed"


def test_forms_that_cannot_work_are_refused_not_failed(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    page = amy.get("/staff/appointments/apt-1")
    base = {"csrf": csrf(page), "action": "no_show"}
    answer = amy.post("/staff/appointments/apt-1/visit", data=base | {"token": "x" * 20})
    assert flash(answer) == "This visit is upcoming: it cannot be marked a no-show."
    answer = amy.post("/staff/appointments/apt-1/visit", data=base | {"token": "short"})
    assert flash(answer) == "This form is out of date: reload the page and try again."
    answer = amy.post("/staff/appointments/nope/visit", data=base | {"token": "y" * 20})
    assert flash(answer) == "There is no appointment nope."
    answer = amy.post("/staff/appointments/apt-1/visit", data=base | {"action": "explode"})
    assert answer.status_code == 422
    answer = amy.post(
        "/staff/appointments/apt-1/undo/99", data={"csrf": csrf(page), "token": "z" * 20}
    )
    assert flash(answer) == "There is no such action to undo on this visit."
    assert amy.post("/staff/appointments/apt-1/visit", data={"action": "cancel"}).status_code == 403


def test_a_landline_found_by_30006_moves_the_patients_texts_to_email(
    rt: Runtime, amy: TestClient, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    run_until(rt, rt.clock())  # the booking confirmations go out
    sid = fake_twilio.messages[-1]["sid"]
    assert receipt(amy, rt, sid, "undelivered", "30006").status_code == 204
    rows = statuses(rt, "apt-1")
    assert ("reminder", "sms", "48h", "cancelled") in rows
    assert ("reminder", "sms", "2h", "cancelled") in rows
    assert ("reminder", "email", "2h", "scheduled") in rows  # the text's stand-in
    assert ("reminder", "email", "48h", "scheduled") in rows
    with rt.sessions() as s:
        reasons = s.scalars(
            select(Notification.reason).where(Notification.status == Status.CANCELLED)
        ).all()
        assert set(reasons) == {"not_mobile"}
        patient = s.get_one(Patient, "pat-apt-1")
        assert patient.not_mobile_phone == patient.phone
    page = amy.get("/staff/appointments/apt-1")
    assert "Send SMS reminder" not in page.text
    assert "SMS: not sent: no mobile number" in page.text
    assert "landline or can&#39;t receive texts" in page.text
    assert "Text reminder" not in amy.get("/staff?days=7").text
    # A booking event later (a new time) keeps the number unable to take texts.
    book(rt, "apt-1", THURSDAY_10AM + timedelta(hours=2))
    rows = statuses(rt, "apt-1")
    assert not [r for r in rows if r[1] == "sms" and r[3] == "scheduled"]
    # Up to the visit, the reminders all arrive by email and nothing more is texted.
    texted, mailed = len(fake_twilio.messages), len(smtp.messages)
    run_until(rt, THURSDAY_10AM + timedelta(hours=2))
    assert len(fake_twilio.messages) == texted
    subjects = [m["Subject"].split(" - ")[0].strip() for m in smtp.messages[mailed:]]
    assert subjects == [  # the new time's confirmation, the 48-hour and the 2-hour reminders
        "Your appointment has been moved to Thu, Dec 3",
        "Reminder: your appointment on Thu, Dec 3 at 12:00 PM",
        "Reminder: your appointment on Thu, Dec 3 at 12:00 PM",
    ]


def test_a_landline_without_email_has_its_texts_withdrawn(
    rt: Runtime, amy: TestClient, fake_twilio: FakeTwilio
) -> None:
    book(rt, "apt-1", THURSDAY_10AM, email=None)
    run_until(rt, rt.clock())
    sid = fake_twilio.messages[-1]["sid"]
    receipt(amy, rt, sid, "failed", "21614")
    rows = statuses(rt, "apt-1")
    assert [r for r in rows if r[0] == "reminder"] == [
        ("reminder", "sms", "2h", "cancelled"),
        ("reminder", "sms", "48h", "cancelled"),
    ]
    page = amy.get("/staff/appointments/apt-1")
    assert "not a mobile number" in page.text
    assert "Email: not sent: no email address" in page.text
    failed = amy.get("/staff/failed").text
    assert '<strong class="small">not a mobile number</strong>' in failed


def remind_flash(amy: TestClient, apt: str, channel: str = "sms") -> str:
    page = amy.get(f"/staff/appointments/{apt}")
    data = {"csrf": csrf(page), "channel": channel}
    return flash(amy.post(f"/staff/appointments/{apt}/remind", data=data))


def test_a_manual_reminder_says_what_really_happens(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    book(rt, "apt-2", THURSDAY_10AM, phone=None, patient_id="pat-2")
    book(rt, "apt-3", THURSDAY_10AM, phone="+1 917 555 0162", patient_id="pat-3")
    with rt.sessions() as s:
        opt_outs.register(s, "+19175550162", "keyword:STOP", clock())
        s.commit()
    assert remind_flash(amy, "apt-1") == "SMS reminder sent: it goes out within seconds."
    assert remind_flash(amy, "apt-2") == "SMS reminder not sent: no mobile number."
    assert remind_flash(amy, "apt-3") == "SMS reminder not sent: patient opted out of texts."
    later(amy, clock, new_york(2026, 11, 30, 22, 30))
    assert remind_flash(amy, "apt-1", "email") == "Email reminder sent: it goes out within seconds."
    book(rt, "apt-4", THURSDAY_10AM, patient_id="pat-4", phone="+1 646 555 0177")
    assert remind_flash(amy, "apt-4") == "SMS reminder held until 8:00 AM (quiet hours)."
    page = amy.get("/staff/appointments/apt-3").text
    assert "Send SMS reminder" not in page and "SMS: not sent: patient opted out of texts" in page
    assert "Send email reminder" in page
    book(rt, "apt-5", THURSDAY_10AM, patient_id="pat-5", phone="+1 347 555 0121")
    answer = amy.post(
        "/v1/appointments/apt-5/remind",
        json={"channels": ["sms", "email"]},
        headers={"Authorization": "Bearer test-key"},
    )
    assert answer.status_code == 202
    assert answer.json()["outcome"] == {
        "sms": {
            "result": "held",
            "text": "held until 8:00 AM (quiet hours)",
            "at": new_york(2026, 12, 1, 8, 0).isoformat(),
        },
        "email": {"result": "sent", "text": "sent", "at": clock().isoformat()},
    }


def test_the_api_answers_the_reminders_outcome(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-2", THURSDAY_10AM, phone=None, patient_id="pat-2")
    answer = amy.post(
        "/v1/appointments/apt-2/remind",
        json={"channels": ["sms", "email"]},
        headers={"Authorization": "Bearer test-key"},
    )
    assert answer.status_code == 202
    body = answer.json()
    assert body["refused"] == {"sms": "no mobile number"}
    assert body["outcome"] == {
        "sms": {"result": "not_sent", "text": "not sent: no mobile number", "at": None},
        "email": {"result": "sent", "text": "sent", "at": rt.clock().isoformat()},
    }
    assert [n["channel"] for n in body["notifications"]] == ["email"]


def test_find_a_patient_by_phone_name_or_appointment_id(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    book(rt, "apt-2", THURSDAY_10AM, phone="+1 516 555 0188", patient_id="pat-2")
    for query in ("(718) 555-0134", "718.555.0134", "+1 718-555-0134", "ana ruiz", "RUIZ", "apt-1"):
        page = amy.get("/staff/search", params={"q": query})
        assert page.status_code == 200
        assert "/staff/appointments/apt-1" in page.text, query
        assert "/staff/appointments/apt-2" not in page.text or query in ("ana ruiz", "RUIZ")
    for hostile in ("%", "_", "\\", "'; drop table patients; --", "x" * 5000, "☃", "\x00"):
        page = amy.get("/staff/search", params={"q": hostile})
        assert page.status_code == 200, hostile
        assert "/staff/appointments/apt-" not in page.text, repr(hostile)
    assert 'role="search"' in amy.get("/staff/inbox").text


def test_a_landline_patient_with_email_gets_by_email_what_would_have_been_texted() -> None:
    clinic = load_clinic(Path(EXAMPLE_CLINIC))
    treatment = clinic.treatment("botox-cosmetic")
    assert treatment is not None
    ny = ZoneInfo("America/New_York")
    # A week out: the budget drops a 48 h reminder due within a day of the confirmation.
    start = THURSDAY_10AM + timedelta(days=7)
    visit = Visit("booked", start, start + timedelta(minutes=30), TODAY_3PM)
    who = Recipient(zone=ny, sms=False, email=True, marketing=False, texts_by_email=True)
    planned = plan(visit, who, treatment, clinic.policy, TODAY_3PM)
    assert sorted((p.kind, p.channel, p.slot) for p in planned) == [
        ("aftercare", "email", ""),
        ("confirmation", "email", "2026-12-10T15:00Z"),
        ("reminder", "email", "2h"),
        ("reminder", "email", "48h"),
    ]
    cancelled = replace(visit, status="cancelled", cancelled_at=TODAY_3PM)
    assert [p.channel for p in plan(cancelled, who, treatment, clinic.policy, TODAY_3PM)] == [
        "email"
    ]


@pytest.mark.parametrize(
    ("channel", "code", "reason", "words"),
    [
        ("sms", "30006", "not_mobile", "landline or can't receive texts"),
        ("sms", "21610", "opted_out", "patient opted out at the carrier"),
        ("sms", "30007", "filtered", "blocked as spam by the carrier"),
        ("sms", "30008", None, "unknown error"),
        ("sms", "39999", "undeliverable", "could not be delivered"),
        ("sms", None, "provider", ""),
        ("email", "550", "provider", "mailbox does not exist"),
        ("email", "552", "provider", "mailbox full"),
        ("email", "5x0", None, ""),
    ],
)
def test_failures_in_plain_words(
    channel: str, code: str | None, reason: str | None, words: str
) -> None:
    assert in_plain_words(channel, code, reason) == words


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("(718) 555-0134", "+17185550134"),
        ("718 555 0134", "+17185550134"),
        ("1-718-555-0134", "+17185550134"),
        ("+44 20 7946 0958", "+442079460958"),
        ("ana", None),
        ("12345", None),
        ("apt-17185550134", None),
    ],
)
def test_a_phone_number_is_read_however_it_is_written(typed: str, e164: str | None) -> None:
    assert as_phone(typed) == e164


def test_hostile_desk_forms_get_an_answer_not_a_500(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    later(amy, clock, TODAY_3PM + timedelta(minutes=40))
    page = amy.get("/staff/appointments/apt-1")
    form = {"csrf": csrf(page), "action": "complete", "token": token(page.text, "complete")}
    for ended in ("15:\x0035", "25:99", "１５:３５", "15:35:00.000000+05:00", "-1"):
        answer = amy.post("/staff/appointments/apt-1/visit", data=form | {"ended": ended})
        assert answer.status_code == 200, ended
        assert flash(answer) in (
            "Give the time the visit ended, like 10:45.",
            "The end time must be after the visit's start.",
            "The end time must not be later than now.",
        ), ended
    for bad in ("tök\x00én" * 3, "x" * 65, "../../" * 4):
        answer = amy.post("/staff/appointments/apt-1/visit", data=form | {"token": bad})
        assert answer.status_code in (200, 422), bad
    for path in ("/staff/appointments/apt-1/undo/0", f"/staff/appointments/apt-1/undo/{2**63}"):
        assert amy.post(path, data={"csrf": csrf(page), "token": "t" * 20}).status_code == 422
    with rt.sessions() as s:
        assert s.get_one(Appointment, "apt-1").status == "booked"


def test_the_same_form_posted_twice_at_once_acts_once(rt: Runtime, clock: SimulatedClock) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    form_token = "same-form-token-0123456789"

    def press_cancel() -> str:
        with rt.sessions() as s:
            return act(s, rt.clinic, "apt-1", "cancel", form_token, AMY, clock()).text

    with ThreadPoolExecutor(2) as pool:
        said = sorted(pool.map(lambda _: press_cancel(), range(2)))
    assert said == [ALREADY, "Cancelled. The patient is told, and their reminders are withdrawn."]
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(VisitAction)) == 1
        staff_events = s.scalars(
            select(BookingEvent.id).where(BookingEvent.id.like("staff:%"))
        ).all()
        assert len(staff_events) == 1
        cancellations = s.scalars(
            select(Notification).where(Notification.kind == "cancellation")
        ).all()
        # One cancellation a channel (the email's calendar file takes the visit out), once.
        assert sorted(n.channel for n in cancellations) == ["email", "sms"]
