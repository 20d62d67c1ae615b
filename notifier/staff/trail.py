"""The dashboard's entries in the audit log: sign-ins, the patient pages staff open, and what
their buttons do. Each page or button adds one line, `trail.staff_did(...)`."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from .. import audit
from ..runtime import Runtime
from . import accounts
from .models import StaffSession


def staff_did(
    request: Request,
    rt: Runtime,
    s: Session,
    staff: StaffSession,
    action: str,
    subject: str | None = None,
    outcome: str = "ok",
    detail: str | None = None,
) -> None:
    """Records `action` by the signed-in staff member, from the address the request came from."""
    audit.record(
        s, rt.clock(), f"staff:{staff.user.email}", action, subject,
        address=_address(request), outcome=outcome, detail=detail,
    )  # fmt: skip


def signed_in(request: Request, rt: Runtime, s: Session, email: str, ok: bool) -> None:
    """A sign-in, whether it opened the account or not. An address with no account is kept
    as typed only when it looks like one: a password typed in the wrong box is not."""
    user = accounts.find(s, email)
    if user is not None:
        actor = f"staff:{user.email}"
    else:
        typed = "".join(c for c in email.strip().lower() if c.isprintable())
        actor = "unknown:" + (typed if "@" in typed and " " not in typed else "(not an address)")
    audit.record(
        s, rt.clock(), actor, "signin", address=_address(request),
        outcome="ok" if ok else "refused",
    )  # fmt: skip


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None
