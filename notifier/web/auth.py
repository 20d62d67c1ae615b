"""The API's Bearer key, as a dependency: a route that takes a `Caller` answers 401 without one."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from .. import api_keys
from ..deps import Rt


async def api_key(request: Request, rt: Rt) -> str:
    """The caller, by the hash of its Bearer key. A key from NOTIFIER_API_KEYS is checked
    right here; only a key issued by `notifier apikey` costs a thread and a session."""
    key = _bearer(request)
    if key and (
        api_keys.is_configured(rt, key) or await run_in_threadpool(api_keys.is_issued, rt, key)
    ):
        return api_keys.caller_id(key)
    raise HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


Caller = Annotated[str, Depends(api_key)]


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None
