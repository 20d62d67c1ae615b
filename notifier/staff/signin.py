"""Signing in and out of the dashboard, and the dependencies every other page asks for: the
signed-in staff member (`Staff`) and, for a button, its form once the CSRF token is checked
(`Posted`). The second factor's pages are in second_factor.py."""

import secrets
from functools import partial
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ..deps import Db, Rt
from ..runtime import Runtime
from . import accounts, cookies, hashes, sessions, trail, twofactor
from .models import StaffSession, StaffUser
from .pages import templates

# The login form's CSRF token, before there is a session to keep it in (double-submit cookie).
LOGIN_COOKIE = "notifier_login"
# The answer to a sign-in past the hashing line: written once, as a flood sends thousands.
BUSY = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Busy</title>'
    "<p>Many people are signing in right now: go back and try again in a few seconds.</p>"
)

router = APIRouter(include_in_schema=False)


def signed_in(request: Request, rt: Rt, s: Db) -> StaffSession:
    token = request.cookies.get(sessions.COOKIE)
    row = sessions.current(s, token, rt.clock(), limits(rt)) if token else None
    if row is not None and rt.settings.staff_two_factor and row.user.totp_secret is None:
        sessions.end(s, token or "")  # from before the clinic required a second factor
        row = None
    if row is None:
        # A path, not an absolute URL: one built from the Host header could point anywhere.
        login = path_to(request, "staff_login") + "?" + urlencode({"next": _here(request)})
        raise HTTPException(303, "sign in first", {"Location": login})
    return row


Staff = Annotated[StaffSession, Depends(signed_in)]


async def posted(request: Request, staff: Staff) -> FormData:
    form = await request.form()
    if not sessions.csrf_ok(staff, form.get("csrf")):
        raise HTTPException(403, "This form is out of date: reload the page and try again.")
    return form


Posted = Annotated[FormData, Depends(posted)]


@router.get("/login", name="staff_login")
def login_page(request: Request, rt: Rt) -> Response:
    return _login_form(request, rt)


@router.post("/login")
async def login(
    request: Request,
    rt: Rt,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    login_form_ok(request, csrf)
    check = partial(_check_password, request, rt, email, password)
    try:
        user = await hashes.in_a_slot(rt.settings.login_concurrency, check)
    except hashes.Busy:
        return HTMLResponse(BUSY, 429, {"Retry-After": str(hashes.RETRY_AFTER_SECONDS)})
    except accounts.LoginRefused as exc:
        await run_in_threadpool(_refusal_recorded, request, rt, email)
        return _login_form(request, rt, str(exc), status=401)
    # The session's writes on a thread: this route itself runs on the event loop.
    return await run_in_threadpool(_after_password, request, rt, user, local(next) or "")


def _check_password(request: Request, rt: Runtime, email: str, password: str) -> StaffUser:
    device = cookies.known_device(_secret(rt), request.cookies.get(cookies.DEVICE))
    with rt.sessions() as s:
        user = accounts.authenticate(s, email, password, rt.clock(), client(request), device)
        s.expunge(user)
        return user


def _refusal_recorded(request: Request, rt: Runtime, email: str) -> None:
    with rt.sessions() as s:
        trail.signed_in(request, rt, s, email, ok=False)


def _after_password(request: Request, rt: Runtime, user: StaffUser, next: str) -> Response:
    """The password was right: a second factor next where the account has one (or the clinic
    requires one), else the dashboard."""
    if user.totp_secret is not None:
        pending = cookies.Pending(user.id, next)
        target = "staff_login_code"
    elif rt.settings.staff_two_factor:
        pending = cookies.Pending(user.id, next, twofactor.new_secret())
        target = "staff_login_enrol"
    else:
        with rt.sessions() as s:
            return finish_sign_in(
                request, rt, s, user, RedirectResponse(_landing(request, next), 303)
            )
    response = RedirectResponse(path_to(request, target), 303)
    age = int(cookies.PENDING_MAX_AGE.total_seconds())
    token = cookies.pending_token(_secret(rt), pending)
    set_cookie(request, response, cookies.PENDING, token, age, samesite="strict")
    return response


def finish_sign_in(
    request: Request, rt: Runtime, s: Session, user: StaffUser, response: Response
) -> Response:
    """Starts a session for `user` on `response`: a new token (any session this browser had is
    ended, so no token from before sign-in survives it), and the known-device cookie."""
    old = request.cookies.get(sessions.COOKIE)
    if old:
        sessions.end(s, old)
    rules = limits(rt)
    trail.signed_in(request, rt, s, user.email, ok=True)
    token = sessions.start(s, user, rt.clock(), rules)
    set_cookie(request, response, sessions.COOKIE, token, int(rules.lifetime.total_seconds()))
    known = cookies.known_device(_secret(rt), request.cookies.get(cookies.DEVICE))
    device = cookies.device_token(_secret(rt), user.id, known)
    set_cookie(
        request, response, cookies.DEVICE, device, int(cookies.DEVICE_MAX_AGE.total_seconds())
    )
    for name in (LOGIN_COOKIE, cookies.PENDING):
        response.delete_cookie(name, path=path_to(request, "staff_board"))
    return response


@router.post("/logout", name="staff_logout")
def logout(request: Request, s: Db, form: Posted) -> Response:
    sessions.end(s, request.cookies.get(sessions.COOKIE, ""))
    response = RedirectResponse(path_to(request, "staff_login"), 303)
    response.delete_cookie(sessions.COOKIE, path=path_to(request, "staff_board"))
    return response


def login_form_ok(request: Request, csrf: str) -> None:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not (expected and sessions.same_token(expected, csrf)):
        raise HTTPException(403, "This login form is out of date: reload the page.")


def _login_form(
    request: Request, rt: Runtime, error: str | None = None, status: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    context = {
        "practice": rt.clinic.practice.name,
        "login_csrf": token,
        "next": request.query_params.get("next", ""),
        "error": error,
    }
    response = templates(rt).TemplateResponse(request, "login.html", context, status_code=status)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, samesite="strict")
    return response


def limits(rt: Runtime) -> sessions.Limits:
    return sessions.Limits.of(rt.settings)


def client(request: Request) -> str:
    """The address an attempt came from (uvicorn takes it from X-Forwarded-For only when the
    connection is from a trusted proxy: FORWARDED_ALLOW_IPS, 127.0.0.1 by default)."""
    return request.client.host if request.client else "unknown"


def _secret(rt: Runtime) -> str:
    return rt.settings.secret_key or ""


def path_to(request: Request, name: str, **params: str) -> str:
    return str(request.url_for(name, **params).path)


def _landing(request: Request, next: str) -> str:
    return local(next) or path_to(request, "staff_board")


def local(target: str) -> str | None:
    """`target` if it is a path on this site; anything else could send staff to another one."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def set_cookie(
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
        path=path_to(request, "staff_board"),
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
    )
