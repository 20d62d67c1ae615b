"""Early delivery receipts: the ones that came before the send they are about was recorded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..models import EarlyReceipt


def forget_before(session: Session, before: datetime) -> None:
    session.execute(delete(EarlyReceipt).where(EarlyReceipt.received_at < before))


def keep(
    session: Session,
    provider_id: str,
    status: str,
    error_code: str | None,
    reason: str | None,
    now: datetime,
) -> None:
    """Keeps the receipt unless one for the same send is kept already: the first final state
    wins, as for a recorded send."""
    if session.get(EarlyReceipt, provider_id) is None:
        session.add(
            EarlyReceipt(
                provider_id=provider_id,
                status=status,
                error_code=error_code,
                reason=reason,
                received_at=now,
            )
        )


def waiting_for(session: Session, provider_ids: list[str]) -> Sequence[EarlyReceipt]:
    return session.scalars(
        select(EarlyReceipt).where(EarlyReceipt.provider_id.in_(provider_ids))
    ).all()


def drop(session: Session, receipt: EarlyReceipt) -> None:
    session.delete(receipt)
