"""Staff accounts: passwords hashed with Argon2id, never stored or shown in the clear."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy.orm import Session

from ..store import staff as staff_store
from .models import StaffUser

# admin: staff accounts, API keys, the audit log, besides the daily work; staff: the daily work.
ADMIN, STAFF = "admin", "staff"
ROLES = (ADMIN, STAFF)
MIN_PASSWORD_LENGTH = 10
# Wrong passwords in a row that close an account for LOCK_FOR: slows guessing to a crawl.
LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=15)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_hasher = PasswordHasher()


class AccountError(Exception):
    """The account cannot be created or changed; the message says why, for the person typing."""


class LoginRefused(Exception):
    """Shown on the login page as it is."""


@cache
def _decoy_hash() -> str:
    # Checked when the address is unknown, so that a wrong address takes as long to refuse
    # as a wrong password and the timing does not tell who has an account.
    return _hasher.hash("no one's password")


def normalize_email(email: str) -> str:
    address = email.strip().lower()
    if not _EMAIL.match(address):
        raise AccountError(f"not an email address: {email!r}")
    return address


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def find(session: Session, email: str) -> StaffUser | None:
    if "\x00" in email:  # no address has one, and PostgreSQL would refuse the query
        return None
    return staff_store.user_by_email(session, email.strip().lower())


def every_account(session: Session) -> list[StaffUser]:
    return staff_store.all_users(session)


def by_id(session: Session, user_id: int) -> StaffUser | None:
    return staff_store.user_by_id(session, user_id)


def _existing(session: Session, email: str) -> StaffUser:
    user = find(session, email)
    if user is None:
        raise AccountError(f"no staff account for {email.strip().lower()}")
    return user


def anyone(session: Session) -> bool:
    """Whether any staff account exists (`serve` says how to create the first)."""
    return staff_store.has_accounts(session)


def create_staff(
    session: Session, email: str, password: str, now: datetime, role: str | None = None
) -> StaffUser:
    """`role` None: admin while the clinic has no admin (its first account), staff after."""
    address = normalize_email(email)
    _check_password(password)
    if find(session, address) is not None:
        raise AccountError(f"{address} already has an account (use `notifier staff password`)")
    if role is None:
        role = STAFF if staff_store.count_active_admins(session) else ADMIN
    _check_role(role)
    user = StaffUser(
        email=address,
        password_hash=_hasher.hash(password),
        active=True,
        created_at=now,
        failed_logins=0,
        role=role,
    )
    session.add(user)
    session.commit()
    return user


def set_password(session: Session, email: str, password: str) -> StaffUser:
    """A new password, and every session signed in with the old one ends."""
    user = _existing(session, email)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    staff_store.end_sessions_of(session, user.id)
    session.commit()
    return user


def set_active(session: Session, email: str, active: bool) -> StaffUser:
    """Closes an account (its sessions end at once) or opens it again."""
    user = _existing(session, email)
    if not active:
        _keep_an_admin(session, user)
    user.active = active
    if not active:
        staff_store.end_sessions_of(session, user.id)
    session.commit()
    return user


def authenticate(session: Session, email: str, password: str, now: datetime) -> StaffUser:
    """The account these credentials open; LoginRefused otherwise."""
    user = find(session, email)
    if user is None or not user.active:
        _verifies(_decoy_hash(), password)
        raise LoginRefused("Wrong email or password.")
    if _locked(user, now):
        raise LoginRefused(
            f"Too many wrong passwords: this account opens again {LOCK_FOR.seconds // 60}"
            " minutes after the last try."
        )
    if not _verifies(user.password_hash, password):
        user.failed_logins += 1
        user.last_failed_at = now
        session.commit()
        raise LoginRefused("Wrong email or password.")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.last_login_at = now
    session.commit()
    return user


def _verifies(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except VerificationError:
        return False


def _locked(user: StaffUser, now: datetime) -> bool:
    return (
        user.failed_logins >= LOCK_AFTER
        and user.last_failed_at is not None
        and now - user.last_failed_at < LOCK_FOR
    )


def set_role(session: Session, email: str, role: str) -> StaffUser:
    """A new role, in force from the account's next page (the role is read on each)."""
    _check_role(role)
    user = _existing(session, email)
    if role != ADMIN:
        _keep_an_admin(session, user)
    user.role = role
    session.commit()
    return user


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"no role {role!r}: {' or '.join(ROLES)}")


def _keep_an_admin(session: Session, user: StaffUser) -> None:
    # Without an active admin no one could manage accounts or keys from the dashboard.
    if user.role == ADMIN and user.active and staff_store.count_active_admins(session) <= 1:
        raise AccountError(f"{user.email} is the only admin: make another account admin first")
