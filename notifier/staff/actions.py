"""What the dashboard's buttons change, each as a conditional update: two people pressing the
same button at once change the row once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..models import InboundMessage, Notification
from ..states import Status, transition

# A second press this soon is taken for a double click, not for a wish to text twice.
REMIND_AGAIN_AFTER = timedelta(minutes=10)


class Refused(Exception):
    """The button had no effect; the message says why, for the person who pressed it."""


def retry(session: Session, notification_id: int, staff: str, now: datetime) -> None:
    """failed → scheduled, due now, with a fresh count of attempts."""
    n = session.get(Notification, notification_id)
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
    handled = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == message_id, InboundMessage.handled_at.is_(None))
        .values(handled_at=now, handled_by=staff)
        .returning(InboundMessage.id),
        execution_options={"synchronize_session": False},
    ).first()
    session.commit()
    if handled is None:
        raise Refused("This reply was already marked as handled.")


def reminded_recently(
    session: Session, appointment_id: str, channel: str, now: datetime
) -> Notification | None:
    """The staff reminder on `channel` made within REMIND_AGAIN_AFTER, if there is one."""
    return session.scalar(
        select(Notification)
        .where(
            Notification.appointment_id == appointment_id,
            Notification.kind == "manual",
            Notification.channel == channel,
            Notification.created_at > now - REMIND_AGAIN_AFTER,
        )
        .order_by(Notification.created_at.desc())
        .limit(1)
    )
