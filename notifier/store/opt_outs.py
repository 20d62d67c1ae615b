"""SMS opt-outs: the numbers that said STOP and have not said START, as staff see them and as
the worker and the replies check and change them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import SmsOptOut


def active(session: Session) -> list[SmsOptOut]:
    """The latest first."""
    return list(
        session.scalars(
            select(SmsOptOut)
            .where(SmsOptOut.active.is_(True))
            .order_by(SmsOptOut.opted_out_at.desc())
        )
    )


def is_active(session: Session, phone: str) -> bool:
    row = session.get(SmsOptOut, phone)
    return bool(row and row.active)


def active_among(session: Session, phones: Iterable[str]) -> set[str]:
    """Which of these numbers are opted out, in one query."""
    query = select(SmsOptOut.phone).where(SmsOptOut.phone.in_(phones), SmsOptOut.active.is_(True))
    return set(session.scalars(query))


def register(session: Session, phone: str, source: str, now: datetime) -> None:
    """Opts the number out; one already out keeps its first source and time."""
    row = session.get(SmsOptOut, phone)
    if row is None:
        session.add(SmsOptOut(phone=phone, active=True, source=source, opted_out_at=now))
    elif not row.active:
        row.active, row.source, row.opted_out_at = True, source, now


def lift(session: Session, phone: str, now: datetime) -> None:
    row = session.get(SmsOptOut, phone)
    if row is not None and row.active:
        row.active, row.opted_in_at = False, now
