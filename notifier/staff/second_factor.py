"""The second step of signing in: a code from the authenticator app (or a recovery code), and
the enrolment of a new app (QR code, a first code, recovery codes shown once). The sign-in
pages are reached only with the half-done sign-in cookie that a right password sets
(cookies.py); /staff/two-factor lets a signed-in staff member turn it on by choice, or make new
recovery codes."""

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
from .signin import LOGIN_COOKIE, Posted, Staff, finish_sign_in, login_form_ok, path_to

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


@router.get("/two-factor", name="staff_two_factor")
def own_two_factor(request: Request, rt: Rt, staff: Staff) -> Response:
    user = staff.user
    if user.totp_secret is None:
        secret = twofactor.new_secret()
        token = cookies.enrolment_token(rt.settings.secret_key or "", user.id, secret)
        return _enrol_form(request, rt, secret, user, csrf=staff.csrf_token, token=token)
    return _page(request, rt, "two_factor_on.html", csrf=staff.csrf_token)


@router.post("/two-factor")
def own_enrolment(request: Request, rt: Rt, s: Db, staff: Staff, form: Posted) -> Response:
    user, now = staff.user, rt.clock()
    token = str(form.get("secret", ""))
    secret = cookies.enrolment_secret(rt.settings.secret_key or "", token, user.id)
    if user.totp_secret is not None or secret is None:
        return RedirectResponse(path_to(request, "staff_two_factor"), 303)
    codes = twofactor.enrol(s, user, secret, str(form.get("code", ""))[:64], now)
    if not codes:
        return _enrol_form(request, rt, secret, user, WRONG_CODE, staff.csrf_token, token)
    s.commit()
    landing = path_to(request, "staff_board")
    return _page(request, rt, "recovery_codes.html", codes=codes, landing=landing)


@router.post("/two-factor/recovery-codes", name="staff_recovery_codes")
def new_recovery_codes(request: Request, rt: Rt, s: Db, staff: Staff, form: Posted) -> Response:
    if staff.user.totp_secret is None:
        return RedirectResponse(path_to(request, "staff_two_factor"), 303)
    codes = twofactor.new_recovery_codes(s, staff.user)
    s.commit()
    landing = path_to(request, "staff_board")
    return _page(request, rt, "recovery_codes.html", codes=codes, landing=landing)


def _pending(request: Request, rt: Runtime, s: Session) -> tuple[cookies.Pending, StaffUser] | None:
    pending = cookies.pending(rt.settings.secret_key or "", request.cookies.get(cookies.PENDING))
    if pending is None:
        return None
    user = staff_store.user_by_id(s, pending.user_id)
    if user is None or not user.active:
        return None
    return pending, user


def _enrol_form(
    request: Request,
    rt: Runtime,
    secret: str,
    user: StaffUser,
    error: str | None = None,
    csrf: str | None = None,
    token: str | None = None,
) -> Response:
    """The QR code and the code field; `csrf` and `token` (the signed secret) when a signed-in
    staff member enrolls by choice."""
    qr = twofactor.enrolment_qr(secret, user.email, rt.clinic.practice.name)
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    status = 200 if error is None else 401
    extra = {"csrf": csrf, "secret_token": token} if csrf else {}
    return _page(request, rt, "enrol.html", status, qr=qr, secret=grouped, error=error, **extra)


def _page(request: Request, rt: Runtime, name: str, status: int = 200, **context: Any) -> Response:
    common = {
        "practice": rt.clinic.practice.name,
        "csrf": request.cookies.get(LOGIN_COOKIE, ""),
    }
    return templates(rt).TemplateResponse(request, name, common | context, status_code=status)


def _start_again(request: Request) -> Response:
    """No half-done sign-in (or it is more than five minutes old): back to the password."""
    return RedirectResponse(path_to(request, "staff_login"), 303)
