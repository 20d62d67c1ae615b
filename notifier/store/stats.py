"""The rows behind the weekly numbers of stats.py, which groups them per location and ISO
week in Python, in each location's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Result, Row, exists, func, select
from sqlalchemy.orm import Session

from ..models import Appointment, Notification, SmsOptOut

# Messages that reached the patient's phone, so the question was seen.
ASKED = ("sent", "delivered")
# Where an SMS can end once it went to the provider: the delivery rate's denominator.
SMS_OUTCOMES = ("sent", "delivered", "undelivered", "failed")


def appointments_starting(session: Session, since: datetime, until: datetime) -> Result[Any]:
    """(location_id, start_at, status, confirmation, asked) of each appointment starting from
    `since` to before `until`; `asked` says a confirmation question reached the patient."""
    asked = exists().where(
        Notification.appointment_id == Appointment.id,
        Notification.ask_confirm.is_(True),
        Notification.status.in_(ASKED),
    )
    return session.execute(
        select(
            Appointment.location_id,
            Appointment.start_at,
            Appointment.status,
            Appointment.confirmation,
            asked.label("asked"),
        ).where(Appointment.start_at >= since, Appointment.start_at < until)
    )


def sms_outcomes(session: Session, since: datetime, until: datetime) -> Result[Any]:
    """(location_id, status, when) of each SMS that ended in one of SMS_OUTCOMES in the span."""
    # A text that failed before the provider took it has no sent_at: its last change dates it.
    when = func.coalesce(Notification.sent_at, Notification.updated_at)
    return session.execute(
        select(Appointment.location_id, Notification.status, when)
        .join(Appointment, Notification.appointment_id == Appointment.id)
        .where(
            Notification.channel == "sms",
            Notification.status.in_(SMS_OUTCOMES),
            when >= since,
            when < until,
        )
    )


def opt_outs(session: Session, since: datetime, until: datetime) -> Sequence[Row[Any]]:
    """(phone, opted_out_at) of each opt-out in the span."""
    return session.execute(
        select(SmsOptOut.phone, SmsOptOut.opted_out_at).where(
            SmsOptOut.opted_out_at >= since, SmsOptOut.opted_out_at < until
        )
    ).all()


def no_shows(session: Session, since: datetime, until: datetime) -> Sequence[Row[Any]]:
    """(id, location_id, start_at, patient_id, marked) of each no-show starting in the span;
    `marked` is when we learned of it (the start, for a no-show older than that record)."""
    marked = func.coalesce(Appointment.no_show_at, Appointment.start_at)
    return session.execute(
        select(
            Appointment.id,
            Appointment.location_id,
            Appointment.start_at,
            Appointment.patient_id,
            marked.label("marked"),
        ).where(
            Appointment.status == "no_show",
            Appointment.start_at >= since,
            Appointment.start_at < until,
        )
    ).all()


def bookings_of(session: Session, patient_ids: set[str], since: datetime) -> Sequence[Row[Any]]:
    """(patient_id, id, created_at) of the patients' visits first heard of from `since`, but
    those cancelled."""
    if not patient_ids:
        return []
    return session.execute(
        select(Appointment.patient_id, Appointment.id, Appointment.created_at).where(
            Appointment.patient_id.in_(patient_ids),
            Appointment.created_at >= since,
            Appointment.status != "cancelled",
        )
    ).all()
