"""Given bookings, when time passes, then each patient gets exactly these messages, on these
channels, at these times: through the real twilio SDK and smtplib, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import pytest
from icalendar import Calendar
from sqlalchemy import select

from notifier.ingest import apply_event
from notifier.models import Notification
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from tests.conftest import NEW_YORK, new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

VISIT = new_york(2026, 12, 3, 10, 0)  # Thursday


def post(rt: Runtime, payload: dict) -> None:
    with rt.sessions() as session:
        apply_event(session, rt.clinic, payload, rt.clock())


def received(rt: Runtime, twilio: FakeTwilio, smtp: SMTPSink) -> list[tuple[str, str, str]]:
    """What the providers accepted, as (New York time, channel, kind), in time order."""
    with rt.sessions() as session:
        rows = {n.provider_id: n for n in session.scalars(select(Notification))}
    got = [(rows[m["sid"]], "sms") for m in twilio.messages]
    got += [(rows[str(mail["Message-ID"]).strip("<>")], "email") for mail in smtp.messages]
    got.sort(key=lambda pair: (pair[0].sent_at, pair[1]))
    return [
        (f"{cast(datetime, n.sent_at).astimezone(NEW_YORK):%a %d %H:%M}", ch, n.kind)
        for n, ch in got
    ]


def statuses(rt: Runtime) -> list[tuple[str, str, str, str | None]]:
    with rt.sessions() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id))
        return [(n.kind, n.channel, n.status, n.reason) for n in rows]


def test_booking_brings_confirmation_reminders_and_aftercare(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, VISIT + timedelta(days=120))
    assert received(rt, fake_twilio, smtp) == [
        ("Mon 30 09:00", "email", "confirmation"),
        ("Mon 30 09:00", "sms", "confirmation"),
        ("Tue 01 10:00", "email", "reminder"),
        ("Tue 01 10:00", "sms", "reminder"),
        ("Thu 03 08:00", "sms", "reminder"),
        ("Thu 03 11:30", "email", "aftercare"),
        ("Thu 03 11:30", "sms", "aftercare"),
    ]
    sms = fake_twilio.messages[0]
    assert sms["to"] == "+17185550134"
    assert sms["status_callback"] == "https://reminders.clinic.example/twilio/status"
    assert "Botox" not in " ".join(m["body"] for m in fake_twilio.messages)


def test_confirmation_email_carries_a_valid_calendar_file(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, rt.clock())
    (mail,) = smtp.messages
    assert mail["To"] == "ana@example.org"
    assert mail.get_body(("plain",)) is not None and mail.get_body(("html",)) is not None
    (ics,) = [part for part in mail.iter_attachments() if part.get_filename() == "appointment.ics"]
    assert ics.get_content_type() == "text/calendar"
    calendar = Calendar.from_ical(cast(bytes, ics.get_payload(decode=True)))
    (vevent,) = calendar.walk("VEVENT")
    assert vevent.decoded("dtstart") == VISIT
    assert vevent.decoded("dtend") == VISIT + timedelta(minutes=30)
    assert "Forest Hills" in str(vevent.get("location")) or "Queens Blvd" in str(
        vevent.get("location")
    )


def test_reschedule_sends_only_the_new_times(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    run_until(rt, new_york(2026, 12, 1, 9, 0))
    moved = new_york(2026, 12, 4, 14, 0)  # Friday
    post(rt, event("rescheduled", moved, occurred_at=clock()))
    run_until(rt, moved + timedelta(days=1))
    assert received(rt, fake_twilio, smtp) == [
        ("Mon 30 09:00", "email", "confirmation"),
        ("Mon 30 09:00", "sms", "confirmation"),
        ("Tue 01 09:00", "email", "confirmation"),
        ("Tue 01 09:00", "sms", "confirmation"),
        ("Wed 02 14:00", "email", "reminder"),
        ("Wed 02 14:00", "sms", "reminder"),
        ("Fri 04 12:00", "sms", "reminder"),
        ("Fri 04 15:30", "email", "aftercare"),
        ("Fri 04 15:30", "sms", "aftercare"),
    ]
    new_time = fake_twilio.messages[1]["body"]
    assert "Dec 4" in new_time or "Fri" in new_time


def test_cancel_sends_one_cancellation_and_no_reminders(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    run_until(rt, new_york(2026, 11, 30, 15, 0))
    post(rt, event("cancelled", VISIT, occurred_at=clock()))
    run_until(rt, VISIT + timedelta(days=120))
    assert received(rt, fake_twilio, smtp) == [
        ("Mon 30 09:00", "email", "confirmation"),
        ("Mon 30 09:00", "sms", "confirmation"),
        ("Mon 30 15:00", "email", "cancellation"),
        ("Mon 30 15:00", "sms", "cancellation"),
    ]
    assert [s for s in statuses(rt) if s[0] == "reminder"] == [
        ("reminder", "sms", "cancelled", "plan_changed"),
        ("reminder", "email", "cancelled", "plan_changed"),
        ("reminder", "sms", "cancelled", "plan_changed"),
    ]


def test_completed_visit_times_aftercare_from_the_real_end(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    consent = {"sms": True, "email": False, "marketing": False}
    post(rt, event("booked", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, VISIT + timedelta(minutes=50))
    post(
        rt,
        event(
            "completed",
            VISIT,
            end=VISIT + timedelta(minutes=50),
            occurred_at=clock(),
            consent=consent,
        ),
    )
    run_until(rt, VISIT + timedelta(days=1))
    assert received(rt, fake_twilio, smtp)[-1] == ("Thu 03 11:50", "sms", "aftercare")
    assert [k for _, _, k in received(rt, fake_twilio, smtp)].count("aftercare") == 1


def test_no_show_gets_no_aftercare_and_no_rebook_nudge_but_one_we_missed_you(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    consent = {"sms": True, "email": False, "marketing": True}
    post(rt, event("booked", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, VISIT + timedelta(minutes=40))
    post(rt, event("no_show", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, VISIT + timedelta(days=120))
    assert [k for _, _, k in received(rt, fake_twilio, smtp)] == [
        "confirmation",
        "reminder",
        "reminder",
        "no_show_recovery",
    ]


def test_rebook_nudge_comes_84_days_after_a_cosmetic_visit(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    consent = {"sms": True, "email": True, "marketing": True}
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), consent=consent))
    run_until(rt, VISIT + timedelta(days=120))
    assert received(rt, fake_twilio, smtp)[-1] == ("Thu 25 10:30", "sms", "rebook")  # Feb 25


def test_rebook_nudge_is_skipped_when_a_future_visit_is_booked(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    consent = {"sms": True, "email": False, "marketing": True}
    post(rt, event("booked", VISIT, occurred_at=clock(), consent=consent))
    run_until(rt, VISIT + timedelta(days=30))
    later = VISIT + timedelta(days=100)
    post(rt, event("booked", later, appointment_id="apt-2", occurred_at=clock(), consent=consent))
    run_until(rt, VISIT + timedelta(days=90))
    assert "rebook" not in [k for _, _, k in received(rt, fake_twilio, smtp)]
    assert ("rebook", "sms", "suppressed", "already_rebooked") in statuses(rt)


def test_rebook_nudge_needs_marketing_consent(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, VISIT + timedelta(days=200))
    assert "rebook" not in [s[0] for s in statuses(rt)]


def test_quiet_hours_defer_across_the_spring_dst_change(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    # Saturday 2027-03-13 22:00 EST; clocks go forward at 2:00 that night.
    clock.now = new_york(2027, 3, 13, 22, 0)
    visit = new_york(2027, 3, 14, 9, 30)
    post(rt, event("booked", visit, occurred_at=clock(), consent={"sms": True, "email": False}))
    run_until(rt, visit + timedelta(days=1))
    got = received(rt, fake_twilio, smtp)
    # The 2 h reminder would follow the confirmation at once: the message budget merges it.
    assert [g for g in got if g[2] != "aftercare"] == [("Sun 14 08:00", "sms", "confirmation")]
    with rt.sessions() as session:
        first = session.scalars(select(Notification).order_by(Notification.id)).first()
        assert first is not None and first.sent_at is not None
        assert first.sent_at.hour == 12  # 08:00 EDT is 12:00 UTC, not the 13:00 of "+10 hours"


def test_the_same_event_twice_sends_one_set(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    booked = event("booked", VISIT, occurred_at=rt.clock(), event_id="evt-001")
    post(rt, booked)
    post(rt, booked)
    run_until(rt, VISIT + timedelta(days=1))
    assert len(received(rt, fake_twilio, smtp)) == 7


def test_an_older_event_is_recorded_and_ignored(
    rt: Runtime, clock: SimulatedClock, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=clock()))
    post(rt, event("cancelled", VISIT, occurred_at=clock() - timedelta(hours=1)))
    run_until(rt, VISIT + timedelta(days=1))
    assert "cancellation" not in [k for _, _, k in received(rt, fake_twilio, smtp)]
    assert len(received(rt, fake_twilio, smtp)) == 7


@pytest.mark.parametrize("language, word", [("es", "su cita:"), ("en", "you're booked")])
def test_messages_speak_the_patients_language(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink, language: str, word: str
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), language=language))
    run_until(rt, rt.clock())
    assert word in fake_twilio.messages[0]["body"].lower()
