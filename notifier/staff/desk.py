"""What the front desk does to a visit: confirm it, cancel it, mark it a no-show or completed,
and undo the mistakes among those.

Every action but a confirm becomes a booking event and goes through `ingest.apply_event`, the
path the clinic's own system takes: the plan is re-made and stale reminders withdrawn. Its id
comes from the form's one-time token, so the same form posted twice (a double click, a
reload, a retried request) changes nothing the second time. A confirm is no booking event:
it sets the confirmation (`states.set_confirmation`). Each action is kept with who did it and
what the visit was before, which is what an undo restores.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import hooks
from ..clinic import ChannelName, Clinic
from ..ingest import EventConflict, InvalidEvent, apply_event, stored_booking
from ..models import Appointment, VisitAction
from ..reminder_outcome import ReminderOutcome, reminder_now
from ..states import PENDING, Confirmation, ForbiddenMove, Status, set_confirmation, transition
from ..store import appointments, visit_actions
from .actions import Refused

EVENT_TYPES = {
    "cancel": "appointment.cancelled",
    "no_show": "appointment.no_show",
    "complete": "appointment.completed",
}
LABELS = {
    "confirm": "Confirmed",
    "cancel": "Cancelled",
    "no_show": "Marked no-show",
    "complete": "Marked completed",
    "undo": "Undid",
}
# What each undoable action left the visit as; an undo is refused once it is something else.
# A cancel is not undone here: the patient has been told, so only a new booking restores it.
LEFT = {"confirm": "confirmed", "no_show": "no_show", "complete": "completed"}
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
END_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")  # what a time input sends: 24-hour HH:MM
ALREADY = "Already done: that form was sent before, so nothing changed."


@dataclass(frozen=True)
class Done:
    text: str


def offered(appointment: Appointment, now: datetime) -> list[str]:
    """The actions that make sense for the visit now: before it starts, confirm (if not yet)
    and cancel; once it has started, completed or no-show."""
    if appointment.status != "booked":
        return []
    if appointment.start_at > now:
        confirmed = appointment.confirmation == Confirmation.CONFIRMED
        return ["cancel"] if confirmed else ["confirm", "cancel"]
    return ["complete", "no_show"]


def act(
    session: Session,
    clinic: Clinic,
    appointment_id: str,
    action: str,
    token: str,
    staff: str,
    now: datetime,
    ended: str = "",
) -> Done:
    """Does `action` once per token; raises Refused saying why not."""
    appointment = _checked(session, appointment_id, token)
    if appointment is None:
        return Done(ALREADY)
    if action not in offered(appointment, now):
        raise Refused(f"This visit is {_state(appointment, now)}: it cannot be {_verb(action)}.")
    row = _row(appointment, action, token, staff, now)
    if action == "confirm":
        before = appointment.confirmation
        set_confirmation(appointment, Confirmation.CONFIRMED, now)
        hooks.answered(session, appointment, before, "staff", now)
        return _kept(session, row, "Confirmed.")
    changes: dict[str, Any] = {}
    if action == "complete":
        changes["end"] = _end(appointment, clinic, ended, now).isoformat()
    return _as_event(session, clinic, appointment, row, EVENT_TYPES[action], changes, now)


def undo(
    session: Session,
    clinic: Clinic,
    appointment_id: str,
    action_id: int,
    token: str,
    staff: str,
    now: datetime,
) -> Done:
    """Reverses an action: the visit goes back to what it was before it."""
    appointment = _checked(session, appointment_id, token)
    if appointment is None:
        return Done(ALREADY)
    done = visit_actions.by_id(session, action_id)
    if done is None or done.appointment_id != appointment.id or done.action not in LEFT:
        raise Refused("There is no such action to undo on this visit.")
    if _left_as(appointment) != LEFT[done.action]:
        raise Refused(f"Not undone: the visit is {_state(appointment, now)} since then.")
    if not visit_actions.mark_undone(session, done.id, staff, now):
        session.rollback()
        raise Refused(f"Already undone by {done.undone_by}.")
    row = _row(appointment, "undo", token, staff, now)
    row.undoes = done.id
    if done.action == "confirm":
        try:
            set_confirmation(appointment, Confirmation(done.before_confirmation), now)
        except ForbiddenMove as exc:
            session.rollback()
            raise Refused(f"Not undone: {exc}.") from None
        again = "wants to reschedule" if done.before_confirmation == "wants_reschedule" else ""
        return _kept(session, row, f"Undone: the visit is {again or 'unconfirmed'} again.")
    changes = {"end": done.before_end_at.isoformat()}
    return _as_event(session, clinic, appointment, row, "appointment.booked", changes, now)


def _checked(session: Session, appointment_id: str, token: str) -> Appointment | None:
    """The appointment, or None when this token was used before."""
    if not TOKEN.fullmatch(token):
        raise Refused("This form is out of date: reload the page and try again.")
    if visit_actions.by_token(session, token) is not None:
        return None
    appointment = appointments.by_id(session, appointment_id)
    if appointment is None:
        raise Refused(f"There is no appointment {appointment_id}.")
    return appointment


def _row(
    appointment: Appointment, action: str, token: str, staff: str, now: datetime
) -> VisitAction:
    return VisitAction(
        appointment_id=appointment.id,
        action=action,
        token=token,
        staff=staff,
        at=now,
        before_status=appointment.status,
        before_confirmation=appointment.confirmation,
        before_end_at=appointment.end_at,
    )


def _kept(session: Session, row: VisitAction, text: str) -> Done:
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the same form, posted twice at once: the other post did it
        session.rollback()
        return Done(ALREADY)
    return Done(text)


def _as_event(
    session: Session,
    clinic: Clinic,
    appointment: Appointment,
    row: VisitAction,
    event_type: str,
    changes: dict[str, Any],
    now: datetime,
) -> Done:
    """The action as a booking event about the visit as stored, applied with the action's row
    in one transaction."""
    booking = stored_booking(session, appointment.id)
    assert booking is not None  # the caller holds the appointment
    booking["appointment"] |= changes
    digest = hashlib.sha256(f"{appointment.id}\n{row.action}\n{row.token}".encode()).hexdigest()
    row.event_id = f"staff:{digest[:40]}"
    # The desk's word is the latest about the visit, even if the booking system's clock runs
    # ahead of ours.
    occurred = max(now, appointment.last_event_at)
    payload = {"id": row.event_id, "type": event_type, "occurred_at": occurred.isoformat()}
    was = appointment.status
    session.add(row)
    try:
        outcome = apply_event(session, clinic, payload | booking, now)
    except (EventConflict, IntegrityError):  # the same form, posted twice at once
        session.rollback()
        return Done(ALREADY)
    except InvalidEvent as exc:
        session.rollback()
        raise Refused(f"Not changed: {exc}.") from None
    if outcome.duplicate:
        return Done(ALREADY)
    _withdraw_staff_reminders(session, appointment, now)
    return Done(_said(row, was))


def _withdraw_staff_reminders(session: Session, appointment: Appointment, now: datetime) -> None:
    """A re-plan leaves staff reminders alone; once the visit is off they are moot too."""
    if appointment.status == "booked":
        return
    waiting = visit_actions.pending_staff_reminders(appointment.id)
    why = f"appointment {appointment.status}"
    transition(session, waiting, PENDING, Status.CANCELLED, now, why, reason=why)
    session.commit()


def _said(row: VisitAction, was: str) -> str:
    if row.action == "undo":
        return f"Undone: the visit is booked again (it was {was.replace('_', '-')})."
    return {
        "cancel": "Cancelled. The patient is told, and their reminders are withdrawn.",
        "no_show": "Marked as a no-show. Its aftercare is withdrawn.",
        "complete": "Marked completed. Aftercare follows from the end time given.",
    }[row.action]


def _end(appointment: Appointment, clinic: Clinic, ended: str, now: datetime) -> datetime:
    """The real end of the visit, given as a local time on its day."""
    location = clinic.location(appointment.location_id)
    if location is None:
        raise Refused("This visit's location is no longer in the clinic's settings.")
    if not ended:
        return min(now, appointment.end_at)
    given = END_TIME.fullmatch(ended)
    if given is None or int(given[1]) > 23 or int(given[2]) > 59:
        raise Refused("Give the time the visit ended, like 10:45.")
    day = appointment.start_at.astimezone(location.zone).date()
    end = datetime.combine(day, time(int(given[1]), int(given[2])), location.zone)
    if end <= appointment.start_at:
        raise Refused("The end time must be after the visit's start.")
    if end > now:
        raise Refused("The end time must not be later than now.")
    return end


def _left_as(appointment: Appointment) -> str:
    if appointment.status == "booked" and appointment.confirmation == Confirmation.CONFIRMED:
        return "confirmed"
    return appointment.status


def _state(appointment: Appointment, now: datetime) -> str:
    if appointment.status != "booked":
        return appointment.status.replace("_", "-")
    if appointment.start_at <= now:
        return "under way or over"
    return "already confirmed" if _left_as(appointment) == "confirmed" else "upcoming"


def _verb(action: str) -> str:
    return {
        "confirm": "confirmed",
        "cancel": "cancelled",
        "no_show": "marked a no-show",
        "complete": "marked completed",
    }.get(action, "changed that way")


def undoable(history: list[VisitAction], appointment: Appointment) -> VisitAction | None:
    """The action an Undo button is offered for: the latest, if it can still be undone."""
    latest = next((a for a in reversed(history) if a.action != "undo"), None)
    if latest is None or latest.undone_at is not None or latest.action not in LEFT:
        return None
    return latest if _left_as(appointment) == LEFT[latest.action] else None


@dataclass(frozen=True)
class Panel:
    """The appointment page's desk: what may be done, what was done, what a reminder would do."""

    offered: list[str]
    history: list[VisitAction]
    undoable: VisitAction | None
    reminders: dict[str, ReminderOutcome]  # by channel, while the visit is upcoming
    ended: str  # the end time the completed form suggests, local HH:MM


def panel(session: Session, clinic: Clinic, appointment: Appointment, now: datetime) -> Panel:
    history = visit_actions.for_appointment(session, appointment.id)
    upcoming = appointment.status == "booked" and appointment.start_at > now
    channels: tuple[ChannelName, ...] = ("sms", "email") if upcoming else ()
    location = clinic.location(appointment.location_id)
    zone = location.zone if location else UTC
    ended = min(now, appointment.end_at).astimezone(zone).strftime("%H:%M")
    return Panel(
        offered(appointment, now),
        history,
        undoable(history, appointment),
        {c: reminder_now(session, clinic, appointment, c, now) for c in channels},
        ended,
    )


def form_token() -> str:
    """A fresh one-time token for a form whose second posting must change nothing."""
    return secrets.token_urlsafe(24)
