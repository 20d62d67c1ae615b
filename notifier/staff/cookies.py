"""The signed cookies of signing in, besides the session's own:

- the *known device*: set at each full sign-in, it lets that account sign in again from this
  browser under a count of its own, however many wrong passwords strangers try (throttle.py);
- the *half-done sign-in*: the password was right and a second factor is still to come; it
  names the account (and, while enrolling, the new secret) for five minutes;
- and, not a cookie but signed alike, the new secret in the enrolment form of a signed-in
  staff member who turns two-factor sign-in on by choice.

Both are signed with NOTIFIER_SECRET_KEY, so a client can read but not forge or change them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

DEVICE = "notifier_device"
DEVICE_MAX_AGE = timedelta(days=90)
PENDING = "notifier_signin"
PENDING_MAX_AGE = timedelta(minutes=5)


@dataclass(frozen=True)
class Pending:
    user_id: int
    next: str
    # The secret being enrolled, shown as a QR code until a code from it comes back.
    new_secret: str | None = None


def _signer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=f"notifier-staff-{purpose}")


def device_token(secret_key: str, user_id: int, known: tuple[int, str] | None) -> str:
    """The device cookie for `user_id`: the same device id as before when this browser already
    had one for the account."""
    device_id = known[1] if known and known[0] == user_id else secrets.token_urlsafe(16)
    return _signer(secret_key, "device").dumps([user_id, device_id])


def known_device(secret_key: str, token: str | None) -> tuple[int, str] | None:
    """(account id, device id) from a device cookie, or None for a missing, old or forged one."""
    loaded = _load(secret_key, "device", token, DEVICE_MAX_AGE)
    if not (isinstance(loaded, list) and len(loaded) == 2):
        return None
    user_id, device_id = loaded
    if type(user_id) is int and isinstance(device_id, str):
        return user_id, device_id
    return None


def pending_token(secret_key: str, pending: Pending) -> str:
    return _signer(secret_key, "pending").dumps([pending.user_id, pending.next, pending.new_secret])


def pending(secret_key: str, token: str | None) -> Pending | None:
    loaded = _load(secret_key, "pending", token, PENDING_MAX_AGE)
    if not (isinstance(loaded, list) and len(loaded) == 3):
        return None
    user_id, next, new_secret = loaded
    if type(user_id) is int and isinstance(next, str) and isinstance(new_secret, str | None):
        return Pending(user_id, next, new_secret)
    return None


def enrolment_token(secret_key: str, user_id: int, new_secret: str) -> str:
    """The secret being enrolled from a signed-in session, carried by the enrolment form."""
    return _signer(secret_key, "enrol").dumps([user_id, new_secret])


def enrolment_secret(secret_key: str, token: str, user_id: int) -> str | None:
    loaded = _load(secret_key, "enrol", token, PENDING_MAX_AGE * 2)
    if isinstance(loaded, list) and len(loaded) == 2 and loaded[0] == user_id:
        return loaded[1] if isinstance(loaded[1], str) else None
    return None


def _load(secret_key: str, purpose: str, token: str | None, max_age: timedelta) -> object:
    if not token:
        return None
    try:
        return _signer(secret_key, purpose).loads(token, max_age=int(max_age.total_seconds()))
    except BadSignature:
        return None
