"""The API's Bearer key, as dependencies: `Caller` answers 401 without a key and 429 past the
key's rate; `may("read")` and its kin answer 403 to a key without that scope."""

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

import redis
from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from .. import api_keys
from ..api_keys import ApiCaller
from ..deps import Rt
from ..ratelimit import LocalRateLimiter, RateLimiter
from ..runtime import Runtime

log = logging.getLogger(__name__)


async def api_key(request: Request, rt: Rt) -> ApiCaller:
    """The caller of a Bearer key. A key from NOTIFIER_API_KEYS is checked right here; only a
    key issued by `notifier apikey` costs a thread and a session."""
    key = _bearer(request)
    caller = None
    if key:
        caller = api_keys.configured(rt, key) or await run_in_threadpool(api_keys.issued, rt, key)
    if caller is None:
        raise HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
    request.state.api_caller = caller  # for the audit log (web/audit_trail.py)
    wait = await _throttled(request.app.state.api_limiter, caller, rt)
    if wait:
        refusal = f"too many requests with this key: try again in {wait} s"
        raise HTTPException(429, refusal, {"Retry-After": str(wait)})
    return caller


Caller = Annotated[ApiCaller, Depends(api_key)]


def may(scope: str) -> Callable[..., Awaitable[ApiCaller]]:
    """The dependency of a route that needs `scope` (one of api_keys.SCOPES)."""

    async def scoped(caller: Caller) -> ApiCaller:
        if scope not in caller.scopes:
            held = ", ".join(sorted(caller.scopes))
            raise HTTPException(403, f"this API key may not {scope} (its scopes: {held})")
        return caller

    return scoped


Sender = Annotated[ApiCaller, Depends(may("events"))]
Reader = Annotated[ApiCaller, Depends(may("read"))]
Reminder = Annotated[ApiCaller, Depends(may("remind"))]


async def events_key(caller: Sender) -> str:
    """For the integrations' routes, which take booking events: the caller's name."""
    return caller.name


async def _throttled(limiter: RateLimiter, caller: ApiCaller, rt: Runtime) -> int:
    rate, deployment = rt.settings.api_rate, rt.settings.queue
    try:
        if isinstance(limiter, LocalRateLimiter):  # a lock and a dict: no thread needed
            return api_keys.wait_before_next(limiter, caller, rate, deployment)
        return await run_in_threadpool(api_keys.wait_before_next, limiter, caller, rate, deployment)
    except redis.RedisError as exc:
        # The limit shields the service from a runaway client; it is not what keeps patients'
        # data safe (the key and its scopes are). A Redis that does not answer lets calls in.
        log.warning("API rate limit not checked, Redis did not answer: %s", exc)
        return 0


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None
