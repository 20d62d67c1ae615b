"""What the dashboard's pages list, read from the database for one location or all of them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy.orm import Session

from ..clinic import Clinic, Location
from ..models import (
    Appointment,
    EmailOptOut,
    InboundMessage,
    Notification,
    Patient,
    SmsOptOut,
)
from ..store import appointments, notifications, patients, replies
from ..store import email_opt_outs as email_opt_out_rows
from ..store import opt_outs as sms_opt_outs

# The confirmation question goes out 48 hours ahead: past that, a silent patient needs a call.
UNCONFIRMED_WITHIN = timedelta(hours=48)
LIST_LIMIT = 200
HANDLED_LIMIT = 20


def in_scope(clinic: Clinic, location_id: str | None) -> list[Location]:
    """The locations a view covers: the chosen one, or all of them."""
    chosen = clinic.location(location_id) if location_id else None
    return [chosen] if chosen else list(clinic.locations)


@dataclass(frozen=True)
class BoardVisit:
    appointment: Appointment
    location: Location

    @property
    def start(self) -> datetime:
        return self.appointment.start_at.astimezone(self.location.zone)


@dataclass
class Day:
    date: date
    visits: list[BoardVisit] = field(default_factory=list)

    @property
    def unconfirmed(self) -> int:
        return sum(_awaits_confirmation(v.appointment) for v in self.visits)


def _awaits_confirmation(a: Appointment) -> bool:
    return a.status == "booked" and a.confirmation == "unconfirmed"


def _visits(locations: list[Location], listed: list[Appointment]) -> list[BoardVisit]:
    by_id = {loc.id: loc for loc in locations}
    return [BoardVisit(a, by_id[a.location_id]) for a in listed]


def days_ahead(
    session: Session, clinic: Clinic, location_id: str | None, now: datetime, days: int
) -> list[Day]:
    """Every appointment from local midnight today for `days` days, empty days included."""
    locations = in_scope(clinic, location_id)
    windows = {loc.id: _local_days(loc, now, days) for loc in locations}
    start = min(w[0] for w in windows.values())
    end = max(w[1] for w in windows.values())
    ids = [loc.id for loc in locations]
    visits = _visits(locations, appointments.starting_between(session, ids, start, end))
    first = now.astimezone(locations[0].zone).date()
    board = {first + timedelta(days=i): Day(first + timedelta(days=i)) for i in range(days)}
    for v in visits:
        low, high = windows[v.location.id]
        if low <= v.appointment.start_at < high:
            board.setdefault(v.start.date(), Day(v.start.date())).visits.append(v)
    return sorted(board.values(), key=lambda d: d.date)


def _local_days(location: Location, now: datetime, days: int) -> tuple[datetime, datetime]:
    today = now.astimezone(location.zone).date()
    start = datetime.combine(today, time(), location.zone)
    return start, datetime.combine(today + timedelta(days=days), time(), location.zone)


def unconfirmed_soon(
    session: Session, clinic: Clinic, location_id: str | None, now: datetime
) -> list[Day]:
    """Booked, still unconfirmed, and starting within UNCONFIRMED_WITHIN: the call list."""
    locations = in_scope(clinic, location_id)
    ids = [loc.id for loc in locations]
    listed = appointments.unconfirmed_between(session, ids, now, now + UNCONFIRMED_WITHIN)
    days: dict[date, Day] = {}
    for v in _visits(locations, listed):
        days.setdefault(v.start.date(), Day(v.start.date())).visits.append(v)
    return list(days.values())


@dataclass(frozen=True)
class Counts:
    unconfirmed_soon: int
    inbox: int
    failed: int


def counts(session: Session, clinic: Clinic, location_id: str | None, now: datetime) -> Counts:
    """The numbers in the navigation: what is waiting for someone."""
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    return Counts(
        unconfirmed_soon=appointments.count_unconfirmed_between(
            session, ids, now, now + UNCONFIRMED_WITHIN
        ),
        inbox=replies.count_needing_staff(session, ids),
        failed=notifications.count_failed_at(session, ids),
    )


@dataclass(frozen=True)
class InboxReply:
    message: InboundMessage
    patient: Patient | None
    appointment: Appointment | None
    location: Location


def inbox(session: Session, clinic: Clinic, location_id: str | None) -> list[InboxReply]:
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    return _replies(session, clinic, replies.needing_staff(session, ids, LIST_LIMIT))


def recently_handled(session: Session, clinic: Clinic, location_id: str | None) -> list[InboxReply]:
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    return _replies(session, clinic, replies.recently_handled(session, ids, HANDLED_LIMIT))


def _replies(session: Session, clinic: Clinic, messages: list[InboundMessage]) -> list[InboxReply]:
    listed = []
    for m in messages:
        appointment = appointments.by_id(session, m.appointment_id) if m.appointment_id else None
        patient = patients.by_id(session, m.patient_id) if m.patient_id else None
        location = clinic.location(appointment.location_id) if appointment else None
        listed.append(InboxReply(m, patient, appointment, location or clinic.locations[0]))
    return listed


@dataclass(frozen=True)
class OptOut:
    row: SmsOptOut
    patients: list[Patient]
    location_ids: set[str]


def opt_outs(session: Session, clinic: Clinic, location_id: str | None) -> list[OptOut]:
    """Active SMS opt-outs, each with the patients behind the number and where they visit."""
    rows = sms_opt_outs.active(session)
    phones = [r.phone for r in rows]
    places = patients.locations_by_phone(session, phones)
    behind: dict[str, list[Patient]] = defaultdict(list)
    for p in patients.with_phones(session, phones):
        behind[p.phone or ""].append(p)
    listed = [OptOut(r, behind[r.phone], places.get(r.phone, set())) for r in rows]
    if location_id and clinic.location(location_id):
        listed = [o for o in listed if location_id in o.location_ids]
    return listed[:LIST_LIMIT]


def email_opt_outs(session: Session) -> list[EmailOptOut]:
    """The addresses that unsubscribed, the latest first. An address is not tied to one
    location, so every location's staff see them all."""
    return email_opt_out_rows.latest(session, LIST_LIMIT)


@dataclass(frozen=True)
class Failure:
    notification: Notification
    location: Location

    @property
    def why(self) -> str:
        """The provider's own words when it gave some (the failed history row's detail)."""
        failed = [e for e in self.notification.history if e.status == "failed"]
        return (failed[-1].detail if failed else None) or self.notification.reason or ""


def failures(session: Session, clinic: Clinic, location_id: str | None) -> list[Failure]:
    by_id = {loc.id: loc for loc in in_scope(clinic, location_id)}
    failed = notifications.failed_at(session, list(by_id), LIST_LIMIT)
    return [Failure(n, by_id[n.appointment.location_id]) for n in failed]
