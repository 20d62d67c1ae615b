"""SMS opt-outs as staff see them: the numbers that said STOP and have not said START."""

from __future__ import annotations

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
