"""Webhooks out: what happened here, told to the clinic's booking system.

`emit` writes one outbox row per endpoint subscribed to the event, in the caller's transaction:
the event and its deliveries are committed together or not at all. The clock delivers them
(`deliver_due`), signed as the Standard Webhooks specification says, at least once, one at a
time per endpoint in the order they were made, with retries for more than a day
([integrations.md](../docs/integrations.md#webhooks-out)).

Payloads carry ids, never names, numbers or message texts: the booking system knows its
patients by these ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session

from .integrations import fhir_writeback
from .integrations.fhir_client import FhirServer
from .models import Appointment, Notification, WebhookDelivery, WebhookEndpoint
from .runtime import Runtime
from .store import events, patients, webhooks

log = logging.getLogger(__name__)

EVENTS = (
    "appointment.confirmed",
    "appointment.reschedule_requested",
    "appointment.cancel_requested",
    "patient.opted_out",
    "patient.opted_in",
    "message.failed",
    "waitlist.slot_claimed",
)
SECRET_PREFIX = "whsec_"


class UnknownEvent(ValueError):
    pass


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: `whsec_` and 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def body(event: str, data: dict[str, Any], now: datetime) -> str:
    """The JSON sent: the event's type, when it happened, and its data."""
    made = {"type": event, "timestamp": now.astimezone(UTC).isoformat(), "data": data}
    return json.dumps(made, separators=(",", ":"), sort_keys=True)


def emit(session: Session, event: str, data: dict[str, Any], now: datetime) -> None:
    """Puts the event in the outbox for every endpoint that asked for it (the caller commits)."""
    if event not in EVENTS:
        raise UnknownEvent(f"{event!r} is not one of {', '.join(EVENTS)}")
    subscribed = webhooks.subscribed(session, event)
    if not subscribed:
        return
    message_id, payload = new_message_id(), body(event, data, now)
    for endpoint in subscribed:
        session.add(
            WebhookDelivery(
                message_id=message_id,
                stream=f"endpoint:{endpoint.id}",
                endpoint_id=endpoint.id,
                event=event,
                payload=payload,
                status=webhooks.PENDING,
                attempts=0,
                due_at=now,
                created_at=now,
            )
        )


# What a patient's answer, once it changes the visit's confirmation, tells the booking system.
ANSWER_EVENTS = {
    "confirmed": "appointment.confirmed",
    "wants_reschedule": "appointment.reschedule_requested",
}


def answered(
    session: Session,
    appointment: Appointment,
    before: str,
    via: str,
    now: datetime,
    write_back_url: str | None = None,
) -> None:
    """After `states.set_confirmation`: tells of an answer that changed the confirmation (a
    second C changes nothing, so it tells nothing), and, for a visit that came from FHIR and a
    patient's own confirmation (`via` sms or link), queues the write-back."""
    event = ANSWER_EVENTS.get(appointment.confirmation)
    if event is None or appointment.confirmation == before:
        return
    data = {"appointment_id": appointment.id, "patient_id": appointment.patient_id, "via": via}
    emit(session, event, data, now)
    if (
        event == "appointment.confirmed"
        and via in ("sms", "link")
        and write_back_url
        and events.from_fhir(session, appointment.id)
    ):
        _queue_write_back(session, appointment.id, now)


def _queue_write_back(session: Session, appointment_id: str, now: datetime) -> None:
    payload = body(FHIR_WRITE_BACK, {"appointment_id": appointment_id, "status": "accepted"}, now)
    session.add(
        WebhookDelivery(
            message_id=new_message_id(),
            stream=FHIR_STREAM,
            endpoint_id=None,
            event=FHIR_WRITE_BACK,
            payload=payload,
            status=webhooks.PENDING,
            attempts=0,
            due_at=now,
            created_at=now,
        )
    )


def opted(session: Session, phone: str, out: bool, source: str, now: datetime) -> None:
    """The number opted out (or back in): told for the patients who have it, by id."""
    patient_ids = patients.ids_with_phone(session, phone)
    if patient_ids:
        data = {"patient_ids": patient_ids, "channel": "sms", "source": source}
        emit(session, "patient.opted_out" if out else "patient.opted_in", data, now)


def message_failed(
    session: Session,
    message: Notification,
    status: str,
    reason: str | None,
    error_code: str | None,
    now: datetime,
) -> None:
    """A message that did not reach the patient: its id, what it was, and the reason."""
    data = {
        "message_id": message.id,
        "appointment_id": message.appointment_id,
        "patient_id": message.patient_id,  # a waitlist offer's is not the visit's patient
        "channel": message.channel,
        "kind": message.kind,
        "status": status,
        "reason": reason,
        "error_code": error_code,
    }
    emit(session, "message.failed", data, now)


# Waits after each failed attempt: doubling from a minute, at most six hours apart. The last of
# the 13 attempts is 26 h 31 min after the first; if it fails too, the delivery is dead.
RETRY_DELAYS = (
    tuple(timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 64, 128, 256))
    + (timedelta(hours=6),) * 3
)
CLAIM_BATCH = 50
# Endpoints called at once by one clock: each stream has one delivery in flight at most.
PARALLEL = 8
FHIR_STREAM = "fhir"
FHIR_WRITE_BACK = "fhir.write_back"


def retry_at(attempt: int, now: datetime) -> datetime | None:
    """When to try again after attempt number `attempt` (from 1) failed; None: give up."""
    return now + RETRY_DELAYS[attempt - 1] if attempt <= len(RETRY_DELAYS) else None


def sign(secret: str, message_id: str, timestamp: int, payload: str) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256, keyed with the
    secret's bytes, of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{payload}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class DeliveryFailed(Exception):
    """Not delivered; `permanent` when no retry can help (it goes straight to the dead letters)."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer, not a delivery: following it would send the signed event to a
    # URL the clinic never registered.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def post(url: str, payload: str, headers: dict[str, str], timeout: float) -> None:
    """The one way out to the endpoints: a 2xx is delivered, anything else DeliveryFailed."""
    request = urllib.request.Request(
        url,
        data=payload.encode(),
        headers={"Content-Type": "application/json", "User-Agent": "notifier", **headers},
        method="POST",
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code}") from None
    except (OSError, TimeoutError, ValueError) as exc:  # refused, reset, timed out, bad URL
        raise DeliveryFailed(f"no answer: {exc}"[:300]) from None


def deliver_due(rt: Runtime, limit: int = CLAIM_BATCH) -> int:
    """One beat: hands back expired leases, then delivers what heads its stream and is due,
    until nothing more is; returns how many attempts it made."""
    made = 0
    with rt.sessions() as session:
        if webhooks.reap(session, rt.clock()):
            log.warning("webhook deliveries with an expired lease go again")
        session.commit()
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="webhook") as pool:
        while True:
            now = rt.clock()
            lease = timedelta(seconds=rt.settings.sending_lease_seconds)
            with rt.sessions() as session:
                ids = webhooks.claim(session, now, now + lease, limit)
                session.commit()
            if not ids:
                return made
            list(pool.map(lambda i: _attempt(rt, i), ids))
            made += len(ids)


def _attempt(rt: Runtime, delivery_id: int) -> None:
    with rt.sessions() as session:
        row = webhooks.delivery(session, delivery_id)
        if row is None or row.status != webhooks.SENDING:
            return
        attempt, stream = row.attempts, row.stream
        try:
            _send(rt, session, row)
        except DeliveryFailed as exc:
            again = None if exc.permanent else retry_at(attempt, rt.clock())
            webhooks.failed(session, delivery_id, attempt, again, str(exc))
            session.commit()
            log.warning(
                "webhook delivery %d (%s) attempt %d failed: %s; %s",
                delivery_id, stream, attempt, exc,
                f"next at {again:%Y-%m-%d %H:%M:%S}Z" if again else "dead",
            )  # fmt: skip
            return
        webhooks.delivered(session, delivery_id, attempt, rt.clock())
        session.commit()


def _send(rt: Runtime, session: Session, row: WebhookDelivery) -> None:
    if row.stream == FHIR_STREAM:
        _write_back(rt, row)
        return
    endpoint = session.get(WebhookEndpoint, row.endpoint_id)
    if endpoint is None or endpoint.removed_at is not None:
        raise DeliveryFailed("the endpoint was removed", permanent=True)
    # The receiver compares the timestamp with its own clock: it is the wall clock's, always.
    timestamp = int(time.time())
    headers = {
        "webhook-id": row.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint.secret, row.message_id, timestamp, row.payload),
    }
    post(endpoint.url, row.payload, headers, rt.settings.provider_timeout)


def _write_back(rt: Runtime, row: WebhookDelivery) -> None:
    base_url = rt.settings.fhir_writeback_url
    if base_url is None:
        raise DeliveryFailed("NOTIFIER_FHIR_WRITEBACK_URL is no longer set")
    server = FhirServer(base_url, rt.settings.fhir_token, rt.settings.provider_timeout)
    appointment_id = json.loads(row.payload)["data"]["appointment_id"]
    try:
        fhir_writeback.accept(server, appointment_id)
    except fhir_writeback.WriteBackError as exc:
        raise DeliveryFailed(str(exc), exc.permanent) from None


def schedule_deliveries(scheduler: BaseScheduler, rt: Runtime) -> None:
    """Adds the webhook job beside the clock's tick: a slow endpoint never holds up reminders."""
    scheduler.add_job(
        deliver_due,
        "interval",
        seconds=1.0,
        args=(rt,),
        id="webhooks",
        max_instances=1,
        coalesce=True,
        next_run_time=rt.clock(),
    )


class EndpointError(ValueError):
    pass


def add_endpoint(
    session: Session, url: str, events: list[str], secret: str | None, now: datetime
) -> WebhookEndpoint:
    """Registers an endpoint for `events` (all of them when empty), with a new secret unless
    one is given (`whsec_` and base64, as another sender may already have given the receiver)."""
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 2000:
        raise EndpointError(f"not an http(s) URL: {url[:100]!r}")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise EndpointError(f"unknown events {', '.join(unknown)}: choose from {', '.join(EVENTS)}")
    if secret is not None:
        _check_secret(secret)
    endpoint = WebhookEndpoint(
        url=url,
        events=",".join(e for e in EVENTS if e in events or not events),
        secret=secret or new_secret(),
        created_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def _check_secret(secret: str) -> None:
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith(SECRET_PREFIX) or not 24 <= len(key) <= 64:
        raise EndpointError("a secret is whsec_ and the base64 of 24 to 64 random bytes")


@dataclass(frozen=True)
class EndpointShown:
    endpoint: WebhookEndpoint
    counts: dict[str, int]


def endpoints_with_counts(session: Session) -> list[EndpointShown]:
    counts = webhooks.counts(session)
    return [
        EndpointShown(e, {s: n for (i, s), n in counts.items() if i == e.id})
        for e in webhooks.endpoints(session)
    ]


def dead_letters(session: Session) -> list[WebhookDelivery]:
    return webhooks.dead(session)


def remove_endpoint(session: Session, endpoint_id: int, now: datetime) -> bool:
    removed = webhooks.remove(session, endpoint_id, now)
    session.commit()
    return removed


def redeliver(session: Session, delivery_id: int, now: datetime) -> bool:
    """A dead letter goes again, from the first retry step: behind nothing already sent, and
    ahead of what its endpoint still has waiting."""
    moved = webhooks.redeliver(session, [delivery_id], now)
    session.commit()
    return bool(moved)
