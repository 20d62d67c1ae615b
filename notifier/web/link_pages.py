"""The pages a patient's link opens: the question on GET, the answer on POST.

GET only shows the question: mail scanners open links, and must not confirm anything.
"""

from datetime import UTC
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from ..deps import Db, Rt
from ..links import BadLink, read_token
from ..models import Appointment
from ..runtime import Runtime
from ..track import answer_by_link, linked_appointment

router = APIRouter()

PAGE: dict[str, Any] = {"content": {"text/html": {}}}
ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a link that is not valid (changed or cut)", **PAGE},
    410: {"description": "a link past its time, or its appointment is not booked", **PAGE},
}


@router.get("/links/{token}", response_class=HTMLResponse, responses=ANSWERS)
def get_link(request: Request, token: str, rt: Rt, s: Db) -> HTMLResponse:
    return _link_page(request, rt, token, s, act=False)


@router.post("/links/{token}", response_class=HTMLResponse, responses=ANSWERS)
def post_link(request: Request, token: str, rt: Rt, s: Db) -> HTMLResponse:
    return _link_page(request, rt, token, s, act=True)


def _link_page(request: Request, rt: Runtime, token: str, s: Session, act: bool) -> HTMLResponse:
    pages = _pages(rt.settings.templates_dir / "pages")
    context: dict[str, Any] = {"practice": rt.clinic.practice.name, "title": "Appointment"}
    try:
        link = read_token(rt.settings.secret_key or "", token, rt.clock())
    except BadLink as exc:
        state = "expired" if exc.expired else "invalid"
        return pages.TemplateResponse(
            request, "link.html", {**context, "state": state}, 410 if exc.expired else 400
        )
    appointment = linked_appointment(s, link.appointment_id)
    if appointment is None:
        return pages.TemplateResponse(request, "link.html", {**context, "state": "gone"}, 410)
    context |= _visit(rt, appointment) | {"action": link.action, "state": "done" if act else "ask"}
    if act:
        answer_by_link(s, appointment, link.action, rt.clock())
    return pages.TemplateResponse(request, "link.html", context)


def _visit(rt: Runtime, appointment: Appointment) -> dict[str, str]:
    location = rt.clinic.location(appointment.location_id)
    zone = location.zone if location else UTC
    return {
        "when": f"{appointment.start_at.astimezone(zone):%A, %B %-d at %-I:%M %p}",
        "location": f"{location.name}, {location.address}" if location else "",
        "phone": location.display_phone if location else "",
    }


@cache  # one template environment per directory, whose compiled templates it keeps
def _pages(directory: Path) -> Jinja2Templates:
    return Jinja2Templates(directory=directory)
