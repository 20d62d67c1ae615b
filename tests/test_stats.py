"""Weekly numbers per location, counted in the location's own weeks, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from notifier.models import Appointment, Notification, Patient, SmsOptOut
from notifier.runtime import Runtime
from notifier.stats import stats
from tests.conftest import new_york

NOW = new_york(2026, 11, 30, 9, 0)  # Monday of ISO week 49


def patient(session: Session, patient_id: str, phone: str) -> None:
    session.add(
        Patient(
            id=patient_id, first_name="Pat", last_name="", phone=phone, email=None,
            language="en", consent_sms=True, consent_email=True, consent_marketing=False,
            updated_at=NOW,
        )
    )  # fmt: skip


def visit(
    session: Session,
    appointment_id: str,
    patient_id: str,
    location: str,
    start: datetime,
    status: str = "booked",
    confirmation: str = "unconfirmed",
) -> None:
    booked = start - timedelta(days=7)
    session.add(
        Appointment(
            id=appointment_id, patient_id=patient_id, location_id=location,
            treatment_id="botox-cosmetic", provider=None, start_at=start,
            end_at=start + timedelta(minutes=30), status=status, confirmation=confirmation,
            booked_at=booked, rescheduled=False, last_event_at=booked, created_at=booked,
            updated_at=booked,
        )
    )  # fmt: skip


def message(
    session: Session,
    appointment_id: str,
    status: str,
    at: datetime,
    channel: str = "sms",
    ask: bool = True,
) -> None:
    """The 48-hour reminder (which asks to confirm) in `status`, sent or last changed `at`."""
    reached = status in ("sent", "delivered", "undelivered")
    patient_id = session.get_one(Appointment, appointment_id).patient_id
    session.add(
        Notification(
            appointment_id=appointment_id, patient_id=patient_id,
            kind="reminder", channel=channel, slot="48h", ask_confirm=ask, planned_for=at,
            due_at=at, expires_at=at + timedelta(days=2), status=status, attempts=1,
            created_at=at, updated_at=at, sent_at=at if reached else None,
        )
    )  # fmt: skip


def opted_out(session: Session, phone: str, at: datetime) -> None:
    session.add(SmsOptOut(phone=phone, active=True, source="keyword:STOP", opted_out_at=at))


@pytest.fixture
def numbers(rt: Runtime) -> dict[str, Any]:
    with rt.sessions() as s:
        for n, phone in enumerate(("+17185550101", "+17185550102", "+17185550103")):
            patient(s, f"pat-fh{n + 1}", phone)
        patient(s, "pat-both", "+15165550104")
        patient(s, "pat-fh4", "+17185550105")
        patient(s, "pat-old", "+17185550106")
        s.flush()
        # Forest Hills, week 48: asked and confirmed; asked, silent; the ask failed, no-show.
        visit(
            s,
            "apt-fh1",
            "pat-fh1",
            "forest-hills",
            new_york(2026, 11, 24, 10),
            "booked",
            "confirmed",
        )
        # 23:30 on Sunday in New York is Monday in UTC: it still belongs to week 48.
        visit(s, "apt-fh2", "pat-fh2", "forest-hills", new_york(2026, 11, 29, 23, 30))
        visit(s, "apt-fh3", "pat-fh3", "forest-hills", new_york(2026, 11, 25, 11), "no_show")
        visit(s, "apt-fh4", "pat-fh4", "forest-hills", new_york(2026, 11, 26, 9), "cancelled")
        visit(s, "apt-old", "pat-old", "forest-hills", new_york(2026, 10, 1, 9), "completed")
        # One patient, both locations: week 49 here, week 48 in Manhasset.
        visit(
            s,
            "apt-both",
            "pat-both",
            "forest-hills",
            new_york(2026, 12, 2, 10),
            "booked",
            "confirmed",
        )
        visit(
            s, "apt-mh1", "pat-both", "manhasset", new_york(2026, 11, 23, 15), "booked", "confirmed"
        )
        s.flush()
        message(s, "apt-fh1", "delivered", new_york(2026, 11, 22, 10))  # a Sunday: week 47
        message(s, "apt-fh1", "delivered", new_york(2026, 11, 22, 10), channel="email")
        message(s, "apt-fh2", "sent", new_york(2026, 11, 27, 23, 30))
        message(s, "apt-fh3", "failed", new_york(2026, 11, 23, 11))
        message(s, "apt-fh4", "delivered", new_york(2026, 11, 24, 9))
        message(s, "apt-both", "scheduled", new_york(2026, 11, 30, 10))
        message(s, "apt-mh1", "delivered", new_york(2026, 11, 21, 15))
        opted_out(s, "+17185550102", new_york(2026, 11, 28, 12))
        opted_out(s, "+15165550104", new_york(2026, 11, 30, 8))
        opted_out(s, "+19175550199", new_york(2026, 11, 30, 8))  # no patient has this number
        opted_out(s, "+17185550101", new_york(2026, 9, 1, 8))  # before the eight weeks
        s.commit()
        return stats(s, rt.clinic, NOW)


def week(numbers: dict[str, Any], location: str, key: str) -> dict[str, Any]:
    place = next(loc for loc in numbers["locations"] if loc["id"] == location)
    return next(w for w in place["weeks"] if w["week"] == key)


def test_eight_iso_weeks_per_location_oldest_first(numbers: dict[str, Any]) -> None:
    assert [loc["id"] for loc in numbers["locations"]] == ["manhasset", "forest-hills"]
    for location in numbers["locations"]:
        assert [w["week"] for w in location["weeks"]] == [f"2026-W{n}" for n in range(42, 50)]
        assert location["weeks"][-1]["starts"] == "2026-11-30"


def test_a_week_of_visits_counts_confirmations_of_those_asked(numbers: dict[str, Any]) -> None:
    assert week(numbers, "forest-hills", "2026-W48") == {
        "week": "2026-W48",
        "starts": "2026-11-23",
        "appointments": 3,  # the cancelled one is not a visit
        "asked": 2,  # a reminder that failed asked nobody
        "confirmed": 1,
        "no_shows": 1,
        "no_shows_rebooked": 0,
        "sms": 3,  # sent, failed, and the cancelled visit's delivered one
        "sms_delivered": 1,
        "opt_outs": 1,
        "confirmation_rate": 0.5,
        "delivery_rate": 0.3333,
        "no_show_rebook_rate": 0.0,
    }


def test_texts_count_in_the_week_they_went_out(numbers: dict[str, Any]) -> None:
    w47 = week(numbers, "forest-hills", "2026-W47")
    assert (w47["appointments"], w47["sms"], w47["sms_delivered"]) == (0, 1, 1)
    assert (w47["delivery_rate"], w47["confirmation_rate"]) == (1.0, None)


def test_an_opt_out_belongs_to_every_location_that_texted_the_number(
    numbers: dict[str, Any],
) -> None:
    assert week(numbers, "forest-hills", "2026-W49")["opt_outs"] == 1
    assert week(numbers, "manhasset", "2026-W49")["opt_outs"] == 1
    total = sum(w["opt_outs"] for loc in numbers["locations"] for w in loc["weeks"])
    assert total == 3


def test_nothing_to_divide_gives_no_rate(numbers: dict[str, Any]) -> None:
    w49 = week(numbers, "forest-hills", "2026-W49")
    assert (w49["appointments"], w49["asked"], w49["sms"]) == (1, 0, 0)
    assert (w49["confirmation_rate"], w49["delivery_rate"]) == (None, None)
    assert week(numbers, "manhasset", "2026-W48")["confirmation_rate"] == 1.0
    quiet = week(numbers, "manhasset", "2026-W42")
    assert {k: v for k, v in quiet.items() if k not in ("week", "starts")} == {
        "appointments": 0, "asked": 0, "confirmed": 0, "no_shows": 0, "no_shows_rebooked": 0,
        "sms": 0, "sms_delivered": 0, "opt_outs": 0, "confirmation_rate": None,
        "delivery_rate": None, "no_show_rebook_rate": None,
    }  # fmt: skip


def test_fewer_weeks_on_request(rt: Runtime) -> None:
    with rt.sessions() as session:
        answer = stats(session, rt.clinic, NOW, weeks=2)
    assert [w["week"] for w in answer["locations"][0]["weeks"]] == ["2026-W48", "2026-W49"]


def test_at_least_one_week(rt: Runtime) -> None:
    with rt.sessions() as session, pytest.raises(ValueError, match="weeks must be 1 or more"):
        stats(session, rt.clinic, NOW, weeks=0)
