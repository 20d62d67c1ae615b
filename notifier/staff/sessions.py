"""Signed-in staff sessions: a random token in a cookie, its hash and a CSRF token in the table.

A session ends after `Limits.idle` without a page view (15 minutes unless configured: HIPAA's
automatic logoff), after `Limits.lifetime` whatever happens, on logout, and when the password
changes. Each sign-in makes a new token: no token from before it stays good.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..settings import Settings
from ..store import staff as staff_store
from .models import StaffSession, StaffUser

COOKIE = "notifier_staff"
# last_seen_at is written at most this often: one write per click would be wasted work.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Limits:
    idle: timedelta = timedelta(minutes=15)
    lifetime: timedelta = timedelta(hours=12)

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            timedelta(minutes=settings.staff_idle_minutes),
            timedelta(hours=settings.staff_session_hours),
        )


@dataclass(frozen=True)
class Flash:
    level: str  # ok | error
    text: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, user: StaffUser, now: datetime, limits: Limits = Limits()) -> str:
    """Signs `user` in; returns the token for the cookie (the table keeps only its hash)."""
    _forget_expired(session, now, limits)
    token = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            id=_digest(token),
            staff_user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
    )
    session.commit()
    return token


def current(
    session: Session, token: str, now: datetime, limits: Limits = Limits()
) -> StaffSession | None:
    """The live session behind a cookie's token, or None (and an expired one is deleted)."""
    row = staff_store.session_by_id(session, _digest(token))
    if row is None:
        return None
    if _expired(row, now, limits) or not row.user.active:
        session.delete(row)
        session.commit()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        session.commit()
    return row


def end(session: Session, token: str) -> None:
    staff_store.end_session(session, _digest(token))
    session.commit()


def csrf_ok(row: StaffSession, given: object) -> bool:
    return isinstance(given, str) and same_token(row.csrf_token, given)


def same_token(expected: str, given: str) -> bool:
    # As bytes: compare_digest refuses str with a non-ASCII character, and a form may hold any.
    return hmac.compare_digest(expected.encode(), given.encode())


def set_flash(session: Session, row: StaffSession, level: str, text: str) -> None:
    row.flash = json.dumps({"level": level, "text": text})
    session.commit()


def pop_flash(session: Session, row: StaffSession) -> Flash | None:
    if row.flash is None:
        return None
    flash = Flash(**json.loads(row.flash))
    row.flash = None
    session.commit()
    return flash


def _expired(row: StaffSession, now: datetime, limits: Limits) -> bool:
    return now - row.last_seen_at >= limits.idle or now - row.created_at >= limits.lifetime


def _forget_expired(session: Session, now: datetime, limits: Limits) -> None:
    staff_store.end_sessions_idle_or_old(session, now - limits.idle, now - limits.lifetime)
