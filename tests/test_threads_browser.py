"""The front desk's worklist in real headless Chromium, on the real stack: a patient's text
comes in through Twilio's signed webhook, a receptionist answers it from the worklist, and the
fake Twilio server gets the answer once, even when the form is posted twice; a reschedule asked
for through an email's link waits on the worklist too."""

# The browser, page and site fixtures are test_staff_browser's, imported by name for pytest.
# ruff: noqa: F811
from __future__ import annotations

from datetime import timedelta

import httpx
from playwright.sync_api import Page, expect

from notifier.links import make_token
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from tests.conftest import new_york
from tests.fakes import FakeTwilio
from tests.test_staff_browser import browser, log_in, page, site  # noqa: F401
from tests.test_staff_web import TODAY_3PM, book
from tests.test_twilio_contract import fixture, twilio_signature

INBOUND = "/twilio/inbound"
PRACTICE = "North Shore Skin & Neurology"


def text_from_patient(rt: Runtime, site: str, body: str) -> None:
    """Ana's text, posted as Twilio posts it: form-encoded, signed over our public URL."""
    sent = fixture("inbound-sms.txt", Body=body, MessageSid="SM" + "7" * 32)
    answer = httpx.post(
        site + INBOUND,
        content=sent.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(rt, INBOUND, sent),
        },
    )
    assert answer.status_code == 200, answer.text


def one_line(html: str) -> str:
    return " ".join(html.split())


def test_a_text_is_answered_from_the_worklist_and_twilio_gets_the_answer_once(
    rt: Runtime, site: str, page: Page, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    run_until(rt, clock())  # the booking confirmations go out
    fake_twilio.reset()
    text_from_patient(rt, site, "Can I bring my daughter?")
    log_in(page, site)
    page.get_by_role("navigation").get_by_role("link", name="Worklist").click()
    item = page.get_by_role("listitem").filter(has_text="Can I bring my daughter?")
    expect(item).to_contain_text("Reply not understood")
    expect(item).to_contain_text("Ana Ruiz")
    form = item.locator("form.answer")
    fields = {
        name: form.locator(f"input[name={name}]").get_attribute("value") or ""
        for name in ("csrf", "form_id", "reply_id", "back")
    }
    item.get_by_label("Answer Ana").fill("Of course, see you at 3!")
    item.get_by_role("button", name="Send answer").click()
    expect(page.get_by_role("status")).to_have_text("Sent: your text goes out within seconds.")
    # The same form again, as a second press or a resent request would post it.
    again = page.request.post(
        f"{site}/staff/patients/pat-apt-1/messages",
        form={**fields, "text": "Of course, see you at 3!"},
    )
    assert again.ok
    assert "Already sent: that message goes out once, not twice." in one_line(again.text())
    run_until(rt, clock())
    assert [(m["to"], m["body"]) for m in fake_twilio.messages] == [
        ("+17185550134", f"{PRACTICE}, Forest Hills: Of course, see you at 3!")
    ]
    page.goto(f"{site}/staff/worklist")
    expect(page.get_by_text("Nothing waiting.")).to_be_visible()
    page.get_by_role("row").filter(has_text="Can I bring my daughter?").get_by_role(
        "link", name="Ana Ruiz"
    ).click()
    conversation = page.get_by_role("region", name="Conversation")
    expect(conversation).to_contain_text("Can I bring my daughter?")
    expect(conversation).to_contain_text("Of course, see you at 3!")


def test_a_reschedule_asked_for_by_email_link_shows_on_the_worklist(
    rt: Runtime, site: str, page: Page
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    token = make_token("test-secret", "apt-1", "reschedule", TODAY_3PM + timedelta(hours=1))
    page.goto(f"{site}/links/{token}")
    page.locator("form button").click()
    log_in(page, site)
    page.goto(f"{site}/staff/inbox")  # the old address leads to the worklist
    item = page.get_by_role("listitem").filter(has_text="Wants another time (by email link)")
    expect(item).to_contain_text("Ana Ruiz")
    item.get_by_role("button", name="Rebooked — mark handled").click()
    expect(page.get_by_text("Nothing waiting.")).to_be_visible()


def test_inside_quiet_hours_a_fresh_text_may_be_answered_now_from_the_conversation(
    rt: Runtime, site: str, page: Page, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM + timedelta(days=1))
    run_until(rt, clock())
    fake_twilio.reset()
    clock.now = new_york(2026, 11, 30, 22, 10)
    text_from_patient(rt, site, "Do I need to fast before?")
    log_in(page, site)
    page.goto(f"{site}/staff/worklist")
    page.get_by_role("listitem").filter(has_text="Do I need to fast before?").get_by_role(
        "link", name="Ana Ruiz"
    ).click()
    expect(page.get_by_role("note")).to_contain_text("held until 8:00 AM")
    page.get_by_label("Your text").fill("No need to fast. See you tomorrow!")
    page.get_by_role("button", name="Send now (answering their text)").click()
    expect(page.get_by_role("status")).to_have_text("Sent: your text goes out within seconds.")
    run_until(rt, clock())
    assert [m["body"] for m in fake_twilio.messages] == [
        f"{PRACTICE}, Forest Hills: No need to fast. See you tomorrow!"
    ]
    expect(page.get_by_role("region", name="Conversation")).to_contain_text(
        "No need to fast. See you tomorrow!"
    )
