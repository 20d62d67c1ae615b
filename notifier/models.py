"""The database: the schedule is rows here, never in the broker."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
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
    false,
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
    # The number a carrier said cannot take texts (a landline), and when. It is ours, not the
    # booking system's: an event's upsert leaves it, and a new number in `phone` ends it.
    not_mobile_phone: Mapped[str | None] = mapped_column(String(32))
    not_mobile_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
    # When we learned the patient did not come: the "we missed you" message counts from it.
    no_show_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The calendar file's SEQUENCE: one more each time the visit's time, place or status
    # changes, so a calendar replaces the event it holds (RFC 5545 wants a small integer).
    calendar_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
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
    # confirmation | reminder | aftercare | rebook | cancellation | manual | staff_message |
    # no_show_recovery | waitlist_offer
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
    # A staff_message's words, as the staff member wrote them (the template adds the clinic).
    staff_text: Mapped[str | None] = mapped_column(Text)
    # Staff sent it inside quiet hours, answering a text the patient sent within the hour.
    quiet_override: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A failed message someone took care of (called the patient): off the worklist.
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    settled_by: Mapped[str | None] = mapped_column(String(200))

    appointment: Mapped[Appointment] = relationship(back_populates="notifications")
    # Who gets it: the appointment's patient, except for a waitlist offer, which tells a
    # waitlisted patient about someone else's freed visit.
    patient: Mapped[Patient] = relationship()
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
        # A staff message's slot names the form it came from: posted twice, it is taken.
        Index(
            "uq_notifications_staff_slot",
            "slot",
            unique=True,
            postgresql_where=text("kind = 'staff_message'"),
            sqlite_where=text("kind = 'staff_message'"),
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


class SmsFirstText(Base):
    """A number that has had its first text from us: written with the record of that send, so
    the texts after it leave out the opt-out line the first one carried."""

    __tablename__ = "sms_first_texts"
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EmailOptOut(Base):
    """The email opt-out registry: one row per address that unsubscribed, from marketing emails
    (`marketing`) or from every email (`all`)."""

    __tablename__ = "email_opt_outs"
    # Lower-cased: the same mailbox however the booking system spelled it.
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    # link:one-click (the mail client's button) | link:page (our page) | staff:<who>
    source: Mapped[str] = mapped_column(String(64))
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime())


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
    # sms, or link: a patient's answer through an email's link (no number, no provider id)
    channel: Mapped[str] = mapped_column(String(8), default="sms", server_default="sms")
    # confirm | reschedule | stop | start | help | other
    intent: Mapped[str] = mapped_column(String(16))
    needs_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_replied: Mapped[bool] = mapped_column(Boolean, default=False)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handled_by: Mapped[str | None] = mapped_column(String(200))
    # When staff first opened the patient's conversation after it came: unread until then.
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

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


class VisitAction(Base):
    """A front-desk action on a visit (confirm, cancel, no-show, completed), with who did it and
    what the visit was before, so that it can be shown and undone."""

    __tablename__ = "visit_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id"), index=True)
    # confirm | cancel | no_show | complete | undo
    action: Mapped[str] = mapped_column(String(16))
    # The form's one-time token: the same form posted again finds it taken and changes nothing.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # The booking event the action became (none for a confirm, which is no booking event).
    event_id: Mapped[str | None] = mapped_column(String(128))
    staff: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    before_status: Mapped[str] = mapped_column(String(16))
    before_confirmation: Mapped[str] = mapped_column(String(24))
    before_end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # For an undo: the action it reversed. For an action: when and by whom it was undone.
    undoes: Mapped[int | None] = mapped_column(Integer)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    undone_by: Mapped[str | None] = mapped_column(String(200))


class Counter(Base):
    """A count of something that leaves no row of its own (a replayed event, a refused
    webhook), kept here so that every process's count adds up in one place (/metrics)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Comma-separated, of api_keys.SCOPES; keys issued before scopes existed have them all.
    scopes: Mapped[str] = mapped_column(String(64), default="events,read,remind")
    # A revoked key is kept, so that the audit log's name for it still means something.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what, when, from where (HIPAA §164.312(b)). Rows are only ever inserted: no code
    updates or deletes them, and a trigger refuses it in the database. Never a message body or
    a patient's phone number or address: `subject` names a row by its id."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # staff:<email> | api:<key name> | cli:<system user> | unknown:<address typed at sign-in>
    actor: Mapped[str] = mapped_column(String(340), index=True)
    # The client's address as the web server saw it (behind a proxy: X-Forwarded-For); cli: local.
    address: Mapped[str | None] = mapped_column(String(64))
    # signin | signout | appointment.view | inbox.view | reminder | api.read | …: docs/security.md
    action: Mapped[str] = mapped_column(String(64))
    # appointment:<id> | notification:<id> | reply:<id> | staff:<email> | api_key:<name> | …
    subject: Mapped[str | None] = mapped_column(String(200))
    # ok | refused | denied | failed, or an HTTP status for an API call
    outcome: Mapped[str] = mapped_column(String(32))
    # A short note without patient data (the channels asked for, the reason for a refusal).
    detail: Mapped[str | None] = mapped_column(String(300))


class WaitlistEntry(Base):
    """A patient who would come sooner: at a location, for a treatment, on these weekdays,
    between these hours (the location's wall clock)."""

    __tablename__ = "waitlist_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The caller's id for the entry (the API's `id`, a FHIR Appointment's): sent again, it is
    # the same entry.
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    treatment_id: Mapped[str] = mapped_column(ForeignKey("treatments.id"))
    # Comma-separated weekdays (mon,tue,…), and "HH:MM" bounds of the visit's time.
    days: Mapped[str] = mapped_column(String(32))
    earliest: Mapped[str] = mapped_column(String(5))
    latest: Mapped[str] = mapped_column(String(5))
    # api | csv | fhir | staff:<email>
    source: Mapped[str] = mapped_column(String(240))
    # waiting | claimed | removed
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    patient: Mapped[Patient] = relationship()


class WaitlistSlot(Base):
    """A freed visit offered to the waitlist. Claimed by one conditional update: the row count
    decides who won."""

    __tablename__ = "waitlist_slots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    treatment_id: Mapped[str] = mapped_column(ForeignKey("treatments.id"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # No claim is taken from this moment on: the clinic needs time to book and the patient to come.
    offer_until: Mapped[datetime] = mapped_column(UTCDateTime())
    # open | claimed | withdrawn
    status: Mapped[str] = mapped_column(String(16), default="open")
    claimed_entry_id: Mapped[int | None] = mapped_column(ForeignKey("waitlist_entries.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The front desk booked the winner (or called them): off the worklist.
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handled_by: Mapped[str | None] = mapped_column(String(200))

    appointment: Mapped[Appointment] = relationship()
    claimed_entry: Mapped[WaitlistEntry | None] = relationship()

    __table_args__ = (
        # One offer round per freed time of a visit, however often the event is replayed.
        Index("uq_waitlist_slots_visit", "appointment_id", "start_at", unique=True),
    )


class WaitlistOffer(Base):
    """One patient offered one slot: the text that told them, and how they answered."""

    __tablename__ = "waitlist_offers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("waitlist_slots.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id"))
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"))
    phone: Mapped[str] = mapped_column(String(32), index=True)
    wave: Mapped[int] = mapped_column(Integer)
    # none yet | won | too_late
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    slot: Mapped[WaitlistSlot] = relationship()
    entry: Mapped[WaitlistEntry] = relationship()
    notification: Mapped[Notification] = relationship()

    __table_args__ = (Index("uq_waitlist_offers_slot_entry", "slot_id", "entry_id", unique=True),)


class WebhookEndpoint(Base):
    """A URL of the clinic's (its booking system's) that is told of the events it chose."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    # Comma-separated, of hooks.EVENTS.
    events: Mapped[str] = mapped_column(String(1000))
    # `whsec_` and the base64 of the signing key (Standard Webhooks).
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A removed endpoint is kept, so that its deliveries still say where they went.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """The outbox: one row per event per endpoint (or per FHIR write-back), written in the
    transaction that made the event, delivered at least once, in `id` order within its stream."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_stream_id", "stream", "id"),
        Index(
            "ix_webhook_deliveries_due",
            "due_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The `webhook-id`: the same on every attempt, and for every endpoint told of one event.
    message_id: Mapped[str] = mapped_column(String(64))
    # Deliveries of one stream go out one at a time, in order: "endpoint:<id>" or "fhir".
    stream: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event: Mapped[str] = mapped_column(String(64))
    # The body exactly as it is sent and signed (JSON).
    payload: Mapped[str] = mapped_column(Text)
    # pending | sending | delivered | dead
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
