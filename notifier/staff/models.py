"""Staff accounts and their signed-in sessions (tables of migration 0003)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..models import Base, UTCDateTime


class StaffUser(Base):
    __tablename__ = "staff_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Stored lower-cased: people type their address with whatever capitals they like.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Consecutive wrong passwords: enough of them close the account for a while (accounts.py).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # admin (staff accounts, API keys, the audit log) | staff (the daily work): roles.py
    role: Mapped[str] = mapped_column(String(16), default="staff")


class StaffSession(Base):
    """Server-side, so that logging out (or a password change) really ends a session."""

    __tablename__ = "staff_sessions"
    # The SHA-256 of the cookie's token: a leaked table row cannot be replayed as a cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # The location this person is looking at; None means all of them.
    location_id: Mapped[str | None] = mapped_column(String(64))
    # A one-time message for the next page (the outcome of the last button pressed), as JSON.
    flash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())

    user: Mapped[StaffUser] = relationship()
