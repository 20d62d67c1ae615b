"""Weekly numbers per location: how many visits, how many patients confirmed when asked, how
many texts arrived, who opted out, who did not come.

Rows are grouped in Python, in each location's time zone: SQLite and PostgreSQL name their
date functions differently, and a week starts at local midnight, not UTC's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from .clinic import Clinic
from .store import patients
from .store import stats as rows_of

COUNTS = (
    "appointments",
    "asked",
    "confirmed",
    "no_shows",
    "no_shows_rebooked",
    "sms",
    "sms_delivered",
    "opt_outs",
)
# A no-show counts as won back when the patient books again within this long of it.
REBOOKED_WITHIN = timedelta(days=14)

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
    _count_rebooked_no_shows(session, tally, zones, since, until)
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
        "no_show_rebook_rate": _rate(counts["no_shows_rebooked"], counts["no_shows"]),
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
    rows = rows_of.appointments_starting(session, since, until)
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
    for location_id, status, at in rows_of.sms_outcomes(session, since, until):
        if location_id in zones:
            counts = tally[location_id][iso_week(at, zones[location_id])]
            counts["sms"] += 1
            counts["sms_delivered"] += status == "delivered"


def _count_opt_outs(
    session: Session, tally: Tally, zones: dict[str, ZoneInfo], since: datetime, until: datetime
) -> None:
    rows = rows_of.opt_outs(session, since, until)
    places = patients.locations_by_phone(session, [phone for phone, _ in rows])
    for phone, at in rows:
        for location_id in places.get(phone, set()) & zones.keys():
            tally[location_id][iso_week(at, zones[location_id])]["opt_outs"] += 1


def _count_rebooked_no_shows(
    session: Session, tally: Tally, zones: dict[str, ZoneInfo], since: datetime, until: datetime
) -> None:
    missed = rows_of.no_shows(session, since, until)
    bookings = defaultdict(list)
    for patient_id, appointment_id, created_at in rows_of.bookings_of(
        session, {row.patient_id for row in missed}, since
    ):
        bookings[patient_id].append((appointment_id, created_at))
    for appointment_id, location_id, start, patient_id, marked in missed:
        if location_id not in zones:
            continue
        won_back = any(
            other != appointment_id and marked < created <= marked + REBOOKED_WITHIN
            for other, created in bookings[patient_id]
        )
        tally[location_id][iso_week(start, zones[location_id])]["no_shows_rebooked"] += won_back
