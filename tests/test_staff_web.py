"""The staff dashboard over HTTP: who may see it, what each page lists and what each button
changes, on SQLite and PostgreSQL. The browser tests (test_staff_browser.py) walk the same
pages in Chromium; these pin the rules, faster."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import delete, select

from notifier.ingest import apply_event
from notifier.models import Appointment, Base, InboundMessage, Notification, SmsOptOut
from notifier.remind import remind
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.staff.accounts import create_staff
from notifier.staff.models import StaffSession, StaffUser
from notifier.states import Status, transition
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio

AMY = "amy@clinic.example"
PASSWORD = "correct horse battery"
TODAY_3PM = new_york(2026, 11, 30, 15, 0)  # the clock stands at 09:00 that Monday


def new_staff(rt: Runtime) -> None:
    """Amy, the only staff account (PostgreSQL keeps staff rows from one test to the next)."""
    with rt.sessions() as session:
        session.execute(delete(StaffSession))
        session.execute(delete(StaffUser))
        create_staff(session, AMY, PASSWORD, rt.clock())


def book(
    rt: Runtime, appointment_id: str, start: datetime, location: str = "forest-hills", **kw: object
) -> None:
    patient = kw.pop("patient_id", f"pat-{appointment_id}")
    payload = event(
        "booked", start, occurred_at=rt.clock(), appointment_id=appointment_id,
        patient_id=patient, location=location, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    with rt.sessions() as session:
        apply_event(session, rt.clinic, payload, rt.clock())


def set_appointment(rt: Runtime, appointment_id: str, **values: str) -> None:
    with rt.sessions() as session:
        appointment = session.get_one(Appointment, appointment_id)
        for name, value in values.items():
            setattr(appointment, name, value)
        session.commit()


def a_reply(rt: Runtime, body: str, received_at: datetime) -> int:
    """A text from apt-1's patient that the service did not understand: it waits for staff."""
    with rt.sessions() as session:
        reply = InboundMessage(
            provider_id="SM-1", from_number="+17185550134", to_number="+15165550100", body=body,
            received_at=received_at, patient_id="pat-apt-1", appointment_id="apt-1",
            intent="other", needs_staff=True, auto_replied=True,
        )  # fmt: skip
        session.add(reply)
        session.commit()
        return reply.id


def csrf(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def flash(page: Response) -> str:
    found = re.search(r'class="flash flash-\w+"[^>]*>([^<]*)<', page.text)
    return html.unescape(found[1]) if found else ""


def log_in(client: TestClient, password: str = PASSWORD, **extra: str) -> Response:
    form = client.get("/staff/login")
    data = {"email": AMY, "password": password, "csrf": csrf(form), **extra}
    return client.post("/staff/login", data=data, follow_redirects=False)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    new_staff(rt)
    with TestClient(create_app(rt)) as test_client:
        yield test_client


@pytest.fixture
def amy(client: TestClient) -> TestClient:
    assert log_in(client).status_code == 303
    return client


def test_every_page_sends_strangers_to_the_login(client: TestClient) -> None:
    for path in ("/staff", "/staff/inbox", "/staff/appointments/apt-1", "/staff/stats"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/staff/login?next=%2Fstaff")
    forged_host = client.get("/staff", headers={"host": "evil.example"}, follow_redirects=False)
    assert forged_host.headers["location"] == "/staff/login?next=%2Fstaff"
    posted = client.post("/staff/failed/1/retry", data={"csrf": "x"}, follow_redirects=False)
    assert posted.status_code == 303


def test_logging_in_goes_back_to_the_page_asked_for(client: TestClient) -> None:
    answer = log_in(client, next="/staff/inbox")
    assert (answer.status_code, answer.headers["location"]) == (303, "/staff/inbox")
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/staff" in cookie and "SameSite=lax" in cookie
    client.cookies.clear()
    assert log_in(client, next="//evil.example/").headers["location"] == "/staff"


def test_over_https_the_session_cookie_is_secure(rt: Runtime, client: TestClient) -> None:
    with TestClient(create_app(rt), base_url="https://testserver") as https:
        assert "Secure" in log_in(https).headers["set-cookie"]
    assert "Secure" not in log_in(client).headers["set-cookie"]


def test_a_wrong_password_is_refused_and_five_close_the_account_a_while(
    client: TestClient, clock: SimulatedClock
) -> None:
    wrong = log_in(client, password="wrong horse battery")
    assert wrong.status_code == 401
    assert "Wrong email or password." in wrong.text
    for _ in range(4):
        log_in(client, password="wrong horse battery")
    locked = log_in(client)
    assert locked.status_code == 401 and flash(locked) == flash(wrong)
    clock.now += timedelta(minutes=15)
    assert log_in(client).status_code == 303


def test_an_unknown_address_gets_the_same_answer(client: TestClient) -> None:
    form = client.get("/staff/login")
    data = {"email": "bob@clinic.example", "password": PASSWORD, "csrf": csrf(form)}
    answer = client.post("/staff/login", data=data)
    assert answer.status_code == 401 and "Wrong email or password." in answer.text


def test_the_login_form_needs_its_own_csrf_token(client: TestClient) -> None:
    client.get("/staff/login")
    data = {"email": AMY, "password": PASSWORD, "csrf": "forged"}
    assert client.post("/staff/login", data=data).status_code == 403


def test_a_post_without_the_session_csrf_token_is_refused(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    for data in ({"channel": "sms"}, {"channel": "sms", "csrf": "forged"}):
        answer = amy.post("/staff/appointments/apt-1/remind", data=data)
        assert answer.status_code == 403
    with rt.sessions() as session:
        assert session.scalar(select(Notification).where(Notification.kind == "manual")) is None


def test_a_session_ends_after_15_idle_minutes(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    clock.now += timedelta(minutes=14)
    assert amy.get("/staff").status_code == 200  # a page view keeps it alive
    clock.now += timedelta(minutes=14, seconds=59)
    assert amy.get("/staff").status_code == 200
    clock.now += timedelta(minutes=15)
    answer = amy.get("/staff", follow_redirects=False)
    assert answer.status_code == 303 and "/staff/login" in answer.headers["location"]
    with rt.sessions() as session:
        assert session.scalar(select(StaffSession)) is None


def test_logging_out_ends_the_session_for_good(amy: TestClient) -> None:
    cookie = amy.cookies["notifier_staff"]
    board = amy.get("/staff")
    assert amy.post("/staff/logout", data={"csrf": csrf(board)}).url.path == "/staff/login"
    replayed = amy.get(
        "/staff", headers={"cookie": f"notifier_staff={cookie}"}, follow_redirects=False
    )
    assert replayed.status_code == 303


def test_the_board_lists_the_next_days_by_location_with_confirmations(
    rt: Runtime, amy: TestClient
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    book(rt, "apt-2", TODAY_3PM + timedelta(hours=1), phone="+1 718 555 0135")
    book(rt, "apt-3", TODAY_3PM + timedelta(days=1), "manhasset", phone="+1 516 555 0188")
    book(rt, "apt-4", TODAY_3PM + timedelta(days=5), phone="+1 718 555 0136")
    set_appointment(rt, "apt-2", confirmation="confirmed")
    board = amy.get("/staff")
    assert board.text.count('href="/staff/appointments/') == 3  # apt-4 is beyond three days
    today = board.text.split('<section class="block day">')[1]
    assert "3:00 PM" in today and "4:00 PM" in today  # New York time, not UTC
    assert "Unconfirmed" in today and "Confirmed" in today and "Manhasset" not in today
    chosen = amy.post("/staff/location", data={"csrf": csrf(board), "location": "manhasset"})
    assert chosen.text.count('href="/staff/appointments/') == 1
    assert "/staff/appointments/apt-3" in chosen.text
    week = amy.get("/staff?days=7")
    assert "/staff/appointments/apt-4" not in week.text  # Forest Hills' is not Manhasset's
    amy.post("/staff/location", data={"csrf": csrf(board), "location": ""})
    assert "/staff/appointments/apt-4" in amy.get("/staff?days=7").text


def test_unconfirmed_within_48_hours_is_the_call_list(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    book(rt, "apt-2", TODAY_3PM + timedelta(days=1), phone="+1 718 555 0135")
    book(rt, "apt-3", TODAY_3PM + timedelta(days=3), phone="+1 718 555 0136")
    book(rt, "apt-4", TODAY_3PM, "manhasset", phone="+1 516 555 0188")
    set_appointment(rt, "apt-2", confirmation="confirmed")
    set_appointment(rt, "apt-4", status="cancelled")
    listed = amy.get("/staff?show=unconfirmed")
    assert re.findall(r'href="/staff/appointments/([^"]+)"', listed.text) == ["apt-1"]


def test_send_reminder_now_plans_a_manual_reminder_by_the_staff_member(
    rt: Runtime, amy: TestClient, fake_twilio: FakeTwilio
) -> None:
    book(rt, "apt-1", TODAY_3PM, consent={"sms": True, "email": False, "marketing": False})
    page = amy.get("/staff/appointments/apt-1")
    sms = amy.post("/staff/appointments/apt-1/remind", data={"csrf": csrf(page), "channel": "sms"})
    assert sms.url.path == "/staff/appointments/apt-1"
    assert flash(sms) == "SMS reminder sent: it goes out within seconds."
    again = amy.post(
        "/staff/appointments/apt-1/remind", data={"csrf": csrf(page), "channel": "sms"}
    )
    assert flash(again) == f"Not sent again: {AMY} sent an SMS reminder just now."
    email = amy.post(
        "/staff/appointments/apt-1/remind", data={"csrf": csrf(page), "channel": "email"}
    )
    assert flash(email) == "Email reminder not sent: patient did not agree to email."
    run_until(rt, rt.clock())
    assert [m["body"] for m in fake_twilio.messages if ", reminder: " in m["body"]]
    with rt.sessions() as session:
        manual = session.scalars(select(Notification).where(Notification.kind == "manual")).one()
        assert (manual.staff, manual.channel, manual.status) == (AMY, "sms", "sent")


def test_a_cancelled_appointment_takes_no_reminder(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    set_appointment(rt, "apt-1", status="cancelled")
    page = amy.get("/staff/appointments/apt-1")
    assert "Reminders are for upcoming booked appointments; this one is cancelled." in page.text
    posted = amy.post(
        "/staff/appointments/apt-1/remind", data={"csrf": csrf(page), "channel": "sms"}
    )
    assert flash(posted) == "No reminder: appointment 'apt-1' is cancelled, not upcoming."


def test_the_appointment_page_shows_the_timeline_and_the_texts_ahead(
    rt: Runtime, amy: TestClient
) -> None:
    book(rt, "apt-1", new_york(2026, 12, 3, 10, 0))
    run_until(rt, rt.clock())
    page = amy.get("/staff/appointments/apt-1").text
    ahead, past = page.split("Messages so far")
    assert "Thu, Dec 3, 10:00 AM–10:30 AM" in page
    assert "Ana, see you Thu, Dec 3 10:00 AM in Forest Hills! Reply C to confirm." in ahead
    assert "1 segment · 123 characters" in ahead
    assert "Subject:</strong> Reminder: your appointment on Thu, Dec 3" in ahead
    assert past.count("Booking confirmation") == 2
    assert "<strong>planned</strong> 9:00 AM" in past and "<strong>sent</strong> 9:00 AM" in past
    assert amy.get("/staff/appointments/apt-404").status_code == 404


def test_an_inbox_reply_is_marked_handled_once(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    message_id = a_reply(rt, "Can I bring my daughter?", clock() - timedelta(minutes=5))
    inbox = amy.get("/staff/inbox")
    assert "Can I bring my daughter?" in inbox.text and "8:55 AM" in inbox.text
    handled = amy.post(f"/staff/inbox/{message_id}/handled", data={"csrf": csrf(inbox)})
    assert "Nothing waiting." in handled.text
    assert f"{AMY}, Mon, Nov 30, 9:00 AM" in handled.text
    again = amy.post(f"/staff/inbox/{message_id}/handled", data={"csrf": csrf(inbox)})
    assert flash(again) == "This reply was already marked as handled."
    with rt.sessions() as session:
        reply = session.get_one(InboundMessage, message_id)
        assert (reply.handled_by, reply.handled_at) == (AMY, clock())


def fail_confirmation_sms(rt: Runtime) -> int:
    with rt.sessions() as session:
        sms = session.scalars(
            select(Notification.id).where(
                Notification.kind == "confirmation", Notification.channel == "sms"
            )
        ).one()
        for source, to in ((Status.SCHEDULED, Status.QUEUED), (Status.QUEUED, Status.SENDING)):
            transition(session, [sms], [source], to, rt.clock())
        transition(
            session, [sms], [Status.SENDING], Status.FAILED, rt.clock(),
            "21211: invalid 'To' number", reason="invalid_number", error_code="21211",
        )  # fmt: skip
        session.commit()
    return sms


def test_a_failed_message_is_retried_now_with_fresh_attempts(
    rt: Runtime, amy: TestClient, clock: SimulatedClock, fake_twilio: FakeTwilio
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    failed_id = fail_confirmation_sms(rt)
    listed = amy.get("/staff/failed")
    assert "21211: invalid &#39;To&#39; number" in listed.text
    assert re.search(r'Failed<span class="count ?">1</span>', listed.text)
    clock.now += timedelta(minutes=14)
    amy.get("/staff")  # a page view keeps the session alive: it ends after 15 idle minutes
    clock.now += timedelta(minutes=14)
    retried = amy.post(f"/staff/failed/{failed_id}/retry", data={"csrf": csrf(listed)})
    assert flash(retried) == "Retrying: it goes out again within seconds."
    with rt.sessions() as session:
        row = session.get_one(Notification, failed_id)
        assert (row.status, row.due_at, row.attempts, row.reason) == (
            "scheduled", clock(), 0, None,
        )  # fmt: skip
        assert row.history[-1].detail == f"retried by {AMY}"
    again = amy.post(f"/staff/failed/{failed_id}/retry", data={"csrf": csrf(listed)})
    assert flash(again) == "This message is no longer failed: someone retried it already."
    run_until(rt, clock())
    assert [m["body"] for m in fake_twilio.messages] == [
        "North Shore Skin & Neurology: Ana, you're booked Mon, Nov 30 3:00 PM in Forest Hills."
        " Questions? (718) 555-0117. Reply STOP to opt out"
    ]


def test_a_failed_reminder_past_its_use_is_not_retried(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    failed_id = fail_confirmation_sms(rt)
    clock.now = TODAY_3PM + timedelta(minutes=1)
    log_in(amy)  # the morning's session ended long ago
    listed = amy.get("/staff/failed")
    retried = amy.post(f"/staff/failed/{failed_id}/retry", data={"csrf": csrf(listed)})
    assert flash(retried).startswith("Too late to retry this confirmation")


def test_opt_outs_list_the_patients_behind_each_number(
    rt: Runtime, amy: TestClient, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    with rt.sessions() as session:
        for phone, active in (("+17185550134", True), ("+17185550199", False)):
            session.add(
                SmsOptOut(phone=phone, active=active, source="keyword:STOP", opted_out_at=clock())
            )
        session.commit()
    page = amy.get("/staff/opt-outs")
    assert "(718) 555-0134" in page.text and "Ana Ruiz" in page.text
    assert "replied STOP" in page.text and "(718) 555-0199" not in page.text
    amy.post("/staff/location", data={"csrf": csrf(page), "location": "manhasset"})
    assert "No one has opted out." in amy.get("/staff/opt-outs").text


def test_the_stats_page_shows_each_location_by_week(rt: Runtime, amy: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    with rt.sessions() as session:
        remind(session, rt.clinic, "apt-1", ["sms"], AMY, rt.clock())
    run_until(rt, rt.clock())
    set_appointment(rt, "apt-1", confirmation="confirmed")
    page = amy.get("/staff/stats").text
    assert page.index("<h2>Manhasset</h2>") < page.index("<h2>Forest Hills</h2>")
    forest_hills = page.split("<h2>Forest Hills</h2>")[1]
    assert "Nov 30 <span" in forest_hills
    assert '<strong>100%</strong> <span class="muted small">1 of 1</span>' in forest_hills


def test_the_migration_makes_the_tables_the_models_describe(rt: Runtime) -> None:
    staff_tables = {"staff_users", "staff_sessions"}
    with rt.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    about_staff = [d for d in diffs if staff_tables & set(re.findall(r"staff_\w+", str(d)))]
    assert about_staff == []
