"""Two-factor sign-in: time-based codes (TOTP, RFC 6238: six digits, 30-second steps, the
authenticator apps' defaults) and recovery codes for a lost phone.

A code is good once: the last step accepted is kept, and a code of that step or an earlier one
is refused. A step either side of now is accepted, for a phone's clock a little off. Recovery
codes are random, shown once, kept only as SHA-256, and each opens one sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
import qrcode
from qrcode.image.svg import SvgPathImage
from sqlalchemy.orm import Session

from ..store import staff as staff_store
from .models import RecoveryCode, StaffUser

RECOVERY_CODES = 10
STEP_SECONDS = 30
# No 0/o, 1/l/i: a code copied from paper is read back without doubt.
_RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def new_secret() -> str:
    return pyotp.random_base32()


def enrolment_qr(secret: str, email: str, practice: str) -> str:
    """The otpauth:// address an authenticator app scans, drawn here as an SVG data URI (no
    outside service ever sees the secret)."""
    address = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=practice)
    image = qrcode.make(address, image_factory=SvgPathImage, box_size=8, border=2)
    svg = image.to_string(encoding="unicode")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def code_step(secret: str, code: str, now: datetime) -> int | None:
    """The 30-second step `code` belongs to (now, or one either side), or None."""
    digits = code.replace(" ", "").replace("-", "")
    if not (len(digits) == 6 and digits.isascii() and digits.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), digits):
            return step
    return None


def accept(session: Session, user: StaffUser, code: str, now: datetime) -> bool:
    """Whether `code` (an authenticator's, or an unused recovery code) completes this
    account's sign-in; a good code is spent. The caller commits."""
    if user.totp_secret is None:
        return False
    step = code_step(user.totp_secret, code, now)
    if step is not None:
        return staff_store.accept_totp_step(session, user.id, step)
    return staff_store.use_recovery_code(session, user.id, _digest(code), now)


def enrol(session: Session, user: StaffUser, secret: str, code: str, now: datetime) -> list[str]:
    """Turns two-factor sign-in on with `secret` once `code` shows the app has it; returns the
    new recovery codes (to show once), or [] when the code does not match."""
    step = code_step(secret, code, now)
    if step is None:
        return []
    user.totp_secret = secret
    user.totp_last_step = step
    return new_recovery_codes(session, user)


def new_recovery_codes(session: Session, user: StaffUser) -> list[str]:
    """A fresh set of recovery codes; the old ones stop working."""
    staff_store.drop_recovery_codes(session, user.id)
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    for code in codes:
        session.add(RecoveryCode(staff_user_id=user.id, code_sha256=_digest(code)))
    return codes


def turn_off(session: Session, user: StaffUser) -> None:
    """An admin's reset for a lost phone: no secret, no recovery codes, every session ended.
    The next sign-in enrolls again where the clinic requires it."""
    user.totp_secret = None
    user.totp_last_step = None
    staff_store.drop_recovery_codes(session, user.id)
    staff_store.end_sessions_of(session, user.id)


def _recovery_code() -> str:
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


def _digest(code: str) -> str:
    normal = code.strip().lower().replace(" ", "").replace("-", "")
    return hashlib.sha256(normal.encode()).hexdigest()
