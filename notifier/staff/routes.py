"""The dashboard's pages. `create_app` mounts `router` under /staff; every path here is
relative to that.

Reading pages are GETs; every button is a POST form carrying the session's CSRF token and ends
in a redirect to a page that shows what happened (post/redirect/get: a reload never re-sends).
Signing in and out, and the dependencies that check both, are in signin.py.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ..clinic import ChannelName
from ..deps import Db, Rt
from ..ingest import ID_PATTERN
from ..remind import CannotRemind, RemindedRecently, remind
from ..runtime import Runtime
from ..stats import stats
from ..track import is_opted_out
from . import actions, board, sessions, signin
from .models import StaffSession
from .pages import templates
from .sessions import Flash
from .signin import Posted, Staff
from .timeline import UnknownAppointment, timeline

MAX_DAYS = 14
# Row ids in URLs: PostgreSQL's bigint ends at 2**63 - 1, and a larger number must not reach it.
RowId = Annotated[int, Path(ge=1, lt=2**63)]
AppointmentId = Annotated[str, Path(pattern=ID_PATTERN)]

router = APIRouter(include_in_schema=False)
router.include_router(signin.router)


@router.post("/location", name="staff_location")
def choose_location(request: Request, rt: Rt, s: Db, staff: Staff, form: Posted) -> Response:
    chosen = rt.clinic.location(str(form.get("location", "")))
    staff.location_id = chosen.id if chosen else None
    s.commit()
    return _back(request, form, "staff_board")


@router.get("", name="staff_board")
@router.get("/")
def day_board(
    request: Request, rt: Rt, s: Db, staff: Staff, days: int = 3, show: str = ""
) -> Response:
    days = min(max(days, 1), MAX_DAYS)
    now = rt.clock()
    if show == "unconfirmed":
        listed = board.unconfirmed_soon(s, rt.clinic, staff.location_id, now)
    else:
        listed = board.days_ahead(s, rt.clinic, staff.location_id, now, days)
    return _render(request, rt, s, staff, "board.html", days=listed, span=days, show=show)


@router.get("/appointments/{appointment_id}", name="staff_appointment")
def appointment_page(
    request: Request, rt: Rt, s: Db, staff: Staff, appointment_id: str
) -> Response:
    try:
        plan = timeline(rt, s, appointment_id, rt.clock())
    except UnknownAppointment as exc:
        return _render(request, rt, s, staff, "missing.html", 404, reason=str(exc))
    opted_out = is_opted_out(s, plan.appointment.patient.phone)
    return _render(request, rt, s, staff, "appointment.html", plan=plan, opted_out=opted_out)


@router.post("/appointments/{appointment_id}/remind", name="staff_remind")
def remind_now(
    request: Request,
    rt: Rt,
    s: Db,
    staff: Staff,
    form: Posted,
    appointment_id: AppointmentId,
    channel: Annotated[ChannelName, Form()],
) -> Response:
    outcome = _reminded(rt, s, appointment_id, channel, staff.user.email)
    sessions.set_flash(s, staff, outcome.level, outcome.text)
    return _back(request, form, "staff_appointment", appointment_id=appointment_id)


@router.get("/inbox", name="staff_inbox")
def inbox_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    waiting = board.inbox(s, rt.clinic, staff.location_id)
    handled = board.recently_handled(s, rt.clinic, staff.location_id)
    return _render(request, rt, s, staff, "inbox.html", waiting=waiting, handled=handled)


@router.post("/inbox/{message_id}/handled", name="staff_handled")
def handled(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, message_id: RowId
) -> Response:
    try:
        actions.mark_handled(s, message_id, staff.user.email, rt.clock())
    except actions.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
    return _back(request, form, "staff_inbox")


@router.get("/opt-outs", name="staff_opt_outs")
def opt_outs_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    listed = board.opt_outs(s, rt.clinic, staff.location_id)
    emails = board.email_opt_outs(s)
    return _render(request, rt, s, staff, "opt_outs.html", opt_outs=listed, email_opt_outs=emails)


@router.get("/failed", name="staff_failed")
def failed_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    listed = board.failures(s, rt.clinic, staff.location_id)
    return _render(request, rt, s, staff, "failed.html", failures=listed)


@router.post("/failed/{notification_id}/retry", name="staff_retry")
def retry(
    request: Request, rt: Rt, s: Db, staff: Staff, form: Posted, notification_id: RowId
) -> Response:
    try:
        actions.retry(s, notification_id, staff.user.email, rt.clock())
    except actions.Refused as exc:
        sessions.set_flash(s, staff, "error", str(exc))
    else:
        sessions.set_flash(s, staff, "ok", "Retrying: it goes out again within seconds.")
    return _back(request, form, "staff_failed")


@router.get("/stats", name="staff_stats")
def stats_page(request: Request, rt: Rt, s: Db, staff: Staff) -> Response:
    numbers = stats(s, rt.clinic, rt.clock())
    shown = [loc for loc in numbers["locations"] if staff.location_id in (None, loc["id"])]
    return _render(request, rt, s, staff, "stats.html", stats=shown)


def _render(
    request: Request,
    rt: Runtime,
    s: Session,
    staff: StaffSession,
    name: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    now = rt.clock()
    common = {
        "staff": staff,
        "practice": rt.clinic.practice.name,
        "locations": rt.clinic.locations,
        "scope": rt.clinic.location(staff.location_id or ""),
        "counts": board.counts(s, rt.clinic, staff.location_id, now),
        "flash": sessions.pop_flash(s, staff),
        "now": now,
        "zone": board.in_scope(rt.clinic, staff.location_id)[0].zone,
        "treatments": {t.id: t.name for t in rt.clinic.treatments},
    }
    return templates(rt).TemplateResponse(request, name, common | context, status_code=status)


def _reminded(
    rt: Runtime, s: Session, appointment_id: str, channel: ChannelName, email: str
) -> Flash:
    name = "SMS" if channel == "sms" else "email"
    try:
        result = remind(s, rt.clinic, appointment_id, [channel], email, rt.clock())
    except RemindedRecently as exc:
        return Flash("error", f"Not sent again: {exc.staff} sent an {name} reminder {exc.ago}.")
    except CannotRemind as exc:
        return Flash("error", f"No reminder: {exc}.")
    if result.created:
        return Flash("ok", f"Reminder by {name} on its way: it goes out within seconds.")
    return Flash("error", f"No {name} reminder: {result.refused[channel]}.")


def _back(request: Request, form: FormData, name: str, **params: str) -> Response:
    target = signin.local(str(form.get("back", ""))) or signin.path_to(request, name, **params)
    return RedirectResponse(target, 303)
