"""Which notification goes first when more is due than can go out at once.

A priority is a small number, 0 first, decided per notification kind when the row is planned
and stored with it (`notifications.priority`). The clock claims due rows in this order, and a
worker hands its senders' slots out in it, so a clinic's number that may send one text a second
sends the 2-hour reminders due at 08:00 before the confirmations and the aftercare due with them.
Within a priority, the row due first goes first.
"""

from __future__ import annotations

# Time-critical: late is as good as never.
URGENT = 0
# Confirmations and day-ahead reminders: wanted soon, but an hour is no harm.
STANDARD = 1
# Aftercare tips: useful the same day.
AFTERCARE = 2
# Rebook nudges, and anything else a clinic sends to sell: whenever there is room.
MARKETING = 3

LEVELS = (URGENT, STANDARD, AFTERCARE, MARKETING)

# A reminder this close to the visit is time-critical: the patient is about to leave home.
URGENT_REMINDER_HOURS = 6.0

_BY_KIND = {
    # A staff member's own reminder or reply, sent because someone is waiting for it now.
    "manual": URGENT,
    "staff_message": URGENT,
    # A freed slot offered to the waitlist expires within the hour.
    "waitlist_offer": URGENT,
    "confirmation": STANDARD,
    "cancellation": STANDARD,
    "aftercare": AFTERCARE,
    "rebook": MARKETING,
}


def of(kind: str, slot: str = "") -> int:
    """The priority of a notification of this kind and slot ("2h" for a reminder two hours
    ahead). A kind not named here is STANDARD."""
    if kind == "reminder":
        return URGENT if _hours(slot) <= URGENT_REMINDER_HOURS else STANDARD
    return _BY_KIND.get(kind, STANDARD)


def _hours(slot: str) -> float:
    try:
        return float(slot.removesuffix("h"))
    except ValueError:
        return float("inf")
