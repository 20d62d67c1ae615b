"""Staff accounts, their signed-in sessions, and the API keys `notifier apikey` issues."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from ..models import ApiKey
from ..staff.models import StaffSession, StaffUser


def user_by_email(session: Session, address: str) -> StaffUser | None:
    """`address` as stored: lower-cased, no spaces around it."""
    return session.scalar(select(StaffUser).where(StaffUser.email == address))


def has_accounts(session: Session) -> bool:
    return session.scalar(select(StaffUser.id).limit(1)) is not None


def session_by_id(session: Session, session_id: str) -> StaffSession | None:
    """`session_id` is the hash of the cookie's token."""
    return session.get(StaffSession, session_id)


def end_session(session: Session, session_id: str) -> None:
    session.execute(delete(StaffSession).where(StaffSession.id == session_id))


def end_sessions_of(session: Session, user_id: int) -> None:
    session.execute(delete(StaffSession).where(StaffSession.staff_user_id == user_id))


def end_sessions_idle_or_old(session: Session, seen_by: datetime, created_by: datetime) -> None:
    """Ends every session last seen by `seen_by` or created by `created_by`."""
    session.execute(
        delete(StaffSession).where(
            or_(StaffSession.last_seen_at <= seen_by, StaffSession.created_at <= created_by)
        )
    )


def live_key(session: Session, key_sha256: str) -> ApiKey | None:
    """The key `notifier apikey` issued with this SHA-256 (hex), unless it was revoked."""
    return session.scalar(
        select(ApiKey).where(ApiKey.key_sha256 == key_sha256, ApiKey.revoked_at.is_(None))
    )


def live_keys_named(session: Session, name: str) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
    )


def all_keys(session: Session) -> list[ApiKey]:
    """Live keys first, each group by name."""
    query = select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.name, ApiKey.id)
    return list(session.scalars(query))


def key_by_id(session: Session, key_id: int) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def add_key(session: Session, name: str, key_sha256: str, scopes: str, now: datetime) -> None:
    session.add(ApiKey(name=name, key_sha256=key_sha256, scopes=scopes, created_at=now))


def all_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.email)))


def user_by_id(session: Session, user_id: int) -> StaffUser | None:
    return session.get(StaffUser, user_id)


def count_active_admins(session: Session) -> int:
    query = select(func.count()).where(StaffUser.role == "admin", StaffUser.active.is_(True))
    return session.scalar(query) or 0
