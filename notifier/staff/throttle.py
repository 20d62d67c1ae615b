"""How many sign-in attempts a client gets before it must wait.

Each attempt is counted *before* its password is checked, in one statement for all its keys
(store.staff.count_attempts), so forty attempts at once are forty counts and only the first
few reach the password. A success takes its count back. The keys:

- the account from this client (address): 5 in 15 minutes, then that pair waits;
- this client, whatever account it tries: 30 (a clinic's office shares one address);
- the account from any client without a known device: 50 (a guesser with many addresses);
- a known device (a signed cookie from an earlier sign-in of this account): 5 of its own.

A stranger can so close the account only to themselves and to other unknown clients, never to
staff on a device they signed in from before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..store import staff as staff_store

WINDOW = timedelta(minutes=15)
PER_ACCOUNT_AND_CLIENT = 5
PER_CLIENT = 30
PER_ACCOUNT = 50
PER_DEVICE = 5
PER_CODE = 5  # two-factor codes of one account: a million codes, five tries a quarter hour


@dataclass(frozen=True)
class Key:
    digest: str  # the table keeps no address, account or IP in the clear
    limit: int
    reset_on_success: bool = True


def _key(limit: int, *parts: str, reset_on_success: bool = True) -> Key:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return Key(digest, limit, reset_on_success)


def for_password(email: str, client: str) -> list[Key]:
    address = email.strip().lower()
    return [
        _key(PER_ACCOUNT_AND_CLIENT, "account-client", address, client),
        _key(PER_CLIENT, "client", client, reset_on_success=False),
        _key(PER_ACCOUNT, "account", address, reset_on_success=False),
    ]


def for_device(device_id: str) -> list[Key]:
    return [_key(PER_DEVICE, "device", device_id)]


def for_code(user_id: int) -> list[Key]:
    return [_key(PER_CODE, "code", str(user_id))]


def admits(session: Session, keys: list[Key], now: datetime) -> bool:
    """Counts one attempt under every key (committed before any password is checked) and
    says whether all of them are still within their limit."""
    counts = staff_store.count_attempts(session, [k.digest for k in keys], now, now - WINDOW)
    session.commit()
    return all(counts[k.digest] <= k.limit for k in keys)


def succeeded(session: Session, keys: list[Key], now: datetime) -> None:
    """The attempt was right: its count is taken back, and the keys of this very account
    start afresh. Counts whose window has passed are dropped too, so that a flood's rows do
    not stay for good. The caller commits."""
    staff_store.forget_attempts(session, [k.digest for k in keys if k.reset_on_success])
    staff_store.take_back_attempt(session, [k.digest for k in keys if not k.reset_on_success])
    staff_store.forget_attempts_before(session, now - WINDOW)


def forget_account(session: Session, email: str) -> None:
    """A new password or a reset by an admin: the account-wide count starts afresh."""
    staff_store.forget_attempts(session, [_key(0, "account", email.strip().lower()).digest])
