"""A morning at the front desk, for the pages' browser tests and the docs' screenshots: visits
today and tomorrow at both locations in every confirmation state, a reply waiting, a text that
failed, a number that opted out. The clock stands at 09:00 on Monday, November 30, 2026."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.ingest import apply_event
from notifier.models import Appointment, InboundMessage, Notification, SmsOptOut
from notifier.runtime import Runtime
from notifier.states import Status, transition
from tests.conftest import new_york
from tests.events import event

MONDAY = new_york(2026, 11, 30)
# id, day, hour, minute, location, first, last, phone, language, confirmation
VISITS = [
    ("apt-1", 0, 10, 0, "forest-hills", "Ana", "Ruiz", "+17185550134", "en", "unconfirmed"),
    ("apt-2", 0, 11, 15, "manhasset", "María José", "Fernández-Castillo", "+15165550188", "es",
     "confirmed"),
    ("apt-3", 0, 13, 30, "forest-hills", "Grace", "O'Connor", "+17185550142", "en", "cancelled"),
    ("apt-4", 0, 15, 0, "manhasset", "Dmitri Alexandrovich", "Volkonsky-Petrenko", "+15165550177",
     "en", "wants_reschedule"),
    ("apt-5", 1, 9, 30, "forest-hills", "Lucía", "Morales", "+17185550161", "es", "unconfirmed"),
    ("apt-6", 1, 14, 0, "manhasset", "Samuel", "Okafor", "+15165550123", "en", "unconfirmed"),
]  # fmt: skip
REPLY = "Can I bring my daughter? She's 16 and wants to ask about her skin."


def a_clinic_day(rt: Runtime) -> None:
    now = rt.clock()
    with rt.sessions() as session:
        for visit in VISITS:
            apply_event(session, rt.clinic, _booking(now, *visit), now)
        for appointment_id, *_, confirmation in VISITS:
            appointment = session.get_one(Appointment, appointment_id)
            if confirmation == "cancelled":
                appointment.status = "cancelled"
            else:
                appointment.confirmation = confirmation
        _delivered(session, "apt-1", now)
        _failed(session, "apt-6", now)
        session.add(_reply(now - timedelta(minutes=20)))
        session.add(SmsOptOut(phone="+17185550142", active=True, source="keyword:STOP",
                              opted_out_at=now - timedelta(days=2)))  # fmt: skip
        session.commit()


def _booking(
    now: datetime,
    appointment_id: str,
    day: int,
    hour: int,
    minute: int,
    location: str,
    first: str,
    last: str,
    phone: str,
    language: str,
    confirmation: str,
) -> dict[str, Any]:
    start = MONDAY + timedelta(days=day, hours=hour, minutes=minute)
    payload = event(
        "booked", start, occurred_at=now, appointment_id=appointment_id,
        patient_id=f"pat-{appointment_id}", location=location, phone=phone,
        email=f"{first.split()[0].lower()}@example.org", language=language,
        treatment="botox-spasm" if appointment_id == "apt-6" else "botox-cosmetic",
    )  # fmt: skip
    payload["patient"] |= {"first_name": first, "last_name": last}
    return payload


def _sms(session: Session, appointment_id: str) -> int:
    return int(
        session.scalars(
            select(Notification.id).where(
                Notification.appointment_id == appointment_id,
                Notification.kind == "confirmation",
                Notification.channel == "sms",
            )
        ).one()
    )


def _delivered(session: Session, appointment_id: str, now: datetime) -> None:
    sms = [_sms(session, appointment_id)]
    for source, to in (
        (Status.SCHEDULED, Status.QUEUED),
        (Status.QUEUED, Status.SENDING),
        (Status.SENDING, Status.SENT),
        (Status.SENT, Status.DELIVERED),
    ):
        transition(session, sms, [source], to, now)


def _failed(session: Session, appointment_id: str, now: datetime) -> None:
    sms = [_sms(session, appointment_id)]
    for source, to in ((Status.SCHEDULED, Status.QUEUED), (Status.QUEUED, Status.SENDING)):
        transition(session, sms, [source], to, now)
    transition(
        session, sms, [Status.SENDING], Status.FAILED, now,
        "30006: landline or unreachable carrier", reason="not_mobile", error_code="30006",
    )  # fmt: skip


def _reply(received_at: datetime) -> InboundMessage:
    return InboundMessage(
        provider_id="SM-day-1", from_number="+17185550134", to_number="+15165550100", body=REPLY,
        received_at=received_at, patient_id="pat-apt-1", appointment_id="apt-1",
        intent="other", needs_staff=True, auto_replied=True,
    )  # fmt: skip
