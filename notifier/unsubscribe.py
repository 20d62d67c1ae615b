"""Email unsubscribe: the signed links every email carries, and what following one records.

A marketing email (the rebook nudge) carries a link, and the `List-Unsubscribe` headers of RFC
8058, that stop marketing emails; every other email carries a link that stops all emails. The
worker honours the registry at send time (`recheck`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from .budget import MARKETING_KINDS
from .links import Unsubscribe, make_unsubscribe_token
from .runtime import Runtime
from .store import email_opt_outs


def scope_for(kind: str) -> str:
    """What the link in an email of this kind unsubscribes from."""
    return "marketing" if kind in MARKETING_KINDS else "all"


def url(rt: Runtime, address: str, scope: str) -> str:
    token = make_unsubscribe_token(rt.settings.secret_key or "", address, scope)
    return f"{rt.settings.public_url}/unsubscribe/{token}"


def headers(rt: Runtime, address: str) -> tuple[tuple[str, str], ...]:
    """RFC 8058 one-click: a mail client POSTs `List-Unsubscribe=One-Click` to the URL."""
    return (
        ("List-Unsubscribe", f"<{url(rt, address, 'marketing')}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )


def unsubscribe(session: Session, link: Unsubscribe, source: str, now: datetime) -> None:
    email_opt_outs.register(session, link.address, link.scope, source, now)
    session.commit()


def suppressed(session: Session, kind: str, address: str) -> bool:
    """Whether an email of this kind to this address is one its owner asked not to get."""
    scope = email_opt_outs.scope_of(session, address)
    return scope == "all" or (scope == "marketing" and kind in MARKETING_KINDS)
