"""Staff accounts, their signed-in sessions, sign-in attempts, two-factor codes, and the API
keys `notifier apikey` issues."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..models import ApiKey
from ..staff.models import LoginThrottle, RecoveryCode, StaffSession, StaffUser


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


def count_attempts(
    session: Session, keys: list[str], now: datetime, window_start: datetime
) -> dict[str, int]:
    """One more sign-in attempt under each key, in one statement (an upsert that counts afresh
    once the last attempt is older than `window_start`); the count of each key after it.
    Keys are taken in one order, so two such statements on PostgreSQL never deadlock."""
    table = LoginThrottle.__table__.c
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    rows = [{"key": key, "failures": 1, "last_at": now} for key in sorted(set(keys))]
    upsert = insert(LoginThrottle).values(rows)
    statement = upsert.on_conflict_do_update(
        index_elements=[table.key],
        set_={
            "failures": case((table.last_at <= window_start, 1), else_=table.failures + 1),
            "last_at": now,
        },
    ).returning(table.key, table.failures)
    return {key: failures for key, failures in session.execute(statement)}


def take_back_attempt(session: Session, keys: list[str]) -> None:
    if keys:
        session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key.in_(keys), LoginThrottle.failures > 0)
            .values(failures=LoginThrottle.failures - 1)
        )


def forget_attempts(session: Session, keys: list[str]) -> None:
    if keys:
        session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


def forget_attempts_before(session: Session, last_at: datetime) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.last_at <= last_at))


def accept_totp_step(session: Session, user_id: int, step: int) -> bool:
    """Records that a code of `step` signed this account in, unless one of that step or a
    later one already did: a code is good once (RFC 6238 §5.2)."""
    moved = session.scalar(
        update(StaffUser)
        .where(
            StaffUser.id == user_id,
            or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .returning(StaffUser.id)
    )
    return moved is not None


def use_recovery_code(session: Session, user_id: int, code_sha256: str, now: datetime) -> bool:
    """Spends the unused recovery code with this hash, if the account has one."""
    spent = session.scalar(
        update(RecoveryCode)
        .where(
            RecoveryCode.staff_user_id == user_id,
            RecoveryCode.code_sha256 == code_sha256,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .returning(RecoveryCode.id)
    )
    return spent is not None


def unused_recovery_codes(session: Session, user_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.staff_user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def drop_recovery_codes(session: Session, user_id: int) -> None:
    session.execute(delete(RecoveryCode).where(RecoveryCode.staff_user_id == user_id))
