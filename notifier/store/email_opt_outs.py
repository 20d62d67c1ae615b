"""Email opt-outs: the addresses that unsubscribed, from marketing or from every email, as the
worker checks them, the unsubscribe page records them and staff see them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import EmailOptOut

SCOPES = ("marketing", "all")


def scope_of(session: Session, address: str) -> str | None:
    """What the address unsubscribed from: `marketing`, `all`, or None."""
    row = session.get(EmailOptOut, address.strip().lower())
    return row.scope if row else None


def register(session: Session, address: str, scope: str, source: str, now: datetime) -> bool:
    """Records the opt-out; a wider scope replaces a narrower one, and an address already out
    keeps its first time and source otherwise. True if anything changed."""
    key = address.strip().lower()
    row = session.get(EmailOptOut, key)
    if row is None:
        session.add(EmailOptOut(address=key, scope=scope, source=source, opted_out_at=now))
        return True
    if SCOPES.index(scope) > SCOPES.index(row.scope):
        row.scope, row.source, row.opted_out_at = scope, source, now
        return True
    return False


def latest(session: Session, limit: int) -> list[EmailOptOut]:
    query = select(EmailOptOut).order_by(EmailOptOut.opted_out_at.desc()).limit(limit)
    return list(session.scalars(query))
