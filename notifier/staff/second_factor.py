"""The second step of signing in: a code from the authenticator app (or a recovery code), and
the enrolment of a new app (QR code, a first code, recovery codes shown once). Reached only
with the half-done sign-in cookie that a right password sets (cookies.py)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from ..deps import Db, Rt
from ..runtime import Runtime
from ..store import staff as staff_store
from . import cookies, throttle, twofactor
from .models import StaffUser
from .pages import templates
from .signin import LOGIN_COOKIE, finish_sign_in, login_form_ok, path_to

WRONG_CODE = "That code did not work. Codes change every 30 seconds: try the newest one."

router = APIRouter(include_in_schema=False)


@router.get("/login/code", name="staff_login_code")
def code_page(request: Request, rt: Rt, s: Db) -> Response:
    found = _pending(request, rt, s)
    if found is None or found[1].totp_secret is None:
        return _start_again(request)
    return _page(request, rt, "login_code.html")


@router.post("/login/code")
def code(
    request: Request,
    rt: Rt,
    s: Db,
    code: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    login_form_ok(request, csrf)
    found = _pending(request, rt, s)
    if found is None or found[1].totp_secret is None:
        return _start_again(request)
    pending, user = found
    now = rt.clock()
    keys = throttle.for_code(user.id)
    if not (throttle.admits(s, keys, now) and twofactor.accept(s, user, code, now)):
        s.commit()
        return _page(request, rt, "login_code.html", 401, error=WRONG_CODE)
    throttle.succeeded(s, keys, now)
    s.commit()
    landing = pending.next or path_to(request, "staff_board")
    return finish_sign_in(request, rt, s, user, RedirectResponse(landing, 303))


@router.get("/login/enrol", name="staff_login_enrol")
def enrol_page(request: Request, rt: Rt, s: Db) -> Response:
    found = _pending(request, rt, s)
    if found is None or found[0].new_secret is None:
        return _start_again(request)
    return _enrol_form(request, rt, found[0].new_secret, found[1])


@router.post("/login/enrol")
def enrol(
    request: Request,
    rt: Rt,
    s: Db,
    code: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    login_form_ok(request, csrf)
    found = _pending(request, rt, s)
    if found is None or found[0].new_secret is None:
        return _start_again(request)
    pending, user = found
    now = rt.clock()
    keys = throttle.for_code(user.id)
    allowed = throttle.admits(s, keys, now)
    codes = twofactor.enrol(s, user, pending.new_secret or "", code, now) if allowed else []
    if not codes:
        return _enrol_form(request, rt, pending.new_secret or "", user, WRONG_CODE)
    throttle.succeeded(s, keys, now)
    s.commit()
    landing = pending.next or path_to(request, "staff_board")
    shown = _page(request, rt, "recovery_codes.html", codes=codes, landing=landing)
    return finish_sign_in(request, rt, s, user, shown)


def _pending(request: Request, rt: Runtime, s: Session) -> tuple[cookies.Pending, StaffUser] | None:
    pending = cookies.pending(rt.settings.secret_key or "", request.cookies.get(cookies.PENDING))
    if pending is None:
        return None
    user = staff_store.user_by_id(s, pending.user_id)
    if user is None or not user.active:
        return None
    return pending, user


def _enrol_form(
    request: Request, rt: Runtime, secret: str, user: StaffUser, error: str | None = None
) -> Response:
    qr = twofactor.enrolment_qr(secret, user.email, rt.clinic.practice.name)
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    status = 200 if error is None else 401
    return _page(request, rt, "enrol.html", status, qr=qr, secret=grouped, error=error)


def _page(request: Request, rt: Runtime, name: str, status: int = 200, **context: Any) -> Response:
    common = {
        "practice": rt.clinic.practice.name,
        "login_csrf": request.cookies.get(LOGIN_COOKIE, ""),
    }
    return templates(rt).TemplateResponse(request, name, common | context, status_code=status)


def _start_again(request: Request) -> Response:
    """No half-done sign-in (or it is more than five minutes old): back to the password."""
    return RedirectResponse(path_to(request, "staff_login"), 303)
