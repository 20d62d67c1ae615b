"""The admins' pages, under /staff/admin: staff accounts, API keys and the audit log.

Every route here is on `router`, whose dependency refuses any account that is not an admin
(403, and an audit entry): a route added here is an admin route by being here, and
tests/test_roles.py checks each one from the app's route table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from .. import api_keys, audit, hooks
from ..audit import AuditFilter
from ..deps import Db, Rt
from ..runtime import Runtime
from . import accounts, board, sessions, trail
from .models import StaffSession
from .routes import _back, _render  # the dashboard's own page frame and redirect
from .signin import Posted, Staff

RowId = Annotated[int, Path(ge=1, lt=2**63)]
AUDIT_PAGE = 100


def admin_only(request: Request, rt: Rt, s: Db, staff: Staff) -> StaffSession:
    if staff.user.role != accounts.ADMIN:
        trail.staff_did(request, rt, s, staff, "admin.denied", detail=request.url.path[:200])
        raise HTTPException(403, "Only the clinic's admins may open this page.")
    return staff


Admin = Annotated[StaffSession, Depends(admin_only)]

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(admin_only)])


@router.get("/staff", name="staff_admin_accounts")
def accounts_page(request: Request, rt: Rt, s: Db, admin: Admin) -> Response:
    users = accounts.every_account(s)
    return _render(request, rt, s, admin, "admin_accounts.html", users=users)


@router.post("/staff/{user_id}/role", name="staff_admin_role")
def change_role(
    request: Request,
    rt: Rt,
    s: Db,
    admin: Admin,
    form: Posted,
    user_id: RowId,
    role: Annotated[str, Form()] = "",
) -> Response:
    def change(user_email: str) -> str:
        accounts.set_role(s, user_email, role)
        return f"{user_email} is now {role}."

    return _account_change(request, rt, s, admin, form, user_id, "staff.role", change)


@router.post("/staff/{user_id}/access", name="staff_admin_access")
def change_access(
    request: Request,
    rt: Rt,
    s: Db,
    admin: Admin,
    form: Posted,
    user_id: RowId,
    active: Annotated[str, Form()] = "",
) -> Response:
    opening = active == "1"

    def change(user_email: str) -> str:
        accounts.set_active(s, user_email, opening)
        return f"{user_email} can {'now' if opening else 'no longer'} sign in."

    action = "staff.enable" if opening else "staff.disable"
    return _account_change(request, rt, s, admin, form, user_id, action, change)


def _account_change(
    request: Request,
    rt: Runtime,
    s: Session,
    admin: StaffSession,
    form: FormData,
    user_id: int,
    action: str,
    change: Callable[[str], str],
) -> Response:
    user = accounts.by_id(s, user_id)
    if user is None:
        sessions.set_flash(s, admin, "error", "There is no such account.")
        return _back(request, form, "staff_admin_accounts")
    email = user.email
    try:
        done = change(email)
    except accounts.AccountError as exc:
        s.rollback()
        trail.staff_did(request, rt, s, admin, action, f"staff:{email}", "refused", str(exc))
        sessions.set_flash(s, admin, "error", f"Not changed: {exc}.")
    else:
        trail.staff_did(request, rt, s, admin, action, f"staff:{email}")
        sessions.set_flash(s, admin, "ok", str(done))
    return _back(request, form, "staff_admin_accounts")


@router.get("/api-keys", name="staff_admin_keys")
def keys_page(request: Request, rt: Rt, s: Db, admin: Admin) -> Response:
    keys = api_keys.listed(rt)
    return _render(request, rt, s, admin, "admin_keys.html", keys=keys, scopes=api_keys.SCOPES)


@router.post("/api-keys/{key_id}/revoke", name="staff_admin_revoke")
def revoke_key(
    request: Request, rt: Rt, s: Db, admin: Admin, form: Posted, key_id: RowId
) -> Response:
    try:
        key = api_keys.revoke_by_id(rt, key_id, rt.clock())
    except api_keys.ApiKeyError as exc:
        sessions.set_flash(s, admin, "error", str(exc))
    else:
        trail.staff_did(request, rt, s, admin, "apikey.revoke", f"api_key:{key.name}")
        sessions.set_flash(s, admin, "ok", f"Revoked: {key.name}. Calls with it get 401 now.")
    return _back(request, form, "staff_admin_keys")


@router.get("/audit", name="staff_admin_audit")
def audit_page(
    request: Request,
    rt: Rt,
    s: Db,
    admin: Admin,
    actor: str = "",
    action: str = "",
    subject: str = "",
    since: str = "",
    until: str = "",
    before: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
) -> Response:
    zone = board.in_scope(rt.clinic, None)[0].zone
    chosen = _chosen(actor, action, subject, since, until, zone)
    entries = audit.newest(s, chosen, before, AUDIT_PAGE)
    older = entries[-1].id if len(entries) == AUDIT_PAGE else None
    query = {"actor": actor, "action": action, "subject": subject, "since": since, "until": until}
    return _render(
        request, rt, s, admin, "admin_audit.html",
        entries=entries, older=older, query=query, audit_zone=zone,
    )  # fmt: skip


@router.get("/audit.csv", name="staff_admin_audit_csv")
def audit_csv(
    request: Request,
    rt: Rt,
    s: Db,
    admin: Admin,
    actor: str = "",
    action: str = "",
    subject: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    zone = board.in_scope(rt.clinic, None)[0].zone
    chosen = _chosen(actor, action, subject, since, until, zone)
    shown = {"actor": actor, "action": action, "subject": subject, "since": since, "until": until}
    note = "; ".join(f"{k}={v}" for k, v in shown.items() if v) or None
    trail.staff_did(request, rt, s, admin, "audit.export", detail=note)
    # Its own session: the request's closes when the route returns, before the rows stream.
    lines = _streamed(rt, chosen)
    filename = f"audit-{rt.clock():%Y-%m-%d}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers=headers)


def _streamed(rt: Runtime, chosen: AuditFilter) -> Iterator[str]:
    with rt.sessions() as session:
        yield from audit.csv_lines(session, chosen)


def _chosen(
    actor: str, action: str, subject: str, since: str, until: str, zone: ZoneInfo
) -> AuditFilter:
    """The filter from the page's fields; days are the clinic's, `until` takes its whole day."""

    def field(value: str, length: int) -> str:
        return value.replace("\x00", "").strip()[:length]  # PostgreSQL refuses NUL

    return AuditFilter(
        actor=field(actor, 340),
        action=field(action, 64),
        subject=field(subject, 200),
        since=_day_start(since, zone),
        until=_day_start(until, zone, plus=timedelta(days=1)),
    )


def _day_start(given: str, zone: ZoneInfo, plus: timedelta = timedelta()) -> datetime | None:
    try:
        day = date.fromisoformat(given.strip())
    except ValueError:  # empty or not a date: no bound
        return None
    if not 2000 <= day.year <= 2999:  # a year no entry can have, and no overflow at the ends
        return None
    return datetime.combine(day + plus, time(), zone)


@router.get("/webhooks", name="staff_admin_webhooks")
def webhooks_page(request: Request, rt: Rt, s: Db, admin: Admin) -> Response:
    return _render(
        request, rt, s, admin, "admin_webhooks.html",
        endpoints=hooks.endpoints_with_counts(s), dead=hooks.dead_letters(s),
        events=hooks.EVENTS, new_secret=None,
    )  # fmt: skip


@router.post("/webhooks", name="staff_admin_webhook_add")
def add_webhook(request: Request, rt: Rt, s: Db, admin: Admin, form: Posted) -> Response:
    chosen = [e for e in form.getlist("events") if isinstance(e, str)]
    url = str(form.get("url", ""))
    try:
        endpoint = hooks.add_endpoint(s, url, chosen, None, rt.clock())
    except hooks.EndpointError as exc:
        sessions.set_flash(s, admin, "error", str(exc))
        return _back(request, form, "staff_admin_webhooks")
    s.commit()
    trail.staff_did(request, rt, s, admin, "webhook.add", f"webhook:{endpoint.id}")
    # The secret is shown on this answer only; the page it redirects to never shows it.
    return _render(
        request, rt, s, admin, "admin_webhooks.html",
        endpoints=hooks.endpoints_with_counts(s), dead=hooks.dead_letters(s),
        events=hooks.EVENTS, new_secret=(endpoint.id, endpoint.secret),
    )  # fmt: skip


@router.post("/webhooks/{endpoint_id}/remove", name="staff_admin_webhook_remove")
def remove_webhook(
    request: Request, rt: Rt, s: Db, admin: Admin, form: Posted, endpoint_id: RowId
) -> Response:
    if hooks.remove_endpoint(s, endpoint_id, rt.clock()):
        trail.staff_did(request, rt, s, admin, "webhook.remove", f"webhook:{endpoint_id}")
        sessions.set_flash(s, admin, "ok", "Removed: nothing more is sent to that endpoint.")
    else:
        sessions.set_flash(s, admin, "error", "There is no such endpoint.")
    return _back(request, form, "staff_admin_webhooks")


@router.post("/webhooks/dead/{delivery_id}/redeliver", name="staff_admin_webhook_redeliver")
def redeliver_webhook(
    request: Request, rt: Rt, s: Db, admin: Admin, form: Posted, delivery_id: RowId
) -> Response:
    if hooks.redeliver(s, delivery_id, rt.clock()):
        trail.staff_did(request, rt, s, admin, "webhook.redeliver", f"delivery:{delivery_id}")
        sessions.set_flash(s, admin, "ok", "Sent again: it goes out within seconds.")
    else:
        sessions.set_flash(s, admin, "error", "Not sent again: it is not a dead letter now.")
    return _back(request, form, "staff_admin_webhooks")
