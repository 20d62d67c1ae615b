"""A number that cannot take texts (a landline, by Twilio's 30006 or 21614): nothing more is
texted to it. Its patients' waiting texts are withdrawn and their visits re-planned, so that
what would have been texted goes by email to those with an address (the plan's
`texts_by_email`); for the others the texts are withdrawn, with the reason, and staff call.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from .clinic import Clinic
from .models import Appointment, Notification
from .schedule import replan
from .states import PENDING, Status, transition
from .store import landlines

WITHDRAWN = "the number cannot take texts"


def found(
    session: Session, clinic: Clinic, phone: str, failed: Notification, now: datetime
) -> None:
    """`failed` was refused because `phone` cannot take texts (caller commits)."""
    marked = landlines.mark(session, phone, now)
    pending = landlines.pending_texts(session, [p.id for p in marked])
    withdrawn = set(
        transition(
            session, [n.id for n in pending], PENDING, Status.CANCELLED, now, WITHDRAWN,
            reason="not_mobile",
        )
    )  # fmt: skip
    visits: dict[str, Appointment] = {failed.appointment_id: failed.appointment}
    visits |= {n.appointment_id: n.appointment for n in pending if n.id in withdrawn}
    for appointment in visits.values():
        try:
            replan(session, appointment, clinic, now)
        except LookupError:  # its location or treatment left the config: nothing to plan
            continue
