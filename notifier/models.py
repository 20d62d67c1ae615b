"""The database: the schedule is rows here, never in the broker."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from . import priority


def utc_naive(moment: datetime) -> datetime:
    """The moment as the columns hold it: in UTC, without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware UTC: SQLite keeps no zone, so we never let one in unnormalized."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return utc_naive(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class LocationRow(Base):
    """Mirrors the clinic config, so rows can refer to it and reports can join on it."""

    __tablename__ = "locations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64))


class Treatment(Base):
    __tablename__ = "treatments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Patient(Base):
    __tablename__ = "patients"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(8), default="en")
    time_zone: Mapped[str | None] = mapped_column(String(64))
    consent_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_email: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Appointment(Base):
    __tablename__ = "appointments"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    treatment_id: Mapped[str] = mapped_column(ForeignKey("treatments.id"))
    provider: Mapped[str | None] = mapped_column(String(200))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # booked | cancelled | completed | no_show
    status: Mapped[str] = mapped_column(String(16))
    # a states.Confirmation, changed only by states.set_confirmation
    confirmation: Mapped[str] = mapped_column(String(24), default="unconfirmed")
    confirmation_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the current time was set (booking or last reschedule): reminders due before it are moot.
    booked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rescheduled: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    patient: Mapped[Patient] = relationship()
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="appointment", order_by="Notification.id"
    )


# `states.IN_FLIGHT` in SQL, for the index (the states whose lease the reaper and reconciliation
# watch). The states and their moves are `states.py`'s.
IN_FLIGHT = "status IN ('queued', 'sending', 'unknown')"


def _priority_of_row(context: DefaultExecutionContext) -> int:
    row = context.get_current_parameters()
    return priority.of(row["kind"], row.get("slot") or "")


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    # confirmation | reminder | aftercare | rebook | cancellation | manual
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    # Tells apart notifications of one kind: "48h" for a reminder, the start for a confirmation.
    slot: Mapped[str] = mapped_column(String(64), default="")
    ask_confirm: Mapped[bool] = mapped_column(Boolean, default=False)
    # planned_for is what the plan said; due_at moves with retries, expires_at ends its usefulness.
    planned_for: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # a states.Status, changed only by the functions of states.py
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    reason: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # `priority.of(kind, slot)`, 0 first: the order in which due rows are claimed and take their
    # sender's slots. Decided when the row is planned; the server's default is for rows written
    # by hand.
    priority: Mapped[int] = mapped_column(
        SmallInteger, default=_priority_of_row, server_default=text(str(priority.STANDARD))
    )
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    staff: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    appointment: Mapped[Appointment] = relationship(back_populates="notifications")
    history: Mapped[list[NotificationEvent]] = relationship(order_by="NotificationEvent.id")

    __table_args__ = (
        # The clock's claim reads only what is due, however many rows wait months ahead, one
        # priority after the other (`states._CLAIM`).
        Index(
            "ix_notifications_due",
            "priority",
            "due_at",
            postgresql_where=text("status = 'scheduled'"),
            sqlite_where=text("status = 'scheduled'"),
        ),
        # The indexes below hold only the rows they are looked up for, so the claim, which
        # moves rows that have neither a provider id nor an in-flight state yet, adds no entry
        # to any of them. A patient's notifications are looked up only among those sent.
        Index(
            "ix_notifications_status_lease",
            "status",
            "lease_until",
            postgresql_where=text(IN_FLIGHT),
            sqlite_where=text(IN_FLIGHT),
        ),
        Index(
            "ix_notifications_provider_id",
            "provider_id",
            postgresql_where=text("provider_id IS NOT NULL"),
            sqlite_where=text("provider_id IS NOT NULL"),
        ),
        Index(
            "ix_notifications_patient_id",
            "patient_id",
            postgresql_where=text("provider_id IS NOT NULL"),
            sqlite_where=text("provider_id IS NOT NULL"),
        ),
    )


class NotificationEvent(Base):
    """One row per state change of a notification: its history, for staff and for audits."""

    __tablename__ = "notification_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[str | None] = mapped_column(String(300))


class BookingEvent(Base):
    """Every booking event received, applied or not: the idempotency record."""

    __tablename__ = "booking_events"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    appointment_id: Mapped[str] = mapped_column(String(128), index=True)
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload_sha256: Mapped[str] = mapped_column(String(64))
    # applied | ignored_stale
    outcome: Mapped[str] = mapped_column(String(16))


class SmsOptOut(Base):
    """The opt-out registry: one row per phone number that ever said STOP (or Twilio said so)."""

    __tablename__ = "sms_opt_outs"
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # keyword:STOP | carrier:opted_out (before: twilio:21610) | staff:<who>
    source: Mapped[str] = mapped_column(String(64))
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opted_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InboundMessage(Base):
    """Every SMS a patient sent us, matched to a patient and appointment where we could."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Twilio retries a webhook it got no answer to: the MessageSid makes the retry harmless.
    provider_id: Mapped[str] = mapped_column(String(64), unique=True)
    from_number: Mapped[str] = mapped_column(String(32), index=True)
    to_number: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"))
    appointment_id: Mapped[str | None] = mapped_column(ForeignKey("appointments.id"))
    # confirm | reschedule | stop | start | help | other
    intent: Mapped[str] = mapped_column(String(16))
    needs_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_replied: Mapped[bool] = mapped_column(Boolean, default=False)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handled_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_inbound_messages_open", "needs_staff", "handled_at"),)


class EarlyReceipt(Base):
    """A delivery receipt that came before we recorded the send it is about (Twilio can answer
    a status callback faster than our commit); applied when the send is recorded."""

    __tablename__ = "early_receipts"
    provider_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    # The failure in the clinic's words, as the provider's module read the code.
    reason: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
