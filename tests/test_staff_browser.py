"""A staff member at the dashboard, in real headless Chromium: logs in, finds today's patient,
texts a reminder and sees it arrive at (fake) Twilio, handles a reply; and the doors stay shut
for a wrong password, a forged form and an expired session.

The browser is Debian's chromium (scripts/ensure-test-tools), not one Playwright downloads.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from notifier.models import InboundMessage, Notification
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.staff.accounts import REFUSED
from notifier.web import create_app
from tests.fakes import FakeTwilio
from tests.test_staff_web import AMY, PASSWORD, TODAY_3PM, a_reply, book, new_staff

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-test-tools")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def site(rt: Runtime) -> Iterator[str]:
    """The web app with the dashboard, served on a free loopback port for the browser."""
    new_staff(rt)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(5000)
    yield tab
    context.close()


def log_in(page: Page, site: str, password: str = PASSWORD) -> None:
    page.goto(f"{site}/staff")
    page.get_by_label("Email").fill(AMY)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_find_todays_patient_text_a_reminder_and_see_it_arrive(
    rt: Runtime, site: str, page: Page, fake_twilio: FakeTwilio
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    book(rt, "apt-2", TODAY_3PM, "manhasset", phone="+1 516 555 0188")
    run_until(rt, rt.clock())  # the booking confirmations go out
    fake_twilio.reset()
    log_in(page, site)
    today = page.locator("section.day").first
    expect(today.get_by_role("heading")).to_contain_text("Today")
    ana = today.get_by_role("row").filter(has_text="Ana Ruiz").first
    expect(ana).to_contain_text("3:00 PM")
    expect(ana).to_contain_text("Unconfirmed")
    ana.get_by_role("link", name="Ana Ruiz").click()
    page.get_by_role("button", name="Send SMS reminder").click()
    expect(page.get_by_role("status")).to_have_text(
        "SMS reminder sent: it goes out within seconds."
    )
    run_until(rt, rt.clock())
    assert [(m["to"], ", reminder: " in m["body"]) for m in fake_twilio.messages] == [
        ("+17185550134", True)
    ]
    page.reload()
    sent = page.get_by_role("row").filter(has_text=f"Staff reminder by {AMY}")
    expect(sent).to_contain_text("sent")


def test_handle_a_reply_from_the_worklist(
    rt: Runtime, site: str, page: Page, clock: SimulatedClock
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    a_reply(rt, "Can I bring my daughter?", clock())
    log_in(page, site)
    page.get_by_role("navigation").get_by_role("link", name="Worklist").click()
    reply = page.get_by_role("listitem").filter(has_text="Can I bring my daughter?")
    reply.get_by_role("button", name="Mark handled").click()
    expect(page.get_by_text("Nothing waiting.")).to_be_visible()
    with rt.sessions() as session:
        assert session.scalars(select(InboundMessage.handled_by)).one() == AMY


def test_a_wrong_password_is_refused(site: str, page: Page) -> None:
    log_in(page, site, password="not the password")
    expect(page.get_by_role("alert")).to_have_text(REFUSED)
    assert page.url == f"{site}/staff/login?next=%2Fstaff"


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    rt: Runtime, site: str, page: Page
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    log_in(page, site)
    remind = f"{site}/staff/appointments/apt-1/remind"
    # page.request carries the browser's session cookie, as a forged cross-site form would.
    forms: list[dict[str, str | float | bool]] = [
        {"channel": "sms"},
        {"channel": "sms", "csrf": "forged"},
    ]
    for form in forms:
        assert page.request.post(remind, form=form).status == 403
    with rt.sessions() as session:
        assert session.scalar(select(Notification).where(Notification.kind == "manual")) is None
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    assert page.request.post(remind, form={"channel": "sms", "csrf": token}).ok


def test_an_expired_session_is_sent_back_to_the_login(
    site: str, page: Page, clock: SimulatedClock
) -> None:
    log_in(page, site)
    expect(page.get_by_role("heading", name="Appointments", exact=True)).to_be_visible()
    clock.now += timedelta(minutes=15)
    page.goto(f"{site}/staff/inbox")
    assert page.url == f"{site}/staff/login?next=%2Fstaff%2Finbox"
    expect(page.get_by_text("Staff sign-in")).to_be_visible()
