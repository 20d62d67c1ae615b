"""Staff accounts: passwords hashed with Argon2id, never stored or shown in the clear."""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlalchemy.orm import Session

from ..store import staff as staff_store
from . import throttle, twofactor
from .hashes import hash_password, needs_rehash, spend_a_check, verifies
from .models import StaffUser

log = logging.getLogger("notifier.staff")

# admin: staff accounts, API keys, the audit log, besides the daily work; staff: the daily work.
ADMIN, STAFF = "admin", "staff"
ROLES = (ADMIN, STAFF)

MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# One answer for a wrong password, an unknown or closed account and a throttled client, so
# that the page tells an attacker nothing about who has an account.
REFUSED = (
    "Wrong email or password. After several tries, sign-in from this device pauses for 15 minutes."
)


class AccountError(Exception):
    """The account cannot be created or changed; the message says why, for the person typing."""


class LoginRefused(Exception):
    """Shown on the login page as it is."""


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
        password_hash=hash_password(password),
        active=True,
        created_at=now,
        role=role,
    )
    session.add(user)
    session.commit()
    return user


def set_password(session: Session, email: str, password: str) -> StaffUser:
    """A new password, and every session signed in with the old one ends."""
    user = _existing(session, email)
    _check_password(password)
    user.password_hash = hash_password(password)
    throttle.forget_account(session, user.email)
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


def reset_two_factor(session: Session, email: str) -> StaffUser:
    """For a lost phone: the account signs in with its password and enrolls a new app."""
    user = _existing(session, email)
    twofactor.turn_off(session, user)
    session.commit()
    return user


def authenticate(
    session: Session,
    email: str,
    password: str,
    now: datetime,
    client: str = "local",
    device: tuple[int, str] | None = None,
) -> StaffUser:
    """The account these credentials open; LoginRefused otherwise. `client` is the address
    the attempt came from; `device` the (account id, device id) of a known-device cookie,
    whose account signs in under that device's own count (throttle.py)."""
    user = find(session, email)
    keys = _throttle_keys(user, email, client, device)
    if not throttle.admits(session, keys, now):
        log.warning("staff sign-in throttled: client %s", client)
        spend_a_check(password)
        raise LoginRefused(REFUSED)
    if user is None or not user.active:
        log.info("staff sign-in refused: no open account, client %s", client)
        spend_a_check(password)
        raise LoginRefused(REFUSED)
    if not verifies(user.password_hash, password):
        log.info("staff sign-in refused: wrong password for account %d, client %s", user.id, client)
        raise LoginRefused(REFUSED)
    log.info("staff sign-in: password right for account %d, client %s", user.id, client)
    throttle.succeeded(session, keys, now)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    session.commit()
    return user


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


def _throttle_keys(
    user: StaffUser | None, email: str, client: str, device: tuple[int, str] | None
) -> list[throttle.Key]:
    if device is not None and user is not None and device[0] == user.id:
        return throttle.for_device(device[1])
    return throttle.for_password(email, client)
