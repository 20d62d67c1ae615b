"""Settles `unknown` notifications: did the provider take it or not? Ask, never guess.

A send whose answer never came (a timeout, a worker killed mid-call) is looked up at the
provider. Found: it was sent, and we keep its id. Not found: it goes back to the schedule.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from . import eventlog
from .channels import Message, SendError
from .models import Notification
from .runtime import Runtime
from .states import Status, record_first_texts, transition
from .store import notifications
from .track import apply_early_receipts

log = logging.getLogger(__name__)

BATCH = 100
RETRY_LOOKUP = timedelta(seconds=30)


def reconcile(rt: Runtime, session: Session, now: datetime) -> int:
    """Looks up the unknown rows whose lease has passed; returns how many it settled."""
    ready = notifications.unknown_due(session, now, BATCH)
    return sum(_settle(rt, session, n, now) for n in ready)


def _settle(rt: Runtime, session: Session, n: Notification, now: datetime) -> bool:
    patient = n.patient
    to = patient.phone if n.channel == "sms" else patient.email
    message = Message(n.id, to or "", n.body or "")
    channel = rt.sms if n.channel == "sms" else rt.email
    try:
        provider_id = channel.find(
            message, notifications.provider_ids_of_patient(session, patient.id)
        )
    except SendError as exc:
        log.warning("notification %s: cannot reconcile yet: %s", n.id, exc)
        n.lease_until = now + RETRY_LOOKUP
        session.commit()
        return False
    if provider_id:
        moved = transition(
            session, [n.id], [Status.UNKNOWN], Status.SENT, now,
            "reconciled: found at the provider",
            provider_id=provider_id, sent_at=now, lease_until=None,
        )  # fmt: skip
        apply_early_receipts(session, rt.clinic, [provider_id], now)
        if moved and n.channel == "sms":
            record_first_texts(session, [{"nid": n.id, "at": now, "phone": to}])
        if moved:
            eventlog.message_sent(n, None, reconciled=True)
    else:
        moved = transition(
            session, [n.id], [Status.UNKNOWN], Status.SCHEDULED, now,
            "reconciled: not at the provider",
            due_at=now, lease_until=None,
        )  # fmt: skip
    session.commit()
    return bool(moved)
