"""The timing policy alone: a pure function, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.clinic import Clinic, QuietHours, load_clinic
from notifier.plan import Recipient, Visit, next_allowed, plan
from notifier.settings import EXAMPLE_CLINIC

NY = ZoneInfo("America/New_York")
START = datetime(2026, 12, 3, 10, 0, tzinfo=NY)
END = START + timedelta(minutes=30)
BOOKED = datetime(2026, 11, 30, 9, 0, tzinfo=NY)
EVERYONE = Recipient(zone=NY, sms=True, email=True, marketing=True)


@pytest.fixture(scope="module")
def clinic() -> Clinic:
    return load_clinic(Path(EXAMPLE_CLINIC))


def summary(
    clinic: Clinic, visit: Visit, who: Recipient = EVERYONE, now: datetime = BOOKED
) -> list:
    treatment = clinic.treatment("botox-cosmetic")
    assert treatment is not None
    planned = plan(visit, who, treatment, clinic.policy, now)
    planned.sort(key=lambda p: (p.due_at, p.kind, p.channel))
    return [(f"{p.due_at.astimezone(NY):%m-%d %H:%M}", p.kind, p.channel) for p in planned]


def test_a_booking_plans_the_whole_course(clinic: Clinic) -> None:
    assert summary(clinic, Visit("booked", START, END, BOOKED)) == [
        ("11-30 09:00", "confirmation", "email"),
        ("11-30 09:00", "confirmation", "sms"),
        ("12-01 10:00", "reminder", "email"),
        ("12-01 10:00", "reminder", "sms"),
        ("12-03 08:00", "reminder", "sms"),
        ("12-03 11:30", "aftercare", "email"),
        ("12-03 11:30", "aftercare", "sms"),
        ("02-25 10:30", "rebook", "sms"),
    ]


def test_booked_inside_48_hours_skips_the_48_hour_reminder(clinic: Clinic) -> None:
    late = START - timedelta(hours=20)
    kinds = summary(clinic, Visit("booked", START, END, late), now=late)
    assert [k for k in kinds if k[1] == "reminder"] == [("12-03 08:00", "reminder", "sms")]


def test_the_same_inputs_give_the_same_plan(clinic: Clinic) -> None:
    visit = Visit("booked", START, END, BOOKED)
    assert summary(clinic, visit) == summary(clinic, visit)


def test_cancelled_plans_a_cancellation_by_sms_and_by_email(clinic: Clinic) -> None:
    # The email carries the calendar file that takes the visit out of the patient's calendar.
    cancelled_at = BOOKED + timedelta(hours=3)
    visit = Visit("cancelled", START, END, BOOKED, cancelled_at=cancelled_at)
    assert summary(clinic, visit, now=cancelled_at) == [
        ("11-30 12:00", "cancellation", "email"),
        ("11-30 12:00", "cancellation", "sms"),
    ]


def test_cancellation_goes_by_email_alone_without_sms_consent(clinic: Clinic) -> None:
    who = Recipient(zone=NY, sms=False, email=True, marketing=False)
    visit = Visit("cancelled", START, END, BOOKED, cancelled_at=BOOKED)
    assert summary(clinic, visit, who) == [("11-30 09:00", "cancellation", "email")]


def test_no_show_plans_nothing(clinic: Clinic) -> None:
    assert summary(clinic, Visit("no_show", START, END, BOOKED), now=END) == []


def test_completed_plans_aftercare_from_the_real_end(clinic: Clinic) -> None:
    real_end = END + timedelta(minutes=25)
    assert summary(clinic, Visit("completed", START, real_end, BOOKED), now=real_end) == [
        ("12-03 11:55", "aftercare", "email"),
        ("12-03 11:55", "aftercare", "sms"),
        ("02-25 10:55", "rebook", "sms"),
    ]


def test_rebook_goes_by_email_when_texts_are_not_allowed(clinic: Clinic) -> None:
    who = Recipient(zone=NY, sms=False, email=True, marketing=True)
    planned = summary(clinic, Visit("completed", START, END, BOOKED), who, now=END)
    assert ("02-25 10:30", "rebook", "email") in planned


def test_stale_notifications_are_left_out(clinic: Clinic) -> None:
    after = START + timedelta(minutes=5)
    assert [k[1] for k in summary(clinic, Visit("booked", START, END, BOOKED), now=after)] == [
        "aftercare",
        "aftercare",
        "rebook",
    ]


def test_an_evening_visit_texts_no_aftercare_that_would_come_too_late(clinic: Clinic) -> None:
    start = datetime(2026, 12, 3, 20, 0, tzinfo=NY)
    visit = Visit("completed", start, start + timedelta(minutes=30), BOOKED)
    planned = summary(clinic, visit, now=start)
    assert ("12-03 21:30", "aftercare", "email") in planned
    assert not [p for p in planned if p[1] == "aftercare" and p[2] == "sms"]


def test_a_2_hour_reminder_before_an_early_visit_is_deferred_not_dropped(clinic: Clinic) -> None:
    start = datetime(2026, 12, 3, 8, 30, tzinfo=NY)
    planned = summary(clinic, Visit("booked", start, start + timedelta(minutes=30), BOOKED))
    assert ("12-03 08:00", "reminder", "sms") in planned


def test_a_reminder_deferred_past_the_visit_is_dropped(clinic: Clinic) -> None:
    start = datetime(2026, 12, 3, 7, 45, tzinfo=NY)
    planned = summary(clinic, Visit("booked", start, start + timedelta(minutes=30), BOOKED))
    assert not [p for p in planned if p[0].startswith("12-03") and p[1] == "reminder"]


QUIET = QuietHours()


@pytest.mark.parametrize(
    "moment, expected_utc",
    [
        # Spring forward: 22:00 EST Saturday → 08:00 EDT Sunday = 12:00 UTC.
        (datetime(2027, 3, 13, 22, 0, tzinfo=NY), datetime(2027, 3, 14, 12, 0, tzinfo=UTC)),
        # Fall back: 23:00 EDT Saturday → 08:00 EST Sunday = 13:00 UTC.
        (datetime(2027, 11, 6, 23, 0, tzinfo=NY), datetime(2027, 11, 7, 13, 0, tzinfo=UTC)),
        # After midnight, the same morning.
        (datetime(2026, 12, 3, 5, 0, tzinfo=NY), datetime(2026, 12, 3, 13, 0, tzinfo=UTC)),
        # Daytime is left alone; 21:00 sharp is already quiet, 08:00 sharp is not.
        (datetime(2026, 12, 3, 8, 0, tzinfo=NY), datetime(2026, 12, 3, 13, 0, tzinfo=UTC)),
        (datetime(2026, 12, 3, 21, 0, tzinfo=NY), datetime(2026, 12, 4, 13, 0, tzinfo=UTC)),
    ],
)
def test_next_allowed_is_dst_correct(moment: datetime, expected_utc: datetime) -> None:
    assert next_allowed(moment, QUIET, NY) == expected_utc


def test_quiet_hours_follow_the_patients_zone() -> None:
    la = ZoneInfo("America/Los_Angeles")
    moment = datetime(2026, 12, 3, 23, 0, tzinfo=NY)  # 20:00 in Los Angeles
    assert next_allowed(moment, QUIET, la) == moment
