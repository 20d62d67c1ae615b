"""The HTTP doors for FHIR servers and Cal.com, mounted by web/app.py next to `POST /v1/events`.

Both end in the same `accept` as that route, so a booking answers alike whichever door it took.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ..bodies import (
    MAX_BODY_BYTES,
    NO_KEY,
    TOO_LARGE,
    Detail,
    Invalid,
    Refused,
    decode_json,
    invalid,
    read_body,
    refusal,
    schema_of,
)
from ..ingest import InvalidEvent, stored_booking
from ..metrics import count_refused_webhook
from ..runtime import Runtime
from ..waitlist_entries import add, entry_json, parse_entry
from . import Ignored, WaitlistWish, calcom
from .fhir_client import FhirReadError, FhirServer

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {FHIR_JSON, "application/json"}


class OutcomeIssue(BaseModel):
    severity: str
    code: str
    diagnostics: str
    expression: list[str] | None = None


class OperationOutcome(BaseModel):
    """What the FHIR door answers when it refuses or ignores a message, as FHIR servers do."""

    resourceType: Literal["OperationOutcome"]
    issue: list[OutcomeIssue]


def _outcome_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {FHIR_JSON: {"schema": schema_of(OperationOutcome)}},
    }


FHIR_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: _outcome_answer("ignored: a message that asks nothing (a handshake, a waitlist entry)"),
    400: _outcome_answer("not JSON, not a resource, or an id that differs from the URL's"),
    401: NO_KEY,
    403: refusal(Detail, "the API key may not send events (its scopes are named)"),
    409: refusal(Refused, "the event this makes was sent before with other content"),
    413: _outcome_answer(f"the body is larger than {MAX_BODY_BYTES} bytes"),
    415: _outcome_answer("a Content-Type that is not JSON"),
    422: _outcome_answer("a resource that makes no valid booking: one issue per problem"),
    429: refusal(Detail, "too many requests with this key: Retry-After says when to retry"),
    502: _outcome_answer("the clinic's FHIR server refused our token or answered nonsense"),
    503: _outcome_answer("the clinic's FHIR server cannot be reached now: send again later"),
}
CALCOM_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: refusal(Refused, "X-Cal-Signature-256 is missing or wrong"),
    409: refusal(Refused, "the event this makes was sent before with other content"),
    413: TOO_LARGE,
    422: refusal(Invalid, "a webhook that makes no valid booking event"),
    503: refusal(Refused, "NOTIFIER_CALCOM_SECRET is not set"),
}


def router(
    rt: Runtime,
    api_key: Callable[..., Awaitable[str]],
    accept: Callable[[Session, Any], JSONResponse],
) -> APIRouter:
    """`api_key` is the Bearer-key dependency; `accept(session, event)` applies a contract event
    and answers as `POST /v1/events` does."""
    fhir_server = _fhir_server(rt)
    routes = APIRouter()

    keyed = [Depends(api_key)]

    @routes.post(
        "/v1/fhir/Appointment", status_code=202, dependencies=keyed, responses=FHIR_ANSWERS
    )
    @routes.post("/v1/fhir", status_code=202, dependencies=keyed, responses=FHIR_ANSWERS)
    async def post_fhir(request: Request) -> Response:
        return await _take_fhir(rt, fhir_server, accept, request)

    @routes.put(
        "/v1/fhir/Appointment/{appointment_id}",
        status_code=202,
        dependencies=keyed,
        responses=FHIR_ANSWERS,
    )
    async def put_fhir_appointment(request: Request, appointment_id: str) -> Response:
        """A REST-hook subscription with a payload updates `<endpoint>/Appointment/<id>`."""
        return await _take_fhir(rt, fhir_server, accept, request, appointment_id)

    @routes.post("/v1/integrations/calcom", status_code=202, responses=CALCOM_ANSWERS)
    async def post_calcom(request: Request) -> JSONResponse:
        return await _take_calcom(rt, accept, request)

    return routes


def _known(session: Session) -> Callable[[str], Any]:
    from .fhir import KnownAppointment

    def lookup(appointment_id: str) -> KnownAppointment | None:
        stored = stored_booking(session, appointment_id)
        return None if stored is None else KnownAppointment(**stored)

    return lookup


async def _take_fhir(
    rt: Runtime,
    fhir_server: FhirServer | None,
    accept: Callable[[Session, Any], JSONResponse],
    request: Request,
    resource_id: str | None = None,
) -> Response:
    from . import fhir  # fhir.resources: imported by the first FHIR request, not at start

    refused = _unsupported_media_type(request.headers.get("content-type"))
    if refused is not None:
        return refused
    try:
        body = await read_body(request)
    except HTTPException as exc:
        return outcome(exc.status_code, [issue("too-costly", str(exc.detail))])
    try:
        payload = decode_json(body)
    except InvalidEvent as exc:
        return outcome(400, [issue("structure", reason) for _, reason in exc.errors])
    if not isinstance(payload, dict):
        return outcome(400, [issue("structure", "a FHIR resource is a JSON object")])
    mismatch = _id_mismatch(payload, resource_id)
    if mismatch is not None:
        return mismatch
    with rt.sessions() as session:
        sources = fhir.Sources(fhir_server, _known(session))
        try:
            event = await run_in_threadpool(
                fhir.booking_event,
                payload,
                rt.clinic.integrations.fhir,
                rt.clinic,
                rt.clock(),
                sources,
            )
        except InvalidEvent as exc:
            return outcome(422, [issue(_code(r), r, f) for f, r in exc.errors])
        except FhirReadError as exc:
            code = "transient" if exc.status == 503 else "exception"
            return outcome(exc.status, [issue(code, exc.reason)])
        if isinstance(event, Ignored):
            return outcome(200, [issue("informational", event.reason, severity="information")])
        if isinstance(event, WaitlistWish):
            return await run_in_threadpool(_waitlisted, rt, session, event)
        return await run_in_threadpool(accept, session, event)


def _waitlisted(rt: Runtime, session: Session, wish: WaitlistWish) -> Response:
    try:
        given = parse_entry(wish.entry, rt.clinic)
    except InvalidEvent as exc:
        return outcome(422, [issue(_code(r), r, f) for f, r in exc.errors])
    entry, new = add(session, given, "fhir", rt.clock())
    session.commit()
    return JSONResponse({"waitlist": entry_json(entry)}, status_code=201 if new else 200)


async def _take_calcom(
    rt: Runtime, accept: Callable[[Session, Any], JSONResponse], request: Request
) -> JSONResponse:
    calcom_secret = rt.settings.calcom_secret
    if calcom_secret is None:
        return _refused(503, "not_configured", "set NOTIFIER_CALCOM_SECRET to take Cal.com")
    body = await read_body(request)
    signature = request.headers.get("x-cal-signature-256")
    problem = calcom.signature_problem(body, signature, calcom_secret)
    if problem:
        count_refused_webhook(rt, request.url.path)
        return _refused(403, "bad_signature", problem)
    with rt.sessions() as session:
        try:
            event = calcom.booking_event(decode_json(body), rt.clinic.integrations.calcom, session)
        except InvalidEvent as exc:
            return invalid("invalid_webhook", exc.errors)
        if isinstance(event, Ignored):
            return _ignored(event)
        return await run_in_threadpool(accept, session, event)


def _ignored(ignored: Ignored) -> JSONResponse:
    return JSONResponse({"outcome": "ignored", "reason": ignored.reason}, status_code=200)


def _refused(status: int, error: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason}, status_code=status)


def _fhir_server(rt: Runtime) -> FhirServer | None:
    base_url = rt.settings.fhir_base_url
    if base_url is None:
        return None
    return FhirServer(base_url, rt.settings.fhir_token, rt.settings.provider_timeout)


def issue(
    code: str, diagnostics: str, expression: str | None = None, severity: str = "error"
) -> dict[str, Any]:
    """One OperationOutcome.issue: what is wrong (`diagnostics`), and where (`expression`)."""
    found = {"severity": severity, "code": code, "diagnostics": diagnostics}
    return found if not expression else {**found, "expression": [expression]}


def outcome(status: int, issues: list[dict[str, Any]]) -> Response:
    """An OperationOutcome, as FHIR servers answer when something is wrong (or ignored)."""
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _code(reason: str) -> str:
    """The issue type a FHIR server would give: a missing element, a reference that leads
    nowhere, or else a value that will not do."""
    if reason.startswith("required"):
        return "required"
    if "neither in the Bundle" in reason or "not on the FHIR server" in reason:
        return "not-found"
    return "invalid"


def _unsupported_media_type(content_type: str | None) -> Response | None:
    """415 for a body declared as anything but JSON (FHIR XML, a form). A body without a
    Content-Type is read as JSON: some senders leave it out."""
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in JSON_TYPES:
        return None
    reason = f"Content-Type {media_type!r}: send {FHIR_JSON} (or application/json)"
    return outcome(415, [issue("not-supported", reason)])


def _id_mismatch(payload: dict[str, Any], resource_id: str | None) -> Response | None:
    """An update names the resource twice, in the URL and in the body: they must agree."""
    if resource_id is None:
        return None
    if payload.get("resourceType") != "Appointment":
        reason = "PUT /v1/fhir/Appointment/{id} takes an Appointment"
        return outcome(400, [issue("invalid", reason, "resourceType")])
    if payload.get("id") != resource_id:
        reason = f"the body's id {payload.get('id')!r} is not the URL's {resource_id!r}"
        return outcome(400, [issue("invalid", reason, "Appointment.id")])
    return None
