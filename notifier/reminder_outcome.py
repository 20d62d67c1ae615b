"""What a reminder asked for now would really do, said before it is asked for: the dashboard
offers only the buttons that can work and says what happened, and the API answers the same."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from .clinic import ChannelName, Clinic
from .models import Appointment
from .plan import next_allowed
from .schedule import cannot_take_texts, recipient
from .store import opt_outs


@dataclass(frozen=True)
class ReminderOutcome:
    result: Literal["sent", "held", "not_sent"]
    text: str  # "sent", "held until 8:00 AM (quiet hours)", "not sent: …"
    at: datetime | None = None  # when it goes out; None when it does not

    @property
    def goes(self) -> bool:
        return self.result != "not_sent"

    def as_json(self) -> dict[str, str | None]:
        return {
            "result": self.result,
            "text": self.text,
            "at": self.at.isoformat() if self.at else None,
        }


def _by_email(appointment: Appointment, now: datetime) -> ReminderOutcome:
    if not appointment.patient.email:
        return _not_sent("no email address")
    if not appointment.patient.consent_email:
        return _not_sent("patient did not agree to email")
    return ReminderOutcome("sent", "sent", now)


def _not_sent(why: str) -> ReminderOutcome:
    return ReminderOutcome("not_sent", f"not sent: {why}")


def reminder_now(
    session: Session,
    clinic: Clinic,
    appointment: Appointment,
    channel: ChannelName,
    now: datetime,
    opted_out: bool | None = None,
) -> ReminderOutcome:
    """What a reminder on `channel` asked for at `now` would do. `opted_out` saves the look-up
    in the opt-out registry when the caller knows it."""
    patient = appointment.patient
    if channel == "email":
        return _by_email(appointment, now)
    if not patient.phone or cannot_take_texts(patient):
        return _not_sent("no mobile number")
    if not patient.consent_sms:
        return _not_sent("patient did not agree to texts")
    if opted_out is None:
        opted_out = opt_outs.is_active(session, patient.phone)
    if opted_out:
        return _not_sent("patient opted out of texts")
    location = clinic.location(appointment.location_id)
    if location is None:
        return _not_sent("the visit's location is not in the clinic's settings")
    zone = recipient(patient, location.zone).zone
    allowed = next_allowed(now, clinic.policy.quiet_hours, zone)
    if allowed >= appointment.start_at:
        return _not_sent("quiet hours last until the visit")
    if allowed > now:
        local = allowed.astimezone(zone)
        clock = f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
        return ReminderOutcome("held", f"held until {clock} (quiet hours)", allowed)
    return ReminderOutcome("sent", "sent", now)


def textable(
    session: Session, clinic: Clinic, listed: Iterable[Appointment], now: datetime
) -> set[str]:
    """The ids of the appointments whose patient a text reminder would reach (sent or held),
    with one look-up in the opt-out registry for all of them."""
    listed = list(listed)
    phones = {a.patient.phone for a in listed if a.patient.phone}
    out = opt_outs.active_among(session, phones) if phones else set()
    return {
        a.id
        for a in listed
        if reminder_now(session, clinic, a, "sms", now, a.patient.phone in out).goes
    }
