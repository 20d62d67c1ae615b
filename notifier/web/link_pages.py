"""The pages a patient's link opens: the question on GET, the answer on POST.

GET only shows the question: mail scanners open links, and must not confirm anything. A link
whose answer is already given (a confirmation link opened again after confirming) shows the
answer, not the question. Pages speak the patient's language (`templates/pages/link.{lang}.html`);
a link that names no appointment we can read speaks the browser's, English by default.
"""

from datetime import UTC
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from ..assets import asset_function
from ..deps import Db, Rt
from ..links import BadLink, read_token
from ..models import Appointment
from ..render import FALLBACK_LANGUAGE, format_clock, format_longdate
from ..runtime import Runtime
from ..states import Confirmation
from ..track import answer_by_link, linked_appointment

router = APIRouter()

PAGE: dict[str, Any] = {"content": {"text/html": {}}}
ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a link that is not valid (changed or cut)", **PAGE},
    410: {"description": "a link past its time, or its appointment is not booked", **PAGE},
}
TITLES = {"en": "Appointment", "es": "Cita"}
# The answer each link gives: once given, opening the link again shows it, not the question.
ANSWERED = {"confirm": Confirmation.CONFIRMED, "reschedule": Confirmation.WANTS_RESCHEDULE}


@router.get("/links/{token}", response_class=HTMLResponse, responses=ANSWERS)
def get_link(request: Request, token: str, rt: Rt, s: Db) -> HTMLResponse:
    return _link_page(request, rt, token, s, act=False)


@router.post("/links/{token}", response_class=HTMLResponse, responses=ANSWERS)
def post_link(request: Request, token: str, rt: Rt, s: Db) -> HTMLResponse:
    return _link_page(request, rt, token, s, act=True)


def _link_page(request: Request, rt: Runtime, token: str, s: Session, act: bool) -> HTMLResponse:
    languages = _languages(rt.settings.templates_dir)
    try:
        link = read_token(rt.settings.secret_key or "", token, rt.clock())
    except BadLink as exc:
        state = "expired" if exc.expired else "invalid"
        lang = _browser_language(request, languages)
        return _page(request, rt, state, lang, 410 if exc.expired else 400)
    appointment = linked_appointment(s, link.appointment_id)
    if appointment is None:
        return _page(request, rt, "gone", _browser_language(request, languages), 410)
    answered = appointment.confirmation == ANSWERED[link.action]
    if act:
        answer_by_link(s, appointment, link.action, rt.clock(), rt.settings.fhir_writeback_url)
    state = "done" if act or answered else "ask"
    language = appointment.patient.language
    lang = language if language in languages else FALLBACK_LANGUAGE
    visit = _visit(rt, appointment, lang)
    return _page(request, rt, state, lang, 200, action=link.action, **visit)


def _page(
    request: Request, rt: Runtime, state: str, lang: str, status: int, **visit: Any
) -> HTMLResponse:
    context = {
        "practice": rt.clinic.practice.name,
        "title": TITLES.get(lang, TITLES[FALLBACK_LANGUAGE]),
        "lang": lang,
        "state": state,
        "call": rt.clinic.locations,  # whom to call when the link names no visit we can read
    } | visit
    pages = _pages(rt.settings.templates_dir)
    return pages.TemplateResponse(request, f"link.{lang}.html", context, status)


def _visit(rt: Runtime, appointment: Appointment, lang: str) -> dict[str, Any]:
    location = rt.clinic.location(appointment.location_id)
    start = appointment.start_at.astimezone(location.zone if location else UTC)
    return {
        "day": format_longdate(start.date(), lang),
        "time": format_clock(start, lang),
        "place": f"{location.name}, {location.address}" if location else "",
        "call": [location] if location else rt.clinic.locations,
    }


def _browser_language(request: Request, languages: frozenset[str]) -> str:
    """The browser's first language that has its page ("es-US,es;q=0.9,en;q=0.8" → "es")."""
    for item in request.headers.get("accept-language", "")[:500].split(","):
        lang = item.split(";", 1)[0].strip().split("-", 1)[0].lower()
        if lang in languages:
            return lang
    return FALLBACK_LANGUAGE


@cache  # the languages with a page, read from the disk once
def _languages(templates_dir: Path) -> frozenset[str]:
    pages = (templates_dir / "pages").glob("link.*.html")
    return frozenset(page.name.split(".")[1] for page in pages)


@cache  # one template environment per directory, whose compiled templates it keeps
def _pages(templates_dir: Path) -> Jinja2Templates:
    pages = Jinja2Templates(directory=templates_dir / "pages")
    pages.env.globals["asset"] = asset_function(templates_dir)
    return pages
