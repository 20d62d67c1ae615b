"""Signing in and out of the dashboard, and the dependencies every other page asks for: the
signed-in staff member (`Staff`) and, for a button, its form once the CSRF token is checked
(`Posted`)."""

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..deps import Db, Rt
from ..runtime import Runtime
from . import accounts, sessions, trail
from .models import StaffSession
from .pages import templates

# The login form's CSRF token, before there is a session to keep it in (double-submit cookie).
LOGIN_COOKIE = "notifier_login"

router = APIRouter(include_in_schema=False)


def signed_in(request: Request, rt: Rt, s: Db) -> StaffSession:
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


@router.get("/login", name="staff_login")
def login_page(request: Request, rt: Rt) -> Response:
    return _login_form(request, rt)


@router.post("/login")
def login(
    request: Request,
    rt: Rt,
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
        trail.signed_in(request, rt, s, email, ok=False)
        return _login_form(request, rt, str(exc), status=401)
    trail.signed_in(request, rt, s, email, ok=True)
    token = sessions.start(s, user, rt.clock())
    response = RedirectResponse(local(next) or path_to(request, "staff_board"), 303)
    _set_cookie(request, response, sessions.COOKIE, token, int(sessions.LIFETIME.total_seconds()))
    response.delete_cookie(LOGIN_COOKIE, path=path_to(request, "staff_board"))
    return response


@router.post("/logout", name="staff_logout")
def logout(request: Request, s: Db, form: Posted) -> Response:
    sessions.end(s, request.cookies.get(sessions.COOKIE, ""))
    response = RedirectResponse(path_to(request, "staff_login"), 303)
    response.delete_cookie(sessions.COOKIE, path=path_to(request, "staff_board"))
    return response


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
    _set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, samesite="strict")
    return response


def path_to(request: Request, name: str, **params: str) -> str:
    return str(request.url_for(name, **params).path)


def local(target: str) -> str | None:
    """`target` if it is a path on this site; anything else could send staff to another one."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


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
        path=path_to(request, "staff_board"),
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
    )
