"""The event log: one INFO line per thing that happened to a message, a reply or a booking.

Each line names what happened and the ids an operator looks things up by (notification,
appointment, location), never a patient's number, address, name, the text of a message or a
link's token. With NOTIFIER_LOG_FORMAT=json the same facts are fields of the line
(`logs.JSONFormatter`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .logs import mask

if TYPE_CHECKING:
    from .models import Notification

log = logging.getLogger("notifier.events")


def _emit(what: str, **fields: Any) -> None:
    given = {key: value for key, value in fields.items() if value is not None}
    text = " ".join(f"{key}={value}" for key, value in given.items())
    log.info("%s: %s", what, text, extra={"event": what, "fields": given})


def _of(n: Notification) -> dict[str, Any]:
    return {
        "notification": n.id,
        "appointment": n.appointment_id,
        "location": n.appointment.location_id,
        "kind": n.kind,
        "channel": n.channel,
    }


def message_sent(n: Notification, seconds: float | None, reconciled: bool = False) -> None:
    """The provider took the message: its call answered in `seconds`, or (`reconciled`) a
    send whose answer was lost was found at the provider."""
    call = None if seconds is None else round(seconds, 3)
    _emit("message sent", **_of(n), call_seconds=call, reconciled="yes" if reconciled else None)


def message_delivered(n: Notification) -> None:
    _emit("message delivered", **_of(n))


def message_failed(
    n: Notification,
    status: str,
    code: str | None,
    meaning: str | None,
    retry: bool = False,
) -> None:
    """A provider's refusal, a timeout or a receipt saying the carrier could not deliver it;
    `meaning` is what the code says of the number (`twilio_codes`), `status` the state the
    message is in now."""
    _emit(
        "message failed",
        **_of(n),
        status=status,
        code=code,
        meaning=meaning or "unknown",
        retry="yes" if retry else None,
    )


def message_suppressed(n: Notification, reason: str) -> None:
    """Not sent, on purpose (opted out, no consent, stale, quiet hours, already rebooked)."""
    _emit("message suppressed", **_of(n), reason=reason)


def message_withdrawn(n: Notification, reason: str) -> None:
    """No longer wanted: the plan changed or the appointment is no longer booked."""
    _emit("message withdrawn", **_of(n), reason=reason)


def reply_received(
    message_id: int | None, appointment: str | None, location: str | None, intent: str, did: str
) -> None:
    _emit(
        "reply received",
        reply=message_id,
        appointment=appointment,
        location=location,
        intent=intent,
        did=did,
    )


def opted_out(source: str, appointment: str | None, location: str | None) -> None:
    _emit("sms opt-out", source=source, appointment=appointment, location=location)


def opted_in(appointment: str | None, location: str | None) -> None:
    _emit("sms opt-in", appointment=appointment, location=location)


def staff_reminder(
    notification_ids: list[int], appointment: str, location: str, channels: list[str], by: str
) -> None:
    """A reminder asked for by hand; `by` is who asked, an address masked."""
    _emit(
        "staff reminder",
        notifications=",".join(str(i) for i in notification_ids) or "none",
        appointment=appointment,
        location=location,
        channels=",".join(channels),
        by=mask(by),
    )


def event_ingested(
    event_id: str, event_type: str, appointment: str, location: str | None, outcome: str
) -> None:
    """A booking event: `applied`, `duplicate` (a replay) or `stale` (older than the last)."""
    _emit(
        "event ingested",
        booking_event=event_id,
        type=event_type,
        appointment=appointment,
        location=location,
        outcome=outcome,
    )
