"""The calendar file of confirmation and cancellation emails (RFC 5545, iTIP methods of RFC
5546): one event per appointment, its UID fixed, its SEQUENCE one more at each change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

# PUBLISH puts the event in the patient's calendar (no reply is asked: the patient confirms by
# text or link); CANCEL, with the same UID and a higher SEQUENCE, takes it out again.
CalendarMethod = Literal["PUBLISH", "CANCEL"]


def calendar_content_type(method: CalendarMethod) -> str:
    """The attachment's Content-Type: mail clients act on `method`, and read `charset`."""
    return f"text/calendar; method={method}; charset=UTF-8"


def appointment_ics(
    *,
    method: CalendarMethod,
    uid: str,
    summary: str,
    start: datetime,
    end: datetime,
    location: str,
    description: str,
    organizer: tuple[str, str],
    attendee: str | None,
    sequence: int,
    stamp: datetime,
) -> bytes:
    from icalendar import Calendar, Event, vCalAddress, vText  # imported by the first email

    calendar = Calendar()
    calendar.add("prodid", "-//notifier//appointment reminders//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start.astimezone(UTC))
    event.add("dtend", end.astimezone(UTC))
    event.add("summary", summary)
    event.add("location", vText(location))
    event.add("description", description)
    name, address = organizer
    practice = vCalAddress(f"mailto:{address}")
    practice.params["cn"] = vText(name)
    event.add("organizer", practice)
    if method == "CANCEL":
        # RFC 5546 3.2.5: a cancel of the whole event names its attendees.
        if attendee:
            event.add("attendee", vCalAddress(f"mailto:{attendee}"))
        event.add("status", "CANCELLED")
    else:
        event.add("status", "CONFIRMED")
    # Calendars replace the event with the same UID and a higher SEQUENCE: a reschedule moves
    # it, a cancel removes it.
    event.add("sequence", sequence)
    calendar.add_component(event)
    return calendar.to_ical()
