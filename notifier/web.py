"""The HTTP door (FastAPI): booking events in, appointment state out, health for operators."""

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.routing import Match

from .bodies import (
    NO_KEY,
    TOO_LARGE,
    UNPROCESSABLE,
    Detail,
    Invalid,
    Refused,
    decode_json,
    invalid,
    json_body,
    read_body,
    refusal,
    validated,
)
from .channels import DeliveryReceipt, ForgedRequest, InboundText, WebhookRequest, Webhooks
from .channels.sms.twilio_webhooks import TwilioWebhooks
from .clinic import ChannelName
from .db import DB_POOL_SIZE
from .ingest import (
    ID_PATTERN,
    ID_RULE,
    EventConflict,
    EventIn,
    Incoming,
    InvalidEvent,
    apply_event,
)
from .integrations.routes import router as integration_routes
from .links import BadLink, read_token
from .models import Appointment, Notification
from .remind import CannotRemind, remind
from .runtime import Runtime
from .staff import router as staff_routes
from .states import Confirmation, set_confirmation
from .stats import stats
from .store import appointments, database, notifications
from .store import staff as staff_store
from .track import Answer, delivery_receipt, receive

T = TypeVar("T")


def create_app(rt: Runtime, broker_ping: Any = None) -> FastAPI:
    """`broker_ping`, when given, is called by /readyz and raises if the broker is unreachable."""
    app = FastAPI(title="notifier", version="0.1.0")
    app.state.runtime = rt  # for the routes' `deps.runtime`
    # As many threads as the database pool keeps connections: more would only queue there.
    events_pool = ThreadPoolExecutor(DB_POOL_SIZE, thread_name_prefix="events")

    @app.exception_handler(RequestValidationError)
    async def unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The same shape as a bad booking event: the field, and why.
        errors = [
            (".".join(str(p) for p in e["loc"][1:]) or "body", e["msg"]) for e in exc.errors()
        ]
        return invalid("invalid_request", errors)

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc: Exception) -> Response:
        # Starlette names the methods of the first route that matched the path; a path served
        # by two (GET and POST /links/{token}) must name both.
        allowed = sorted(
            method
            for route in app.routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        )
        headers = {"Allow": ", ".join(allowed)}
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)

    def session() -> Iterator[Session]:
        with rt.sessions() as s:
            yield s

    Db = Annotated[Session, Depends(session)]

    async def api_key(request: Request) -> str:
        """The caller, by the hash of its Bearer key. A key from NOTIFIER_API_KEYS is checked
        right here; only a key issued by `notifier apikey` costs a thread and a session."""
        key = _bearer(request)
        if key and (_configured_key(rt, key) or await run_in_threadpool(_issued_key, rt, key)):
            return _caller_id(key)
        raise _unauthorized()

    Caller = Annotated[str, Depends(api_key)]
    AppointmentId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_RULE)]
    unknown = refusal(Detail, "no appointment with this id")

    @app.post(
        "/v1/events",
        status_code=202,
        responses={
            401: NO_KEY,
            409: refusal(Refused, "the event id was used before for a different event"),
            413: TOO_LARGE,
            422: refusal(Invalid, "a bad event: the field, and why; nothing is stored"),
        },
        openapi_extra=json_body(EventIn),
    )
    async def post_event(request: Request, _: Caller) -> JSONResponse:
        try:
            payload = decode_json(await read_body(request))
        except InvalidEvent as exc:
            return invalid("invalid_event", exc.errors)
        # The database work in a thread, session and all in one hand-off: the event loop keeps
        # taking other requests meanwhile. A plain executor rather than Starlette's thread
        # pool: its hand-off costs less than half of anyio's (about 30 against 70 µs).
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(events_pool, _accept_in_session, rt, payload)

    @app.get(
        "/v1/appointments/{appointment_id}",
        responses={401: NO_KEY, 404: unknown, 422: UNPROCESSABLE},
    )
    def get_appointment(appointment_id: AppointmentId, s: Db, _: Caller) -> dict[str, Any]:
        appointment = appointments.by_id(s, appointment_id)
        if appointment is None:
            raise HTTPException(404, f"no appointment {appointment_id!r}")
        listed = [
            {**notification_json(n), **_details(n)}
            for n in notifications.for_appointment(s, appointment_id)
        ]
        return {**appointment_json(appointment), "notifications": listed}

    class RemindIn(Incoming):
        channels: list[ChannelName] = ["sms"]
        staff: str | None = Field(default=None, max_length=200)

    @app.post(
        "/v1/appointments/{appointment_id}/remind",
        status_code=202,
        responses={
            401: NO_KEY,
            404: unknown,
            409: refusal(Detail, "the appointment is not upcoming: no reminder"),
            413: TOO_LARGE,
            422: UNPROCESSABLE,
        },
        openapi_extra=json_body(RemindIn, required=False),
    )
    async def post_remind(
        request: Request, appointment_id: AppointmentId, s: Db, caller: Caller
    ) -> Response:
        try:
            given = validated(RemindIn, await read_body(request))
        except InvalidEvent as exc:
            return invalid("invalid_request", exc.errors)
        answer = await run_in_threadpool(reminded, s, appointment_id, given, caller)
        return JSONResponse(answer, status_code=202)

    def reminded(s: Session, appointment_id: str, given: RemindIn, caller: str) -> dict[str, Any]:
        if appointments.by_id(s, appointment_id) is None:
            raise HTTPException(404, f"no appointment {appointment_id!r}")
        try:
            result = remind(
                s,
                rt.clinic,
                appointment_id,
                given.channels,
                given.staff or f"api:{caller}",
                rt.clock(),
            )
        except CannotRemind as exc:
            raise HTTPException(409, str(exc)) from None
        return {
            "notifications": [notification_json(n) for n in result.created],
            "refused": result.refused,
        }

    app.include_router(twilio_routes(rt))

    pages = Jinja2Templates(directory=rt.settings.templates_dir / "pages")

    def link_page(request: Request, token: str, s: Session, act: bool) -> HTMLResponse:
        context: dict[str, Any] = {"practice": rt.clinic.practice.name, "title": "Appointment"}
        try:
            link = read_token(rt.settings.secret_key or "", token, rt.clock())
        except BadLink as exc:
            state = "expired" if exc.expired else "invalid"
            return pages.TemplateResponse(
                request, "link.html", {**context, "state": state}, 410 if exc.expired else 400
            )
        appointment = s.get(Appointment, link.appointment_id)
        if appointment is None or appointment.status != "booked":
            return pages.TemplateResponse(request, "link.html", {**context, "state": "gone"}, 410)
        location = rt.clinic.location(appointment.location_id)
        zone = location.zone if location else UTC
        context |= {
            "action": link.action,
            "when": f"{appointment.start_at.astimezone(zone):%A, %B %-d at %-I:%M %p}",
            "location": f"{location.name}, {location.address}" if location else "",
            "phone": location.display_phone if location else "",
            "state": "done" if act else "ask",
        }
        if act:
            answer = (
                Confirmation.CONFIRMED
                if link.action == "confirm"
                else Confirmation.WANTS_RESCHEDULE
            )
            set_confirmation(appointment, answer, rt.clock())
            s.commit()
        return pages.TemplateResponse(request, "link.html", context)

    page: dict[str, Any] = {"content": {"text/html": {}}}
    link_answers: dict[int | str, dict[str, Any]] = {
        400: {"description": "a link that is not valid (changed or cut)", **page},
        410: {"description": "a link past its time, or its appointment is not booked", **page},
    }

    # GET only shows the question: mail scanners open links, and must not confirm anything.
    @app.get("/links/{token}", response_class=HTMLResponse, responses=link_answers)
    def get_link(request: Request, token: str, s: Db) -> HTMLResponse:
        return link_page(request, token, s, act=False)

    @app.post("/links/{token}", response_class=HTMLResponse, responses=link_answers)
    def post_link(request: Request, token: str, s: Db) -> HTMLResponse:
        return link_page(request, token, s, act=True)

    app.include_router(integration_routes(rt, api_key, partial(accept_event, rt)))
    app.include_router(staff_routes(rt), prefix="/staff")

    @app.get("/v1/stats", responses={401: NO_KEY, 422: UNPROCESSABLE})
    def get_stats(s: Db, _: Caller, weeks: int = Query(8, ge=1, le=52)) -> dict[str, Any]:
        return stats(s, rt.clinic, rt.clock(), weeks)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from .metrics import exposition  # prometheus_client: imported by the first scrape

        return Response(exposition(rt), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "the database or the broker is down"}})
    def readyz() -> JSONResponse:
        checks = {"database": _check(lambda: _ping_database(rt))}
        if broker_ping is not None:
            checks["broker"] = _check(broker_ping)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app


def twilio_routes(rt: Runtime) -> APIRouter:
    """Twilio's webhooks, at the contract's URLs; what Twilio sends is read in its channel."""
    routes = APIRouter()
    twilio = TwilioWebhooks(rt.settings.twilio_auth_token)
    answers: dict[int | str, dict[str, Any]] = {
        200: {"description": "TwiML", "content": {"application/xml": {}}},
        403: refusal(Detail, "X-Twilio-Signature is missing or not Twilio's for this URL"),
        413: TOO_LARGE,
    }

    @routes.post("/twilio/inbound", response_class=Response, responses=answers)
    async def twilio_inbound(request: Request) -> Response:
        return await inbound_text(rt, twilio, request)

    receipt_answers = {code: answer for code, answer in answers.items() if code != 200}

    @routes.post(
        "/twilio/status", status_code=204, response_class=Response, responses=receipt_answers
    )
    async def twilio_status(request: Request) -> Response:
        return await receipt(rt, twilio, request)

    return routes


async def inbound_text(rt: Runtime, hooks: Webhooks, request: Request) -> Response:
    """A patient's text, through the provider's webhook; the answer in the provider's format."""
    text = await signed(rt, request, hooks.inbound)
    reply = await run_in_threadpool(_received, rt, text)
    answer = None
    if reply.kind:
        lang = reply.context["lang"]
        answer = rt.renderer.render(reply.kind, "sms", lang, reply.context).text
    return Response(hooks.answer(answer), media_type=hooks.media_type)


async def receipt(rt: Runtime, hooks: Webhooks, request: Request) -> Response:
    """A delivery receipt, through the provider's webhook."""
    given = await signed(rt, request, hooks.receipt)
    if given is not None:
        await run_in_threadpool(_applied, rt, given)
    return Response(status_code=204)


def _received(rt: Runtime, text: InboundText) -> Answer:
    with rt.sessions() as s:
        return receive(rt, s, text, rt.clock())


def _applied(rt: Runtime, given: DeliveryReceipt) -> None:
    with rt.sessions() as s:
        delivery_receipt(s, given, rt.clock())


async def signed(rt: Runtime, request: Request, read: Callable[[WebhookRequest], T]) -> T:
    """What the provider's call says, read by `read` once the call is proved the provider's:
    made to our public URL, with this body byte for byte."""
    url = rt.settings.public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    try:
        return read(WebhookRequest(url, await read_body(request), request.headers))
    except ForgedRequest as exc:
        raise HTTPException(403, str(exc)) from None


def accept_event(rt: Runtime, s: Session, payload: Any) -> JSONResponse:
    """Applies a booking event and answers as the contract says; every event door uses it."""
    try:
        outcome = apply_event(s, rt.clinic, payload, rt.clock())
    except InvalidEvent as exc:
        return invalid("invalid_event", exc.errors)
    except EventConflict as exc:
        return JSONResponse({"error": "conflict", "reason": str(exc)}, status_code=409)
    appointment = outcome.appointment or appointments.one_by_id(s, outcome.appointment_id)
    if outcome.notifications is None:
        listed = notifications.for_appointment(s, appointment.id)
    else:  # all there is, just written: no need to read them back
        listed = sorted(outcome.notifications, key=lambda n: (n.due_at, n.id))
    answer = {
        "event": {
            "id": outcome.event_id,
            "outcome": outcome.outcome,
            "duplicate": outcome.duplicate,
        },
        "appointment": appointment_json(appointment),
        "notifications": [notification_json(n) for n in listed],
    }
    return JSONResponse(answer, status_code=200 if outcome.duplicate else 202)


def _accept_in_session(rt: Runtime, payload: Any) -> JSONResponse:
    with rt.sessions() as s:
        return accept_event(rt, s, payload)


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _unauthorized() -> HTTPException:
    return HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


def _caller_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _configured_key(rt: Runtime, key: str) -> bool:
    # As bytes: compare_digest refuses str with a non-ASCII character, and a header may hold any.
    given = key.encode()
    return any(hmac.compare_digest(given, k.encode()) for k in rt.settings.api_keys)


def _issued_key(rt: Runtime, key: str) -> bool:
    digest = hashlib.sha256(key.encode()).hexdigest()
    with rt.sessions() as s:
        return staff_store.is_issued_key(s, digest)


def _iso(moment: datetime | None) -> str | None:
    # In UTC, as stored: a row just written still holds the time in the zone it was given.
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def appointment_json(a: Appointment) -> dict[str, Any]:
    return {
        "id": a.id,
        "status": a.status,
        "confirmation": a.confirmation,
        "location": a.location_id,
        "treatment": a.treatment_id,
        "provider": a.provider,
        "start": _iso(a.start_at),
        "end": _iso(a.end_at),
        "patient": {"id": a.patient_id},
    }


def notification_json(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind,
        "channel": n.channel,
        "due_at": _iso(n.due_at),
        "status": n.status,
    }


def _details(n: Notification) -> dict[str, Any]:
    return {
        "slot": n.slot,
        "reason": n.reason,
        "error_code": n.error_code,
        "provider_id": n.provider_id,
        "sent_at": _iso(n.sent_at),
        "staff": n.staff,
        "history": [{"status": e.status, "at": _iso(e.at), "detail": e.detail} for e in n.history],
    }


def _ping_database(rt: Runtime) -> None:
    with rt.engine.connect() as connection:
        database.ping(connection)


def _check(probe: Any) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready", and the reason is the answer
        return f"error: {exc}"
    return "ok"
