"""Manual reminders: one code path for the API, the CLI and the staff dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from . import eventlog
from .clinic import ChannelName, Clinic, Location
from .models import Appointment, Notification
from .plan import Planned
from .reminder_outcome import ReminderOutcome, reminder_now
from .schedule import add
from .store import appointments, notifications

# A second reminder this soon is taken for a double click, not for a wish to remind twice.
REMIND_AGAIN_AFTER = timedelta(minutes=10)


class CannotRemind(Exception):
    """The appointment does not take reminders (unknown, cancelled, or already started)."""


class NoAppointment(CannotRemind):
    """No appointment has this id."""


class RemindedRecently(CannotRemind):
    """A reminder on the same channel was asked for within REMIND_AGAIN_AFTER."""

    def __init__(self, earlier: Notification, now: datetime) -> None:
        minutes = int((now - earlier.created_at).total_seconds() // 60)
        name = "SMS" if earlier.channel == "sms" else "email"
        self.earlier = earlier
        self.staff = earlier.staff
        self.ago = f"{minutes} min ago" if minutes else "just now"
        super().__init__(f"not sent again: {self.staff} sent an {name} reminder {self.ago}")


@dataclass
class Reminded:
    created: list[Notification] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # channel -> why not
    # channel -> what really happens: sent, held for quiet hours, or not sent and why
    outcomes: dict[str, ReminderOutcome] = field(default_factory=dict)


def remind(
    session: Session,
    clinic: Clinic,
    appointment_id: str,
    channels: list[ChannelName],
    staff: str,
    now: datetime,
    force: bool = False,
) -> Reminded:
    """Plans a reminder due now on each channel the patient may be reached on. Unless `force`,
    nothing is planned when one of `channels` had a manual reminder within REMIND_AGAIN_AFTER."""
    # Held until the commit: two requests at once for one appointment take turns, so the
    # second sees the first one's reminder and the guard below holds.
    held = appointments.held_for_change(session, appointment_id)
    try:
        appointment, location = _remindable(
            session, clinic, held, appointment_id, channels, now, force
        )
    except CannotRemind:
        session.rollback()  # lets the row go at once
        raise
    result = Reminded()
    planned = []
    for channel in dict.fromkeys(channels):
        outcome = result.outcomes[channel] = reminder_now(
            session, clinic, appointment, channel, now
        )
        if not outcome.goes:
            result.refused[channel] = outcome.text.removeprefix("not sent: ")
            continue
        ask = appointment.confirmation == "unconfirmed"
        planned.append(Planned("manual", channel, now.isoformat(), now, appointment.start_at, ask))
    result.created = add(session, appointment, planned, now, staff=staff)
    session.commit()
    ids = [n.id for n in result.created]
    made = [n.channel for n in result.created]
    eventlog.staff_reminder(ids, appointment_id, location.id, made, staff)
    return result


def _remindable(
    session: Session,
    clinic: Clinic,
    appointment: Appointment | None,
    appointment_id: str,
    channels: list[ChannelName],
    now: datetime,
    force: bool,
) -> tuple[Appointment, Location]:
    """The appointment and its location, or CannotRemind saying why no reminder goes."""
    if appointment is None:
        raise NoAppointment(f"no appointment {appointment_id!r}")
    if appointment.status != "booked" or appointment.start_at <= now:
        raise CannotRemind(f"appointment {appointment_id!r} is {appointment.status}, not upcoming")
    location = clinic.location(appointment.location_id)
    if location is None:
        raise CannotRemind(f"location {appointment.location_id!r} is not in the clinic config")
    since = now - REMIND_AGAIN_AFTER
    earlier = (
        None if force else notifications.latest_manual(session, appointment_id, channels, since)
    )
    if earlier is not None:
        raise RemindedRecently(earlier, now)
    return appointment, location
