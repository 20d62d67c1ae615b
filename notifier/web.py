"""The HTTP door (FastAPI): booking events in, appointment state out, health for operators."""

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .clinic import Channel
from .ingest import EventConflict, InvalidEvent, apply_event
from .models import ApiKey, Appointment, Notification
from .remind import CannotRemind, remind
from .runtime import Runtime

MAX_BODY_BYTES = 64 * 1024


def create_app(rt: Runtime, broker_ping: Any = None) -> FastAPI:
    """`broker_ping`, when given, is called by /readyz and raises if the broker is unreachable."""
    app = FastAPI(title="notifier", version="0.1.0")

    def session() -> Iterator[Session]:
        with rt.sessions() as s:
            yield s

    Db = Annotated[Session, Depends(session)]

    def api_key(request: Request, s: Db) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key or not _known_key(rt, s, key.strip()):
            raise HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
        return hashlib.sha256(key.strip().encode()).hexdigest()[:12]

    Caller = Annotated[str, Depends(api_key)]

    @app.post("/v1/events", status_code=202)
    async def post_event(request: Request, s: Db, _: Caller) -> JSONResponse:
        body = await _read_body(request)
        try:
            outcome = apply_event(s, rt.clinic, _decode(body), rt.clock())
        except InvalidEvent as exc:
            return _invalid(exc.errors)
        except EventConflict as exc:
            return JSONResponse({"error": "conflict", "reason": str(exc)}, status_code=409)
        appointment = s.get_one(Appointment, outcome.appointment_id, populate_existing=True)
        answer = {
            "event": {
                "id": outcome.event_id,
                "outcome": outcome.outcome,
                "duplicate": outcome.duplicate,
            },
            "appointment": appointment_json(appointment),
            "notifications": [notification_json(n) for n in _notifications(s, appointment.id)],
        }
        return JSONResponse(answer, status_code=200 if outcome.duplicate else 202)

    @app.get("/v1/appointments/{appointment_id}")
    def get_appointment(appointment_id: str, s: Db, _: Caller) -> dict[str, Any]:
        appointment = s.get(Appointment, appointment_id)
        if appointment is None:
            raise HTTPException(404, f"no appointment {appointment_id!r}")
        notifications = [
            {**notification_json(n), **_details(n)} for n in _notifications(s, appointment_id)
        ]
        return {**appointment_json(appointment), "notifications": notifications}

    class RemindIn(BaseModel):
        channels: list[Channel] = ["sms"]
        staff: str | None = None

    @app.post("/v1/appointments/{appointment_id}/remind", status_code=202)
    def post_remind(appointment_id: str, given: RemindIn, s: Db, caller: Caller) -> dict[str, Any]:
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

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        checks = {"database": _check(lambda: _ping_database(rt))}
        if broker_ping is not None:
            checks["broker"] = _check(broker_ping)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app


def _known_key(rt: Runtime, s: Session, key: str) -> bool:
    if any(hmac.compare_digest(key, configured) for configured in rt.settings.api_keys):
        return True
    digest = hashlib.sha256(key.encode()).hexdigest()
    return s.scalar(select(ApiKey.id).where(ApiKey.key_sha256 == digest)) is not None


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return body


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent([("body", f"not valid JSON: {exc}")]) from None


def _invalid(errors: list[tuple[str, str]]) -> JSONResponse:
    field, reason = errors[0]
    listed = [{"field": f, "reason": r} for f, r in errors]
    return JSONResponse(
        {"error": "invalid_event", "field": field, "reason": reason, "errors": listed},
        status_code=422,
    )


def _notifications(s: Session, appointment_id: str) -> list[Notification]:
    query = (
        select(Notification)
        .where(Notification.appointment_id == appointment_id)
        .order_by(Notification.due_at, Notification.id)
    )
    return list(s.scalars(query))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


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
        connection.execute(text("SELECT 1"))


def _check(probe: Any) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready", and the reason is the answer
        return f"error: {exc}"
    return "ok"
