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
import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .models import WebhookDelivery
from .store import webhooks

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
    made = {"type": event, "timestamp": now.isoformat(), "data": data}
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
