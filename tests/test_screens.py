"""Every staff page and every patient link page, in Chromium at a phone's 390×844 and a desk's
1280×900: nothing scrolls sideways, axe-core finds no serious or critical WCAG problem, the
menu folds on a phone, the board's visits are cards there, the keyboard can skip to the content
and sees where it is, and no page needs an inline script or style.

axe-core is the npm package's axe.min.js, installed pinned by scripts/ensure-test-tools; the
staff pages swept are every GET route under /staff, so a new page is checked without a line
here (a new kind of path parameter needs its sample value in SAMPLES).

With NOTIFIER_SCREENSHOTS=docs/images (scripts/screenshots), the screenshot test writes the
docs' pictures there; without it, to a temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect
from sqlalchemy import select

from notifier.links import make_token
from notifier.models import Appointment
from notifier.runtime import Runtime
from notifier.web import create_app
from tests import test_staff_browser
from tests.clinic_day import MONDAY, a_clinic_day

AXE = Path(__file__).resolve().parents[1] / ".cache/axe/node_modules/axe-core/axe.min.js"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESK: ViewportSize = {"width": 1280, "height": 900}
# A value for each path parameter of a staff page, naming something in the clinic day.
SAMPLES = {"appointment_id": "apt-1", "patient_id": "pat-apt-1"}
# Pages the routes alone do not show: the board's other views, a page for a visit not found.
MISSING = "/staff/appointments/no-such-visit"
MORE_PAGES = ["/staff?show=unconfirmed", "/staff?days=7", MISSING]
FAILING_IMPACTS = ("serious", "critical")

# One browser for the module, and the app on a port of its own: the staff browser tests' fixtures.
browser = test_staff_browser.browser
site = test_staff_browser.site


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Pages look the same on either database: SQLite alone keeps this module quick."""
    return f"sqlite:///{tmp_path}/notifier.db"


@pytest.fixture(scope="module")
def axe() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run scripts/ensure-test-tools")
    return AXE.read_text()


@pytest.fixture
def day(rt: Runtime, site: str) -> str:
    a_clinic_day(rt)
    return site


def tab(browser: Browser, viewport: ViewportSize, **options: Any) -> Page:
    # axe goes in as an inline script: bypass_csp lets it in whatever policy the app sends.
    context = browser.new_context(viewport=viewport, bypass_csp=True, **options)
    page = context.new_page()
    page.set_default_timeout(5000)
    return page


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    page = tab(browser, PHONE)
    yield page
    page.context.close()


@pytest.fixture
def desk(browser: Browser) -> Iterator[Page]:
    page = tab(browser, DESK)
    yield page
    page.context.close()


def log_in(page: Page, base: str) -> None:
    """Signed in, and the board shown: what follows never races the sign-in."""
    test_staff_browser.log_in(page, base)
    expect(page.get_by_role("heading", name="Appointments", exact=True)).to_be_visible()


def staff_pages(rt: Runtime) -> list[str]:
    """Every page of the dashboard: its GET routes, with sample values for their parameters."""
    pages = []
    for route in create_app(rt).routes:
        if not isinstance(route, APIRoute) or "GET" not in (route.methods or ()):
            continue
        if not route.path.startswith("/staff/") or route.path in ("/staff/", "/staff/login"):
            continue
        unknown = set(route.param_convertors) - set(SAMPLES)
        assert not unknown, f"{route.path}: add a sample value for {unknown} to SAMPLES"
        pages.append(route.path.format(**SAMPLES))
    return ["/staff", *pages, *MORE_PAGES]


def link(rt: Runtime, appointment_id: str, action: str, days: int = 3) -> str:
    expires = MONDAY + timedelta(days=days)
    return "/links/" + make_token(rt.settings.secret_key or "", appointment_id, action, expires)


def link_pages(rt: Runtime) -> list[str]:
    """The question in English and Spanish, a stale link, a mangled one, a cancelled visit."""
    return [
        link(rt, "apt-1", "confirm"),
        link(rt, "apt-1", "reschedule"),
        link(rt, "apt-5", "confirm"),
        link(rt, "apt-2", "confirm"),  # already confirmed: the answer, not the question
        link(rt, "apt-1", "confirm", days=-1),
        link(rt, "apt-1", "confirm")[:-4] + "AAAA",
        link(rt, "apt-3", "confirm"),
    ]


def problems(page: Page, axe: str, url: str) -> list[str]:
    """What is wrong with the page as it stands: sideways scrolling, and axe's findings."""
    found = []
    width, room = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if width > room:
        found.append(f"{url}: scrolls sideways ({width} px wide in {room} px)")
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(content=axe)
    result = page.evaluate("axe.run(document)")
    assert result["passes"], f"{url}: axe checked nothing"
    for violation in result["violations"]:
        if violation["impact"] in FAILING_IMPACTS:
            where = ", ".join(" ".join(node["target"]) for node in violation["nodes"][:3])
            found.append(f"{url}: {violation['impact']} {violation['id']}: {where}")
    return found + [f"{url}: {low}" for low in too_little_contrast(result["incomplete"])]


def too_little_contrast(review: list[dict[str, Any]]) -> list[str]:
    """Contrast axe measured but left for a person to judge: it does so for text of one or two
    characters (the menu's counts), which may be an icon. Ours are numbers: judged here."""
    low = []
    for rule in review:
        for node in rule["nodes"] if rule["id"] == "color-contrast" else ():
            for check in node["any"]:
                data = check.get("data") or {}
                needed = float(str(data.get("expectedContrastRatio", "0:1")).split(":")[0])
                if data.get("contrastRatio") and data["contrastRatio"] < needed:
                    target = " ".join(node["target"])
                    low.append(f"contrast {data['contrastRatio']}:1 < {needed}:1 at {target}")
    return low


def visit(page: Page, base: str, url: str) -> None:
    """The page, as its visitor gets it: a staff page answers 200 (or 404 for the visit that
    is not there), a link page may refuse its link (400, 410), none fails."""
    answer = page.goto(base + url)
    assert answer is not None, url
    refused = answer.status >= 500 or (answer.status >= 400 and url.startswith("/staff"))
    assert not refused or url == MISSING, f"{url}: {answer.status}"
    assert url.startswith("/staff/login") or "/login" not in page.url, f"{url}: signed out"


@pytest.mark.parametrize("viewport", [PHONE, DESK], ids=["390px", "1280px"])
def test_every_page_fits_the_screen_and_passes_axe(
    rt: Runtime,
    day: str,
    browser: Browser,
    axe: str,
    viewport: ViewportSize,
) -> None:
    page = tab(browser, viewport)
    found = []
    visit(page, day, "/staff/login")
    found += problems(page, axe, "/staff/login")
    log_in(page, day)
    for url in staff_pages(rt):
        visit(page, day, url)
        found += problems(page, axe, url)
        if viewport == PHONE and url == "/staff":
            page.get_by_text("Menu", exact=True).click()
            found += problems(page, axe, "/staff with the menu open")
    for url in link_pages(rt):
        visit(page, day, url)
        found += problems(page, axe, url)
        if page.get_by_role("button").count():
            page.get_by_role("button").click()
            found += problems(page, axe, f"{url} answered")
    page.context.close()
    assert not found, "\n".join(found)


def test_nothing_scrolls_sideways_even_at_320px(rt: Runtime, day: str, browser: Browser) -> None:
    """WCAG's reflow width (1.4.10): 320 CSS pixels, a small phone or a desk zoomed to 400%."""
    page = tab(browser, {"width": 320, "height": 640})
    log_in(page, day)
    wide = []
    for url in [*staff_pages(rt), *link_pages(rt)]:
        visit(page, day, url)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 320:
            wide.append(f"{url}: {width} px")
    page.context.close()
    assert wide == []


def test_on_a_phone_the_menu_folds_and_each_visit_is_a_card(day: str, phone: Page) -> None:
    log_in(phone, day)
    worklist = phone.get_by_role("navigation").get_by_role("link", name="Worklist")
    expect(worklist).to_be_hidden()
    phone.get_by_text("Menu", exact=True).click()
    expect(worklist).to_be_visible()
    phone.get_by_text("Menu", exact=True).click()
    expect(worklist).to_be_hidden()

    cards = phone.locator("section.day").first.locator("tbody tr")
    expect(cards).to_have_count(4)
    bottom = 0.0
    for card in cards.all():
        box = card.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["y"] >= bottom  # one below the other, not side by side
        bottom = box["y"] + box["height"]
        for part in (card.locator(".badge"), card.get_by_role("link")):
            inner = part.first.bounding_box()
            assert inner is not None and inner["x"] + inner["width"] <= box["x"] + box["width"]
    ana = cards.filter(has_text="Ana Ruiz")
    expect(ana.locator(".badge")).to_have_text("Unconfirmed")
    expect(ana.get_by_role("button", name="Text reminder")).to_be_visible()
    expect(phone.locator("section.day thead").first).not_to_be_in_viewport()


def test_on_a_desk_the_menu_is_open_and_the_board_is_a_table(day: str, desk: Page) -> None:
    log_in(desk, day)
    expect(desk.get_by_text("Menu", exact=True)).to_be_hidden()
    expect(desk.get_by_role("navigation").get_by_role("link", name="Worklist")).to_be_visible()
    ana = desk.get_by_role("row").filter(has_text="Ana Ruiz")
    boxes = [cell.bounding_box() for cell in ana.locator("td").all()]
    tops = {round(box["y"]) for box in boxes if box}
    assert len(tops) == 1, "the row's cells sit side by side"
    expect(desk.get_by_role("columnheader", name="Status").first).to_be_visible()


@pytest.mark.parametrize("viewport", [PHONE, DESK], ids=["390px", "1280px"])
def test_the_keyboard_skips_to_the_content_and_sees_where_it_is(
    day: str,
    browser: Browser,
    viewport: ViewportSize,
) -> None:
    page = tab(browser, viewport)
    log_in(page, day)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")  # the first thing in the content: a card or a tab of the board
    ring = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert ring[0] != "none" and ring[1] >= 2, ring
    page.context.close()


def test_no_page_needs_an_inline_script_or_style(rt: Runtime, day: str, browser: Browser) -> None:
    """The policy the app may send (script-src 'self', style-src 'self'): nothing is refused."""
    context: BrowserContext = browser.new_context(viewport=DESK)
    refused: list[str] = []
    loaded: list[str] = []

    def strict(route: Any) -> None:
        answer = route.fetch(max_redirects=0)
        headers = answer.headers | {
            "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'"
        }
        route.fulfill(response=answer, headers=headers)

    page = context.new_page()
    page.route(f"{day}/**", strict)
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.on("response", lambda r: loaded.append(r.url) if "/static/" in r.url and r.ok else None)
    log_in(page, day)
    for url in [*staff_pages(rt), *link_pages(rt)]:
        visit(page, day, url)
    context.close()
    assert refused == []
    assert any("/static/staff.js" in url for url in loaded)
    assert any("/static/patient.css" in url for url in loaded)


def test_a_spanish_speaking_patient_confirms_in_spanish_and_the_link_then_says_so(
    rt: Runtime, day: str, phone: Page
) -> None:
    confirm = day + link(rt, "apt-5", "confirm")
    phone.goto(confirm)
    expect(phone.locator("html")).to_have_attribute("lang", "es")
    expect(phone.get_by_role("heading")).to_have_text("¿Confirma su cita?")
    expect(phone.get_by_text("martes 1 de diciembre a las 9:30")).to_be_visible()
    call = phone.get_by_role("link", name="(718) 555-0117")
    expect(call).to_have_attribute("href", "tel:+17185550117")
    phone.get_by_role("button", name="Sí, ahí estaré").click()
    expect(phone.get_by_role("heading")).to_have_text("Gracias, su cita está confirmada.")
    phone.goto(confirm)  # opened again from the email, later
    expect(phone.get_by_role("heading")).to_have_text("Gracias, su cita está confirmada.")
    expect(phone.get_by_role("button")).to_have_count(0)
    with rt.sessions() as session:
        answer = session.scalar(select(Appointment.confirmation).where(Appointment.id == "apt-5"))
    assert answer == "confirmed"


def screenshot_pages(rt: Runtime) -> dict[str, str]:
    """The board, the worklist and the conversation of the morning's first patient."""
    conversation = "/staff/patients/{patient_id}/conversation".format(**SAMPLES)
    return {"board": "/staff", "worklist": "/staff/worklist", "conversation": conversation}


@pytest.mark.parametrize("viewport", [PHONE, DESK], ids=["390px", "1280px"])
def test_screenshots_of_the_board_the_worklist_and_a_conversation(
    rt: Runtime,
    day: str,
    browser: Browser,
    viewport: ViewportSize,
    tmp_path: Path,
) -> None:
    images = Path(os.environ.get("NOTIFIER_SCREENSHOTS") or tmp_path)
    page = tab(browser, viewport, device_scale_factor=1)
    log_in(page, day)
    for name, url in screenshot_pages(rt).items():
        visit(page, day, url)
        shot = images / f"{name}-{viewport['width']}.png"
        page.screenshot(path=shot, full_page=viewport == PHONE)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.context.close()
