"""Weekly numbers per location: how many visits, how many patients confirmed when asked, how
many texts arrived, who opted out, who did not come.

Rows are grouped in Python, in each location's time zone: SQLite and PostgreSQL name their
date functions differently, and a week starts at local midnight, not UTC's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from .clinic import Clinic
from .models import Appointment, Notification, Patient, SmsOptOut

# Messages that reached the patient's phone, so the question was seen.
ASKED = ("sent", "delivered")
# Where an SMS can end once it went to the provider: the delivery rate's denominator.
SMS_OUTCOMES = ("sent", "delivered", "undelivered", "failed")
COUNTS = ("appointments", "asked", "confirmed", "no_shows", "sms", "sms_delivered", "opt_outs")

Tally = dict[str, dict[str, Counter[str]]]  # location id -> ISO week -> counts


def stats(session: Session, clinic: Clinic, now: datetime, weeks: int = 8) -> dict[str, Any]:
    """The last `weeks` ISO weeks (this one included) per location, oldest first. Rates are
    None where nothing was there to divide."""
    if weeks < 1:
        raise ValueError(f"weeks must be 1 or more, not {weeks}")
    calendars = [(loc, _mondays(loc.zone, now, weeks)) for loc in clinic.locations]
    since = min(_midnight(mondays[0], loc.zone) for loc, mondays in calendars)
    until = max(_midnight(mondays[-1], loc.zone) for loc, mondays in calendars)
    until += timedelta(days=7)
    zones = {loc.id: loc.zone for loc in clinic.locations}
    tally: Tally = defaultdict(lambda: defaultdict(Counter))
    _count_appointments(session, tally, zones, since, until)
    _count_sms(session, tally, zones, since, until)
    _count_opt_outs(session, tally, zones, since, until)
    return {
        "generated_at": now.isoformat(),
        "locations": [
            {"id": loc.id, "name": loc.name, "weeks": [_week(tally[loc.id], d) for d in mondays]}
            for loc, mondays in calendars
        ],
    }


def _week(tally: dict[str, Counter[str]], monday: date) -> dict[str, Any]:
    key = _key(monday)
    counts = tally[key]
    return {
        "week": key,
        "starts": monday.isoformat(),
        **{name: counts[name] for name in COUNTS},
        "confirmation_rate": _rate(counts["confirmed"], counts["asked"]),
        "delivery_rate": _rate(counts["sms_delivered"], counts["sms"]),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def iso_week(moment: datetime, zone: ZoneInfo) -> str:
    return _key(moment.astimezone(zone).date())


def _mondays(zone: ZoneInfo, now: datetime, weeks: int) -> list[date]:
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    return [monday - timedelta(weeks=i) for i in reversed(range(weeks))]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone)


def _count_appointments(
    session: Session, tally: Tally, zones: dict[str, ZoneInfo], since: datetime, until: datetime
) -> None:
    asked = exists().where(
        Notification.appointment_id == Appointment.id,
        Notification.ask_confirm.is_(True),
        Notification.status.in_(ASKED),
    )
    rows = session.execute(
        select(
            Appointment.location_id,
            Appointment.start_at,
            Appointment.status,
            Appointment.confirmation,
            asked.label("asked"),
        ).where(Appointment.start_at >= since, Appointment.start_at < until)
    )
    for location_id, start, status, confirmation, was_asked in rows:
        if location_id not in zones or status == "cancelled":
            continue
        counts = tally[location_id][iso_week(start, zones[location_id])]
        counts["appointments"] += 1
        counts["no_shows"] += status == "no_show"
        counts["asked"] += bool(was_asked)
        counts["confirmed"] += bool(was_asked) and confirmation == "confirmed"


def _count_sms(
    session: Session, tally: Tally, zones: dict[str, ZoneInfo], since: datetime, until: datetime
) -> None:
    # A text that failed before the provider took it has no sent_at: its last change dates it.
    when = func.coalesce(Notification.sent_at, Notification.updated_at)
    rows = session.execute(
        select(Appointment.location_id, Notification.status, when)
        .join(Appointment, Notification.appointment_id == Appointment.id)
        .where(
            Notification.channel == "sms",
            Notification.status.in_(SMS_OUTCOMES),
            when >= since,
            when < until,
        )
    )
    for location_id, status, at in rows:
        if location_id in zones:
            counts = tally[location_id][iso_week(at, zones[location_id])]
            counts["sms"] += 1
            counts["sms_delivered"] += status == "delivered"


def _count_opt_outs(
    session: Session, tally: Tally, zones: dict[str, ZoneInfo], since: datetime, until: datetime
) -> None:
    rows = session.execute(
        select(SmsOptOut.phone, SmsOptOut.opted_out_at).where(
            SmsOptOut.opted_out_at >= since, SmsOptOut.opted_out_at < until
        )
    ).all()
    places = locations_by_phone(session, [phone for phone, _ in rows])
    for phone, at in rows:
        for location_id in places.get(phone, set()) & zones.keys():
            tally[location_id][iso_week(at, zones[location_id])]["opt_outs"] += 1


def locations_by_phone(session: Session, phones: Iterable[str]) -> dict[str, set[str]]:
    """Where the patients behind each phone number have had appointments: an opt-out belongs
    to every location that texted that number."""
    wanted = list(set(phones))
    if not wanted:
        return {}
    rows = session.execute(
        select(Patient.phone, Appointment.location_id)
        .join(Appointment, Appointment.patient_id == Patient.id)
        .where(Patient.phone.in_(wanted))
        .distinct()
    )
    places: dict[str, set[str]] = defaultdict(set)
    for phone, location_id in rows:
        places[phone].add(location_id)
    return dict(places)
