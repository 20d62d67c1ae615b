"""The API's callers: a Bearer key from NOTIFIER_API_KEYS, or one issued by `notifier apikey`
(kept only as its SHA-256). A caller is known by a short hash of its key, never the key."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .runtime import Runtime
from .store import staff


def digest(key: str) -> str:
    """The SHA-256 (hex) under which an issued key is kept."""
    return hashlib.sha256(key.encode()).hexdigest()


def caller_id(key: str) -> str:
    return digest(key)[:12]


def is_configured(rt: Runtime, key: str) -> bool:
    # As bytes: compare_digest refuses str with a non-ASCII character, and a header may hold any.
    given = key.encode()
    return any(hmac.compare_digest(given, k.encode()) for k in rt.settings.api_keys)


def is_issued(rt: Runtime, key: str) -> bool:
    with rt.sessions() as session:
        return staff.is_issued_key(session, digest(key))


def issue(rt: Runtime, name: str) -> str:
    """A new key under `name`; only its SHA-256 is kept, so this is the one time it is seen."""
    key = "ntf_" + secrets.token_urlsafe(32)
    with rt.sessions() as session:
        staff.add_key(session, name, digest(key), rt.clock())
        session.commit()
    return key
