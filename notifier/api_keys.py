"""The API's callers: a Bearer key from NOTIFIER_API_KEYS, or one issued by `notifier apikey`
(kept only as its SHA-256), each with a name and the scopes it may use.

An issued key is known by the name it was issued under; a key from the environment by
`env-` and a short hash of it, never the key. Keys from the environment may do everything:
they are the contract's keys, older than scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from .models import ApiKey
from .ratelimit import RateLimiter
from .runtime import Runtime
from .store import staff

# events: POST /v1/events and the integrations' webhooks; read: GET /v1/appointments/… and
# /v1/stats; remind: POST /v1/appointments/{id}/remind.
SCOPES = ("events", "read", "remind")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
# A key may go over its rate for this long (a burst), then waits its turn.
BURST_SECONDS = 2.0


class ApiKeyError(Exception):
    """The key cannot be issued or revoked; the message says why."""


@dataclass(frozen=True)
class ApiCaller:
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """Who the caller is in the audit log and in a manual reminder's history."""
        return f"api:{self.name}"


def digest(key: str) -> str:
    """The SHA-256 (hex) under which an issued key is kept."""
    return hashlib.sha256(key.encode()).hexdigest()


def configured(rt: Runtime, key: str) -> ApiCaller | None:
    # As bytes: compare_digest refuses str with a non-ASCII character, and a header may hold any.
    given = key.encode()
    if any(hmac.compare_digest(given, k.encode()) for k in rt.settings.api_keys):
        return ApiCaller(f"env-{digest(key)[:12]}", frozenset(SCOPES))
    return None


def issued(rt: Runtime, key: str) -> ApiCaller | None:
    with rt.sessions() as session:
        row = staff.live_key(session, digest(key))
        return None if row is None else _caller(row)


def _caller(row: ApiKey) -> ApiCaller:
    return ApiCaller(row.name, frozenset(row.scopes.split(",")))


def issue(rt: Runtime, name: str, scopes: list[str]) -> str:
    """A new key under `name`; only its SHA-256 is kept, so this is the one time it is seen."""
    name = name.strip()
    if not _NAME.match(name) or name.startswith("env-"):
        raise ApiKeyError(
            f"not a key name: {name!r} (up to 64 letters, digits, spaces, '.', '_' or '-';"
            " not starting with 'env-')"
        )
    chosen = sorted(set(scopes or SCOPES))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise ApiKeyError(f"no scope {unknown[0]!r}; scopes: {', '.join(SCOPES)}")
    key = "ntf_" + secrets.token_urlsafe(32)
    with rt.sessions() as session:
        if staff.live_keys_named(session, name):
            raise ApiKeyError(
                f"a key named {name!r} exists: revoke it first, or name this one otherwise"
            )
        staff.add_key(session, name, digest(key), ",".join(chosen), rt.clock())
        session.commit()
    return key


def listed(rt: Runtime) -> list[ApiKey]:
    with rt.sessions() as session:
        return staff.all_keys(session)


def revoke(rt: Runtime, name: str) -> int:
    """Revokes the live key(s) under `name` at once; answers how many."""
    with rt.sessions() as session:
        keys = staff.live_keys_named(session, name)
        if not keys:
            raise ApiKeyError(f"no live key named {name!r} (`notifier apikey list` shows them)")
        for row in keys:
            row.revoked_at = rt.clock()
        session.commit()
        return len(keys)


def revoke_by_id(rt: Runtime, key_id: int, now: datetime) -> ApiKey:
    with rt.sessions() as session:
        row = staff.key_by_id(session, key_id)
        if row is None or row.revoked_at is not None:
            raise ApiKeyError("This key is unknown or already revoked.")
        row.revoked_at = now
        session.commit()
        return row


def wait_before_next(
    limiter: RateLimiter, caller: ApiCaller, per_second: float, deployment: str
) -> int:
    """0 when the caller may go ahead now; otherwise the whole seconds to wait (Retry-After).
    Each key has its own rate, shared by every web process through Redis when there is one;
    `deployment` (the queue's name) keeps apart deployments that share a Redis."""
    slots = limiter.reserve(f"api:{deployment}:{caller.name}", per_second, 1, BURST_SECONDS)
    if slots.taken:
        return 0
    return max(1, math.ceil(slots.wait - BURST_SECONDS))
