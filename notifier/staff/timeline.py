"""One appointment's messages: what happened to each, and what is still ahead rendered exactly
as the patient will get it. The dashboard and `notifier plan` both show this."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from ..clinic import Location
from ..compose import compose, texted_phones
from ..ingest import is_id
from ..models import Appointment, InboundMessage, Notification
from ..plan import Skipped
from ..render import sms_segments
from ..runtime import Runtime
from ..schedule import left_out
from ..states import PENDING
from ..store import appointments, notifications, replies


@dataclass(frozen=True)
class Preview:
    subject: str | None
    text: str
    segments: int | None  # SMS only


@dataclass(frozen=True)
class Entry:
    notification: Notification
    preview: Preview | None  # only for messages still ahead

    @property
    def ahead(self) -> bool:
        return self.preview is not None


@dataclass(frozen=True)
class Timeline:
    appointment: Appointment
    location: Location
    entries: list[Entry]  # by due time
    replies: list[InboundMessage]
    # What the message budget kept out of the plan (a reminder merged or made moot), and why.
    left_out: list[Skipped] = field(default_factory=list)

    @property
    def ahead(self) -> list[Entry]:
        return [e for e in self.entries if e.ahead]

    @property
    def past(self) -> list[Entry]:
        return [e for e in self.entries if not e.ahead]


class UnknownAppointment(LookupError):
    pass


def timeline(rt: Runtime, session: Session, appointment_id: str, now: datetime) -> Timeline:
    appointment = appointments.by_id(session, appointment_id) if is_id(appointment_id) else None
    if appointment is None:
        raise UnknownAppointment(f"no appointment {appointment_id!r}")
    location = rt.clinic.location(appointment.location_id)
    if location is None:
        raise UnknownAppointment(
            f"appointment {appointment_id!r} is at {appointment.location_id!r},"
            " which the clinic config no longer has"
        )
    rows = notifications.for_appointment(session, appointment_id, with_history=True)
    texted = texted_phones(session, rows)
    entries = [Entry(n, preview(rt, n, now, texted) if n.status in PENDING else None) for n in rows]
    answers = replies.for_appointment(session, appointment_id)
    skipped = left_out(session, appointment, rt.clinic, now)
    return Timeline(appointment, location, entries, answers, skipped)


def preview(rt: Runtime, n: Notification, now: datetime, texted: set[str]) -> Preview:
    """As it would go now: with the opt-out line if the number has had no text yet."""
    message = compose(rt, n, now, n.patient.phone in texted)
    segments = sms_segments(message.text) if n.channel == "sms" else None
    return Preview(message.subject, message.text, segments)
