"""The calendar file attached to confirmation emails."""

from __future__ import annotations

from datetime import UTC, datetime


def appointment_ics(
    *,
    uid: str,
    summary: str,
    start: datetime,
    end: datetime,
    location: str,
    description: str,
    sequence: int,
    stamp: datetime,
) -> bytes:
    from icalendar import Calendar, Event, vText  # imported by the first email, not at start

    calendar = Calendar()
    calendar.add("prodid", "-//notifier//appointment reminders//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start.astimezone(UTC))
    event.add("dtend", end.astimezone(UTC))
    event.add("summary", summary)
    event.add("location", vText(location))
    event.add("description", description)
    # Calendars replace the event with the same UID and a higher SEQUENCE: a reschedule moves it.
    event.add("sequence", sequence)
    calendar.add_component(event)
    return calendar.to_ical()
