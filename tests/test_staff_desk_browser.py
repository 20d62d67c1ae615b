"""The front desk's day in real Chromium against the real stack: a receptionist cancels a
visit and its reminders are withdrawn, marks a no-show and undoes it, sees a landline (a signed
30006 status callback) move the patient's texts to email, reads what each reminder really did,
and finds a patient by a phone number typed any way."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from notifier.models import Appointment, Notification
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.states import Status
from notifier.track import opt_outs
from tests import test_staff_browser
from tests.conftest import new_york
from tests.fakes import FakeTwilio
from tests.test_staff_browser import log_in
from tests.test_staff_web import TODAY_3PM, book

# The dashboard's browser fixtures: Chromium, the served app, a signed-out tab.
browser, site, page = test_staff_browser.browser, test_staff_browser.site, test_staff_browser.page
THURSDAY_10AM = new_york(2026, 12, 3, 10, 0)


def reminders(rt: Runtime, apt: str) -> list[tuple[str, str, str]]:
    with rt.sessions() as s:
        rows = s.scalars(
            select(Notification).where(
                Notification.appointment_id == apt, Notification.kind == "reminder"
            )
        )
        return sorted((n.channel, n.slot, n.status) for n in rows)


def open_patient(page: Page, name: str = "Ana Ruiz") -> None:
    page.get_by_role("row").filter(has_text=name).first.get_by_role("link", name=name).click()


def test_a_receptionist_cancels_a_visit_and_its_reminders_are_withdrawn(
    rt: Runtime, site: str, page: Page
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    log_in(page, site)
    page.get_by_role("link", name="Next 7 days").click()
    open_patient(page)
    page.get_by_label("Cancel and tell the patient").check()
    page.get_by_role("button", name="Cancel visit").click()
    expect(page.get_by_role("status")).to_have_text(
        "Cancelled. The patient is told, and their reminders are withdrawn."
    )
    expect(page.locator(".page-head .badge")).to_have_text("Cancelled")
    assert reminders(rt, "apt-1") == [
        ("email", "48h", "cancelled"),
        ("sms", "2h", "cancelled"),
        ("sms", "48h", "cancelled"),
    ]
    withdrawn = page.get_by_role("row").filter(has_text="Reminder, 48h before")
    expect(withdrawn.first).to_contain_text("cancelled")
    expect(page.locator("#desk")).to_contain_text("Cancelled by amy@clinic.example")
    expect(page.get_by_role("button", name="Send SMS reminder")).to_have_count(0)


def test_a_receptionist_marks_a_no_show_from_the_board_and_undoes_it(
    rt: Runtime, site: str, page: Page, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    clock.now = TODAY_3PM + timedelta(minutes=15)
    log_in(page, site)
    row = page.get_by_role("row").filter(has_text="Ana Ruiz")
    row.get_by_role("button", name="No-show").click()
    expect(page.get_by_role("status")).to_have_text(
        "Marked as a no-show. Its aftercare is withdrawn."
    )
    expect(page.get_by_role("row").filter(has_text="Ana Ruiz")).to_contain_text("No-show")
    with rt.sessions() as s:
        assert s.get_one(Appointment, "apt-1").status == "no_show"
        kept = s.scalars(
            select(Notification).where(
                Notification.kind == "aftercare", Notification.status == Status.SCHEDULED
            )
        ).all()
        assert kept == []
    open_patient(page)
    page.get_by_role("button", name="Undo “Marked no-show”").click()
    expect(page.get_by_role("status")).to_have_text(
        "Undone: the visit is booked again (it was no-show)."
    )
    expect(page.locator(".page-head .badge")).to_have_text("Unconfirmed")
    expect(page.locator("#desk")).to_contain_text("(undone by amy@clinic.example")
    with rt.sessions() as s:
        assert s.get_one(Appointment, "apt-1").status == "booked"
        aftercare = s.scalars(
            select(Notification.channel).where(
                Notification.kind == "aftercare", Notification.status == Status.SCHEDULED
            )
        ).all()
        assert sorted(aftercare) == ["email", "sms"]


def status_callback(rt: Runtime, site: str, sid: str, status: str, code: str) -> int:
    """Twilio's status callback for `sid`, signed as Twilio signs it for the public URL."""
    form = {"MessageSid": sid, "MessageStatus": status, "ErrorCode": code, "AccountSid": "AC1"}
    url = rt.settings.public_url + "/twilio/status"
    signature = RequestValidator(rt.settings.twilio_auth_token or "").compute_signature(url, form)
    answer = httpx.post(
        f"{site}/twilio/status",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    return answer.status_code


def test_a_30006_failure_moves_the_patients_texts_to_email_and_hides_the_sms_button(
    rt: Runtime, site: str, page: Page, fake_twilio: FakeTwilio
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    run_until(rt, rt.clock())  # the booking confirmation goes out by SMS and email
    log_in(page, site)
    page.goto(f"{site}/staff/appointments/apt-1")
    expect(page.get_by_role("button", name="Send SMS reminder")).to_be_visible()
    (sms,) = fake_twilio.messages
    assert status_callback(rt, site, sms["sid"], "undelivered", "30006") == 204
    assert reminders(rt, "apt-1") == [
        ("email", "2h", "scheduled"),
        ("email", "48h", "scheduled"),
        ("sms", "2h", "cancelled"),
        ("sms", "48h", "cancelled"),
    ]
    page.reload()
    expect(page.get_by_role("button", name="Send SMS reminder")).to_have_count(0)
    expect(page.get_by_text("SMS: not sent: no mobile number")).to_be_visible()
    expect(page.get_by_text("not a mobile: no texts")).to_be_visible()
    confirmation = (
        page.get_by_role("row").filter(has_text="Booking confirmation").filter(has_text="SMS")
    )
    expect(confirmation).to_contain_text("landline or can't receive texts")
    page.get_by_role("link", name="Appointments", exact=True).click()
    page.get_by_role("link", name="Next 7 days").click()
    row = page.get_by_role("row").filter(has_text="Ana Ruiz")
    expect(row.get_by_role("button", name="Confirm")).to_be_visible()
    expect(row.get_by_role("button", name="Text reminder")).to_have_count(0)


def test_each_manual_reminder_says_what_really_happens(
    rt: Runtime, site: str, page: Page, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    book(rt, "apt-2", THURSDAY_10AM, patient_id="pat-2", phone=None)
    book(rt, "apt-3", THURSDAY_10AM, patient_id="pat-3", phone="+1 917 555 0162")
    log_in(page, site)
    page.goto(f"{site}/staff/appointments/apt-1")
    page.get_by_role("button", name="Send SMS reminder").click()
    expect(page.get_by_role("status")).to_have_text(
        "SMS reminder sent: it goes out within seconds."
    )
    page.goto(f"{site}/staff/appointments/apt-2")
    expect(page.get_by_role("button", name="Send SMS reminder")).to_have_count(0)
    expect(page.get_by_text("SMS: not sent: no mobile number")).to_be_visible()
    page.goto(f"{site}/staff/appointments/apt-3")
    with rt.sessions() as s:  # the patient texts STOP while the page is open
        opt_outs.register(s, "+19175550162", "keyword:STOP", clock())
        s.commit()
    page.get_by_role("button", name="Send SMS reminder").click()
    expect(page.get_by_role("status")).to_have_text(
        "SMS reminder not sent: patient opted out of texts."
    )
    expect(page.get_by_text("SMS: not sent: patient opted out of texts")).to_be_visible()
    expect(page.get_by_role("button", name="Send SMS reminder")).to_have_count(0)
    clock.now = new_york(2026, 11, 30, 22, 15)
    log_in(page, site)  # hours later: the session ended after 15 idle minutes
    book(rt, "apt-4", THURSDAY_10AM, patient_id="pat-4", phone="+1 646 555 0177")
    page.goto(f"{site}/staff/appointments/apt-4")
    expect(page.get_by_text("held until 8:00 AM (quiet hours)")).to_be_visible()
    page.get_by_role("button", name="Send SMS reminder").click()
    expect(page.get_by_role("status")).to_have_text(
        "SMS reminder held until 8:00 AM (quiet hours)."
    )


def test_find_a_patient_by_a_phone_number_written_any_way(
    rt: Runtime, site: str, page: Page
) -> None:
    book(rt, "apt-1", THURSDAY_10AM)
    book(rt, "apt-2", THURSDAY_10AM, patient_id="pat-2", phone="+1 516 555 0188")
    log_in(page, site)
    page.goto(f"{site}/staff/stats")
    search = page.get_by_role("search").get_by_label("Find a patient")
    search.fill("718.555.0134")
    search.press("Enter")
    expect(page.get_by_role("heading", name="Find a patient")).to_be_visible()
    results = page.get_by_role("row").filter(has_text="Ana Ruiz")
    expect(results).to_have_count(1)
    expect(results).to_contain_text("(718) 555-0134")
    results.get_by_role("link").click()
    assert page.url == f"{site}/staff/appointments/apt-1"
