"""The numbers that have had their first text from us (`states.record_first_texts` writes
them with the record of that send): the texts after it leave out the opt-out line."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..models import SmsFirstText


def texted_among(session: Session, phones: Iterable[str]) -> set[str]:
    """Which of these numbers have had a text from us, in one query."""
    wanted = set(phones)
    if not wanted:
        return set()
    return set(session.scalars(select(SmsFirstText.phone).where(SmsFirstText.phone.in_(wanted))))


def forget(session: Session, notification_id: int) -> None:
    """The text that was a number's first never reached it (a receipt said so): the next text
    is the first again, and carries the opt-out line."""
    session.execute(delete(SmsFirstText).where(SmsFirstText.notification_id == notification_id))
