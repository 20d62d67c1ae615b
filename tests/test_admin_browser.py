"""An admin in real Chromium: opens the patient's page, sends a reminder, then finds both in the
audit log, narrows it to the appointment and downloads the CSV."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from notifier.runtime import Runtime
from tests import test_staff_browser
from tests.test_staff_browser import log_in
from tests.test_staff_web import AMY, TODAY_3PM, book

# The dashboard's browser fixtures: Chromium, the app on a loopback port, a tab.
browser, site, page = test_staff_browser.browser, test_staff_browser.site, test_staff_browser.page


def test_an_admin_reads_and_exports_the_audit_log(
    rt: Runtime,
    site: str,
    page: Page,
    tmp_path: Path,
) -> None:
    book(rt, "apt-1", TODAY_3PM)
    log_in(page, site)
    page.goto(f"{site}/staff/appointments/apt-1")
    page.get_by_role("button", name="Send SMS reminder").click()
    expect(page.get_by_role("status")).to_have_text(
        "SMS reminder sent: it goes out within seconds."
    )
    page.get_by_role("navigation").get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Audit log").click()
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="reminder")).to_contain_text("appointment:apt-1")
    expect(rows.filter(has_text="signin").first).to_contain_text(f"staff:{AMY}")
    page.get_by_label("About").fill("appointment:apt-1")
    page.get_by_role("form", name="Filter").get_by_role("button", name="Show").click()
    expect(rows.filter(has_text="signin")).to_have_count(0)
    expect(rows.filter(has_text="appointment.view")).to_have_count(2)  # before and after
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    saved = tmp_path / "audit.csv"
    download.value.save_as(saved)
    exported = saved.read_text().splitlines()
    assert exported[0] == "id,at,actor,address,action,subject,outcome,detail"
    assert [line.split(",")[4] for line in exported[1:]] == [
        "appointment.view", "reminder", "appointment.view",
    ]  # fmt: skip
