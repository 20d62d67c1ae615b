"""`create_app`: the routes of every area on one FastAPI app, and the answers to requests that
reach none of them."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match

from .. import assets
from ..bodies import invalid
from ..db import DB_POOL_SIZE
from ..integrations.routes import router as integration_routes
from ..runtime import Runtime, rate_limiter
from ..staff.admin import router as admin_routes
from ..staff.routes import router as staff_routes
from . import api, link_pages, operations, unsubscribe, waitlist_api, webhooks
from .audit_trail import ApiAudit
from .auth import events_key
from .headers import SecurityHeaders


def create_app(rt: Runtime, broker_ping: Callable[[], None] | None = None) -> FastAPI:
    """`broker_ping`, when given, is called by /readyz and raises if the broker is unreachable."""
    app = FastAPI(
        title="notifier",
        version="0.1.0",
        exception_handlers={RequestValidationError: unprocessable, 405: not_allowed},
    )
    app.state.runtime = rt  # for the routes' `deps.runtime`
    app.state.broker_ping = broker_ping
    # As many threads as the database pool keeps connections: more would only queue there.
    app.state.events_pool = ThreadPoolExecutor(DB_POOL_SIZE, thread_name_prefix="events")
    app.state.api_limiter = rate_limiter(rt.settings)  # each API key's rate (web/auth.py)
    app.add_middleware(ApiAudit, rt=rt)
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(waitlist_api.router)
    app.include_router(link_pages.router)
    app.include_router(unsubscribe.router)
    app.include_router(integration_routes(rt, events_key, partial(api.accept_event, rt)))
    app.include_router(staff_routes, prefix="/staff")
    app.include_router(admin_routes, prefix="/staff")
    app.include_router(operations.router)
    app.mount(assets.PREFIX, assets.files(rt.settings.templates_dir), name=assets.ROUTE_NAME)
    app.add_middleware(SecurityHeaders)
    return app


async def unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The same shape as a bad booking event: the field, and why.
    errors = [(".".join(str(p) for p in e["loc"][1:]) or "body", e["msg"]) for e in exc.errors()]
    return invalid("invalid_request", errors)


async def not_allowed(request: Request, exc: Exception) -> Response:
    # Starlette names the methods of the first route that matched the path; a path served by
    # two (GET and POST /links/{token}) must name both.
    allowed = sorted(
        method
        for route in request.app.routes
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods or ()
    )
    if not allowed and request.url.path.startswith(f"{assets.PREFIX}/"):
        allowed = ["GET", "HEAD"]  # the static files, which are no APIRoute
    headers = {"Allow": ", ".join(allowed)}
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)
