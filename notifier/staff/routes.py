"""The dashboard's pages. web.py mounts them under /staff; every path here is relative to that.

Reading pages are GETs; every button is a POST form carrying the session's CSRF token and ends
in a redirect to a page that shows what happened (post/redirect/get: a reload never re-sends).
"""

import secrets
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ..clinic import ChannelName
from ..ingest import ID_PATTERN
from ..remind import CannotRemind, RemindedRecently, remind
from ..runtime import Runtime
from ..stats import stats
from ..track import is_opted_out
from . import accounts, actions, board, sessions
from .models import StaffSession
from .pages import templates
from .sessions import Flash
from .timeline import UnknownAppointment, timeline

# The login form's CSRF token, before there is a session to keep it in (double-submit cookie).
LOGIN_COOKIE = "notifier_login"
MAX_DAYS = 14
# Row ids in URLs: PostgreSQL's bigint ends at 2**63 - 1, and a larger number must not reach it.
RowId = Annotated[int, Path(ge=1, lt=2**63)]
AppointmentId = Annotated[str, Path(pattern=ID_PATTERN)]


def router(rt: Runtime) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    pages = templates(rt)

    def database() -> Iterator[Session]:
        with rt.sessions() as s:
            yield s

    Db = Annotated[Session, Depends(database)]

    def signed_in(request: Request, s: Db) -> StaffSession:
        token = request.cookies.get(sessions.COOKIE)
        row = sessions.current(s, token, rt.clock()) if token else None
        if row is None:
            login = request.url_for("staff_login").include_query_params(next=_here(request))
            raise HTTPException(303, "sign in first", {"Location": str(login)})
        return row

    Staff = Annotated[StaffSession, Depends(signed_in)]

    async def posted(request: Request, staff: Staff) -> FormData:
        form = await request.form()
        if not sessions.csrf_ok(staff, form.get("csrf")):
            raise HTTPException(403, "This form is out of date: reload the page and try again.")
        return form

    Posted = Annotated[FormData, Depends(posted)]

    def render(
        request: Request,
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
        return pages.TemplateResponse(request, name, common | context, status_code=status)

    def login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        context = {
            "practice": rt.clinic.practice.name,
            "login_csrf": token,
            "next": request.query_params.get("next", ""),
            "error": error,
        }
        response = pages.TemplateResponse(request, "login.html", context, status_code=status)
        _set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, samesite="strict")
        return response

    @routes.get("/login", name="staff_login")
    def login_page(request: Request) -> Response:
        return login_form(request)

    @routes.post("/login")
    def login(
        request: Request,
        s: Db,
        email: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "",
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not (expected and sessions.same_token(expected, csrf)):
            raise HTTPException(403, "This login form is out of date: reload the page.")
        try:
            user = accounts.authenticate(s, email, password, rt.clock())
        except accounts.LoginRefused as exc:
            return login_form(request, str(exc), status=401)
        token = sessions.start(s, user, rt.clock())
        response = RedirectResponse(_local(next) or _path(request, "staff_board"), 303)
        _set_cookie(
            request, response, sessions.COOKIE, token, int(sessions.LIFETIME.total_seconds())
        )
        response.delete_cookie(LOGIN_COOKIE, path=_path(request, "staff_board"))
        return response

    @routes.post("/logout", name="staff_logout")
    def logout(request: Request, s: Db, form: Posted) -> Response:
        sessions.end(s, request.cookies.get(sessions.COOKIE, ""))
        response = RedirectResponse(_path(request, "staff_login"), 303)
        response.delete_cookie(sessions.COOKIE, path=_path(request, "staff_board"))
        return response

    @routes.post("/location", name="staff_location")
    def choose_location(request: Request, s: Db, staff: Staff, form: Posted) -> Response:
        chosen = rt.clinic.location(str(form.get("location", "")))
        staff.location_id = chosen.id if chosen else None
        s.commit()
        return _back(request, form, "staff_board")

    @routes.get("", name="staff_board")
    @routes.get("/")
    def day_board(request: Request, s: Db, staff: Staff, days: int = 3, show: str = "") -> Response:
        days = min(max(days, 1), MAX_DAYS)
        now = rt.clock()
        if show == "unconfirmed":
            listed = board.unconfirmed_soon(s, rt.clinic, staff.location_id, now)
        else:
            listed = board.days_ahead(s, rt.clinic, staff.location_id, now, days)
        return render(request, s, staff, "board.html", days=listed, span=days, show=show)

    @routes.get("/appointments/{appointment_id}", name="staff_appointment")
    def appointment_page(request: Request, s: Db, staff: Staff, appointment_id: str) -> Response:
        try:
            plan = timeline(rt, s, appointment_id, rt.clock())
        except UnknownAppointment as exc:
            return render(request, s, staff, "missing.html", 404, reason=str(exc))
        opted_out = is_opted_out(s, plan.appointment.patient.phone)
        return render(request, s, staff, "appointment.html", plan=plan, opted_out=opted_out)

    def reminded(s: Session, appointment_id: str, channel: ChannelName, email: str) -> Flash:
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

    @routes.post("/appointments/{appointment_id}/remind", name="staff_remind")
    def remind_now(
        request: Request,
        s: Db,
        staff: Staff,
        form: Posted,
        appointment_id: AppointmentId,
        channel: Annotated[ChannelName, Form()],
    ) -> Response:
        outcome = reminded(s, appointment_id, channel, staff.user.email)
        sessions.set_flash(s, staff, outcome.level, outcome.text)
        return _back(request, form, "staff_appointment", appointment_id=appointment_id)

    @routes.get("/inbox", name="staff_inbox")
    def inbox_page(request: Request, s: Db, staff: Staff) -> Response:
        waiting = board.inbox(s, rt.clinic, staff.location_id)
        handled = board.recently_handled(s, rt.clinic, staff.location_id)
        return render(request, s, staff, "inbox.html", waiting=waiting, handled=handled)

    @routes.post("/inbox/{message_id}/handled", name="staff_handled")
    def handled(request: Request, s: Db, staff: Staff, form: Posted, message_id: RowId) -> Response:
        try:
            actions.mark_handled(s, message_id, staff.user.email, rt.clock())
        except actions.Refused as exc:
            sessions.set_flash(s, staff, "error", str(exc))
        return _back(request, form, "staff_inbox")

    @routes.get("/opt-outs", name="staff_opt_outs")
    def opt_outs_page(request: Request, s: Db, staff: Staff) -> Response:
        listed = board.opt_outs(s, rt.clinic, staff.location_id)
        return render(request, s, staff, "opt_outs.html", opt_outs=listed)

    @routes.get("/failed", name="staff_failed")
    def failed_page(request: Request, s: Db, staff: Staff) -> Response:
        listed = board.failures(s, rt.clinic, staff.location_id)
        return render(request, s, staff, "failed.html", failures=listed)

    @routes.post("/failed/{notification_id}/retry", name="staff_retry")
    def retry(
        request: Request, s: Db, staff: Staff, form: Posted, notification_id: RowId
    ) -> Response:
        try:
            actions.retry(s, notification_id, staff.user.email, rt.clock())
        except actions.Refused as exc:
            sessions.set_flash(s, staff, "error", str(exc))
        else:
            sessions.set_flash(s, staff, "ok", "Retrying: it goes out again within seconds.")
        return _back(request, form, "staff_failed")

    @routes.get("/stats", name="staff_stats")
    def stats_page(request: Request, s: Db, staff: Staff) -> Response:
        numbers = stats(s, rt.clinic, rt.clock())
        shown = [loc for loc in numbers["locations"] if staff.location_id in (None, loc["id"])]
        return render(request, s, staff, "stats.html", stats=shown)

    return routes


def _path(request: Request, name: str, **params: str) -> str:
    return str(request.url_for(name, **params).path)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _local(target: str) -> str | None:
    """`target` if it is a path on this site; anything else could send staff to another one."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _back(request: Request, form: FormData, name: str, **params: str) -> Response:
    target = _local(str(form.get("back", ""))) or _path(request, name, **params)
    return RedirectResponse(target, 303)


def _set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    max_age: int,
    samesite: Literal["lax", "strict"] = "lax",
) -> None:
    # Secure whenever the browser came over HTTPS (a proxy says so with X-Forwarded-Proto).
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=_path(request, "staff_board"),
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
    )
