"""The HTTP doors for FHIR servers and Cal.com, mounted by web.py next to `POST /v1/events`.

Both end in the same `accept` as that route, so a booking answers alike whichever door it took.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from ..bodies import decode_json, invalid, read_body
from ..ingest import InvalidEvent
from ..runtime import Runtime
from . import Ignored, calcom
from .config import IntegrationsConfig


def router(
    rt: Runtime,
    api_key: Callable[..., Awaitable[str]],
    accept: Callable[[Session, Any], JSONResponse],
) -> APIRouter:
    """`api_key` is the Bearer-key dependency; `accept(session, event)` applies a contract event
    and answers as `POST /v1/events` does."""
    config: IntegrationsConfig = rt.clinic.integrations
    calcom_secret = rt.settings.calcom_secret
    routes = APIRouter()

    @routes.post("/v1/fhir/Appointment", status_code=202, dependencies=[Depends(api_key)])
    async def post_fhir_appointment(request: Request) -> JSONResponse:
        from . import fhir  # fhir.resources: imported by the first FHIR request, not at start

        try:
            payload = decode_json(await read_body(request))
            event = fhir.booking_event(payload, config.fhir, rt.clinic, rt.clock())
        except InvalidEvent as exc:
            return invalid("invalid_resource", exc.errors)
        if isinstance(event, Ignored):
            return _ignored(event)
        with rt.sessions() as session:
            return await run_in_threadpool(accept, session, event)

    @routes.post("/v1/integrations/calcom", status_code=202)
    async def post_calcom(request: Request) -> JSONResponse:
        if calcom_secret is None:
            return _refused(503, "not_configured", "set NOTIFIER_CALCOM_SECRET to take Cal.com")
        body = await read_body(request)
        signature = request.headers.get("x-cal-signature-256")
        problem = calcom.signature_problem(body, signature, calcom_secret)
        if problem:
            return _refused(403, "bad_signature", problem)
        with rt.sessions() as session:
            try:
                event = calcom.booking_event(decode_json(body), config.calcom, session)
            except InvalidEvent as exc:
                return invalid("invalid_webhook", exc.errors)
            if isinstance(event, Ignored):
                return _ignored(event)
            return await run_in_threadpool(accept, session, event)

    return routes


def _ignored(ignored: Ignored) -> JSONResponse:
    return JSONResponse({"outcome": "ignored", "reason": ignored.reason}, status_code=200)


def _refused(status: int, error: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason}, status_code=status)
