"""What the dashboard's pages list, read from the database for one location or all of them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from ..clinic import Clinic, Location
from ..models import Appointment, InboundMessage, Notification, Patient, SmsOptOut
from ..stats import locations_by_phone

# The confirmation question goes out 48 hours ahead: past that, a silent patient needs a call.
UNCONFIRMED_WITHIN = timedelta(hours=48)
LIST_LIMIT = 200


def in_scope(clinic: Clinic, location_id: str | None) -> list[Location]:
    """The locations a view covers: the chosen one, or all of them."""
    chosen = clinic.location(location_id) if location_id else None
    return [chosen] if chosen else list(clinic.locations)


@dataclass(frozen=True)
class Visit:
    appointment: Appointment
    location: Location

    @property
    def start(self) -> datetime:
        return self.appointment.start_at.astimezone(self.location.zone)


@dataclass
class Day:
    date: date
    visits: list[Visit] = field(default_factory=list)

    @property
    def unconfirmed(self) -> int:
        return sum(_awaits_confirmation(v.appointment) for v in self.visits)


def _awaits_confirmation(a: Appointment) -> bool:
    return a.status == "booked" and a.confirmation == "unconfirmed"


def _visits(session: Session, locations: list[Location], *criteria: Any) -> list[Visit]:
    by_id = {loc.id: loc for loc in locations}
    query = (
        select(Appointment)
        .where(Appointment.location_id.in_(by_id), *criteria)
        .options(selectinload(Appointment.patient))
        .order_by(Appointment.start_at, Appointment.id)
    )
    return [Visit(a, by_id[a.location_id]) for a in session.scalars(query)]


def days_ahead(
    session: Session, clinic: Clinic, location_id: str | None, now: datetime, days: int
) -> list[Day]:
    """Every appointment from local midnight today for `days` days, empty days included."""
    locations = in_scope(clinic, location_id)
    windows = {loc.id: _local_days(loc, now, days) for loc in locations}
    start = min(w[0] for w in windows.values())
    end = max(w[1] for w in windows.values())
    visits = _visits(session, locations, Appointment.start_at >= start, Appointment.start_at < end)
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
    visits = _visits(session, in_scope(clinic, location_id), *_unconfirmed_soon(now))
    days: dict[date, Day] = {}
    for v in visits:
        days.setdefault(v.start.date(), Day(v.start.date())).visits.append(v)
    return list(days.values())


def _unconfirmed_soon(now: datetime) -> tuple[Any, ...]:
    return (
        Appointment.status == "booked",
        Appointment.confirmation == "unconfirmed",
        Appointment.start_at > now,
        Appointment.start_at <= now + UNCONFIRMED_WITHIN,
    )


@dataclass(frozen=True)
class Counts:
    unconfirmed_soon: int
    inbox: int
    failed: int


def counts(session: Session, clinic: Clinic, location_id: str | None, now: datetime) -> Counts:
    """The numbers in the navigation: what is waiting for someone."""
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    unconfirmed = select(func.count()).where(
        Appointment.location_id.in_(ids), *_unconfirmed_soon(now)
    )
    failed = _failed_query(ids).with_only_columns(func.count())
    inbox = _inbox_query(ids).with_only_columns(func.count())
    return Counts(
        unconfirmed_soon=session.scalar(unconfirmed) or 0,
        inbox=session.scalar(inbox) or 0,
        failed=session.scalar(failed) or 0,
    )


@dataclass(frozen=True)
class Reply:
    message: InboundMessage
    patient: Patient | None
    appointment: Appointment | None
    location: Location


def _inbox_query(location_ids: list[str]) -> Select[tuple[InboundMessage]]:
    # A reply we could not match to an appointment shows in every location's inbox: someone
    # has to read it, and no one location can be sure it is not theirs.
    return (
        select(InboundMessage)
        .outerjoin(Appointment, InboundMessage.appointment_id == Appointment.id)
        .where(
            InboundMessage.needs_staff.is_(True),
            InboundMessage.handled_at.is_(None),
            or_(InboundMessage.appointment_id.is_(None), Appointment.location_id.in_(location_ids)),
        )
    )


def inbox(session: Session, clinic: Clinic, location_id: str | None) -> list[Reply]:
    locations = in_scope(clinic, location_id)
    query = _inbox_query([loc.id for loc in locations]).order_by(InboundMessage.received_at)
    return _replies(session, clinic, session.scalars(query.limit(LIST_LIMIT)))


def recently_handled(session: Session, clinic: Clinic, location_id: str | None) -> list[Reply]:
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    query = (
        select(InboundMessage)
        .outerjoin(Appointment, InboundMessage.appointment_id == Appointment.id)
        .where(
            InboundMessage.handled_at.is_not(None),
            or_(InboundMessage.appointment_id.is_(None), Appointment.location_id.in_(ids)),
        )
        .order_by(InboundMessage.handled_at.desc())
        .limit(20)
    )
    return _replies(session, clinic, session.scalars(query))


def _replies(session: Session, clinic: Clinic, messages: Any) -> list[Reply]:
    replies = []
    for m in messages:
        appointment = session.get(Appointment, m.appointment_id) if m.appointment_id else None
        patient = session.get(Patient, m.patient_id) if m.patient_id else None
        location = clinic.location(appointment.location_id) if appointment else None
        replies.append(Reply(m, patient, appointment, location or clinic.locations[0]))
    return replies


@dataclass(frozen=True)
class OptOut:
    row: SmsOptOut
    patients: list[Patient]
    location_ids: set[str]


def opt_outs(session: Session, clinic: Clinic, location_id: str | None) -> list[OptOut]:
    """Active SMS opt-outs, each with the patients behind the number and where they visit."""
    rows = list(
        session.scalars(
            select(SmsOptOut)
            .where(SmsOptOut.active.is_(True))
            .order_by(SmsOptOut.opted_out_at.desc())
        )
    )
    phones = [r.phone for r in rows]
    places = locations_by_phone(session, phones)
    patients: dict[str, list[Patient]] = defaultdict(list)
    for p in session.scalars(select(Patient).where(Patient.phone.in_(phones))):
        patients[p.phone or ""].append(p)
    listed = [OptOut(r, patients[r.phone], places.get(r.phone, set())) for r in rows]
    if location_id and clinic.location(location_id):
        listed = [o for o in listed if location_id in o.location_ids]
    return listed[:LIST_LIMIT]


@dataclass(frozen=True)
class Failure:
    notification: Notification
    location: Location

    @property
    def why(self) -> str:
        """The provider's own words when it gave some (the failed history row's detail)."""
        failed = [e for e in self.notification.history if e.status == "failed"]
        return (failed[-1].detail if failed else None) or self.notification.reason or ""


def _failed_query(location_ids: list[str]) -> Select[tuple[Notification]]:
    return (
        select(Notification)
        .join(Appointment, Notification.appointment_id == Appointment.id)
        .where(Notification.status == "failed", Appointment.location_id.in_(location_ids))
    )


def failures(session: Session, clinic: Clinic, location_id: str | None) -> list[Failure]:
    by_id = {loc.id: loc for loc in in_scope(clinic, location_id)}
    query = (
        _failed_query(list(by_id))
        .options(
            selectinload(Notification.appointment).selectinload(Appointment.patient),
            selectinload(Notification.history),
        )
        .order_by(Notification.updated_at.desc())
        .limit(LIST_LIMIT)
    )
    return [Failure(n, by_id[n.appointment.location_id]) for n in session.scalars(query)]
