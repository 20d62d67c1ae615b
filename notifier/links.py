"""Signed links in emails: a patient confirms or asks to reschedule with one click.

The token carries the appointment, the action and an expiry (the end of the visit), signed with
NOTIFIER_SECRET_KEY: a changed character or a stale link is refused with a page that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeSerializer

ACTIONS = ("confirm", "reschedule")
_SALT = "notifier.appointment-link"


class BadLink(Exception):
    """`expired` tells a stale link from a forged or mangled one."""

    def __init__(self, expired: bool) -> None:
        super().__init__("link expired" if expired else "link not valid")
        self.expired = expired


@dataclass(frozen=True)
class LinkAction:
    appointment_id: str
    action: str


def make_token(secret: str, appointment_id: str, action: str, expires_at: datetime) -> str:
    payload = {"a": appointment_id, "do": action, "exp": int(expires_at.timestamp())}
    return str(URLSafeSerializer(secret, salt=_SALT).dumps(payload))


def read_token(secret: str, token: str, now: datetime) -> LinkAction:
    try:
        payload = URLSafeSerializer(secret, salt=_SALT).loads(token)
    except BadSignature:
        raise BadLink(expired=False) from None
    if not isinstance(payload, dict) or payload.get("do") not in ACTIONS:
        raise BadLink(expired=False)
    if now >= datetime.fromtimestamp(int(payload["exp"]), UTC):
        raise BadLink(expired=True)
    return LinkAction(str(payload["a"]), str(payload["do"]))


# Unsubscribe links never expire: CAN-SPAM wants them working for 30 days after the email at the
# very least, and an old email's link should still do what it says.
UNSUBSCRIBE_SCOPES = ("marketing", "all")
_UNSUBSCRIBE_SALT = "notifier.email-unsubscribe"


@dataclass(frozen=True)
class Unsubscribe:
    address: str
    scope: str  # marketing | all


def make_unsubscribe_token(secret: str, address: str, scope: str) -> str:
    payload = {"e": address.strip().lower(), "s": scope}
    return str(URLSafeSerializer(secret, salt=_UNSUBSCRIBE_SALT).dumps(payload))


def read_unsubscribe_token(secret: str, token: str) -> Unsubscribe:
    try:
        payload = URLSafeSerializer(secret, salt=_UNSUBSCRIBE_SALT).loads(token)
    except BadSignature:
        raise BadLink(expired=False) from None
    if not isinstance(payload, dict) or payload.get("s") not in UNSUBSCRIBE_SCOPES:
        raise BadLink(expired=False)
    address = payload.get("e")
    if not isinstance(address, str) or "@" not in address:
        raise BadLink(expired=False)
    return Unsubscribe(address, str(payload["s"]))
