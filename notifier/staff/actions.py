"""What the dashboard's buttons change, each as a conditional update: two people pressing the
same button at once change the row once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ..states import Status, transition
from ..store import notifications, replies


class Refused(Exception):
    """The button had no effect; the message says why, for the person who pressed it."""


def retry(session: Session, notification_id: int, staff: str, now: datetime) -> None:
    """failed → scheduled, due now, with a fresh count of attempts."""
    n = notifications.by_id(session, notification_id)
    if n is None:
        raise Refused(f"There is no message {notification_id}.")
    # The worker would only suppress it as stale: say so now instead.
    if now >= n.expires_at:
        raise Refused(f"Too late to retry this {n.kind}: it was only useful until the visit.")
    moved = transition(
        session,
        [notification_id],
        [Status.FAILED],
        Status.SCHEDULED,
        now,
        f"retried by {staff}",
        due_at=now,
        attempts=0,
        reason=None,
        error_code=None,
    )
    session.commit()
    if not moved:
        raise Refused("This message is no longer failed: someone retried it already.")


def mark_handled(session: Session, message_id: int, staff: str, now: datetime) -> None:
    handled = replies.mark_handled(session, message_id, staff, now)
    session.commit()
    if not handled:
        raise Refused("This reply was already marked as handled.")
