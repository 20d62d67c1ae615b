"""The schedule in the database: planned notifications become rows, `scheduled`, and a re-plan
cancels the pending ones the plan no longer wants (their moves are `states`')."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, object_session

from . import eventlog
from .clinic import Clinic
from .models import Appointment, Notification, Patient
from .plan import Planned, Recipient, Skipped, Visit, plan, plan_with_skips
from .states import PENDING, Status, transition
from .store import appointments
from .store import budget as budget_rows
from .store import planned as planned_rows


def recipient(patient: Patient, zone: ZoneInfo) -> Recipient:
    landline = cannot_take_texts(patient)
    email = bool(patient.email and patient.consent_email)
    return Recipient(
        zone=ZoneInfo(patient.time_zone) if patient.time_zone else zone,
        sms=bool(patient.phone and patient.consent_sms) and not landline,
        email=email,
        marketing=patient.consent_marketing,
        texts_by_email=landline and email and patient.consent_sms,
    )


def cannot_take_texts(patient: Patient) -> bool:
    """A carrier told us the patient's number cannot take texts (and it is still their number)."""
    return patient.phone is not None and patient.phone == patient.not_mobile_phone


def visit(appointment: Appointment, rebooked: bool = False) -> Visit:
    return Visit(
        status=appointment.status,
        start=appointment.start_at,
        end=appointment.end_at,
        booked_at=appointment.booked_at,
        cancelled_at=appointment.cancelled_at,
        id=appointment.id,
        no_show_at=appointment.no_show_at,
        rebooked=rebooked,
    )


def rebooked(appointment: Appointment, now: datetime) -> bool:
    """Whether the patient of a missed visit has booked another one ahead (only a missed visit
    asks: no other plan depends on it)."""
    session = object_session(appointment)
    if appointment.status != "no_show" or session is None:
        return False
    return appointments.has_booked_after(session, appointment.patient_id, now)


def replan(
    session: Session, appointment: Appointment, clinic: Clinic, now: datetime, new: bool = False
) -> list[Notification]:
    """Brings the stored rows in line with the plan: new ones inserted, obsolete pending ones
    cancelled, unchanged ones (whatever their state) kept. Returns the inserted ones. `new`
    says the appointment was just created, so it has no rows to read yet. The patient's other
    visits that day are re-planned too: they may share their reminders with this one."""
    others = same_day(session, appointment)
    added = _replan_one(session, appointment, clinic, now, new, others)
    if clinic.policy.merge_same_day_reminders:
        for sibling in others:
            if sibling.id != appointment.id:
                with contextlib.suppress(LookupError):  # a location gone from the config
                    _replan_one(session, sibling, clinic, now, False, same_day(session, sibling))
    return added


def same_day(session: Session, appointment: Appointment) -> list[Appointment]:
    """The patient's booked appointments around this one's day (this one among them)."""
    return budget_rows.visits_around(session, appointment.patient_id, appointment.start_at)


def _replan_one(
    session: Session,
    appointment: Appointment,
    clinic: Clinic,
    now: datetime,
    new: bool,
    others: Sequence[Appointment],
) -> list[Notification]:
    wanted = wanted_for(appointment, clinic, now, others)
    stored = [] if new else planned_rows.replannable(session, appointment.id)
    have = {(n.kind, n.channel, n.slot, n.planned_for) for n in stored}
    keep = {(*p.key, p.due_at) for p in wanted}
    obsolete = [
        n.id
        for n in stored
        if n.status in PENDING and (n.kind, n.channel, n.slot, n.planned_for) not in keep
    ]
    withdrawn = transition(
        session, obsolete, PENDING, Status.CANCELLED, now, "plan changed", reason="plan_changed"
    )
    for n in stored:
        if n.id in withdrawn:
            eventlog.message_withdrawn(n, "plan_changed")
    return add(session, appointment, [p for p in wanted if (*p.key, p.due_at) not in have], now)


def wanted_for(
    appointment: Appointment, clinic: Clinic, now: datetime, others: Sequence[Appointment] = ()
) -> list[Planned]:
    """The plan for an appointment and its patient as they stand; `others`, the patient's
    other visits that day, for the reminders they share."""
    location = clinic.location(appointment.location_id)
    treatment = clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        raise LookupError(f"appointment {appointment.id}: location or treatment not in config")
    who = recipient(appointment.patient, location.zone)
    siblings = tuple(visit(o) for o in others if o.id != appointment.id)
    return plan(
        visit(appointment, rebooked(appointment, now)), who, treatment, clinic.policy, now, siblings
    )


def left_out(
    session: Session, appointment: Appointment, clinic: Clinic, now: datetime
) -> list[Skipped]:
    """The messages the message budget keeps out of the appointment's plan, and why."""
    location = clinic.location(appointment.location_id)
    treatment = clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        return []
    others = tuple(visit(o) for o in same_day(session, appointment) if o.id != appointment.id)
    who = recipient(appointment.patient, location.zone)
    return plan_with_skips(visit(appointment), who, treatment, clinic.policy, now, others)[1]


def add(
    session: Session,
    appointment: Appointment,
    planned: list[Planned],
    now: datetime,
    staff: str | None = None,
) -> list[Notification]:
    """Inserts the planned notifications, scheduled, with their history; returns them in plan
    order."""
    if not planned:
        return []
    detail = "manual" if staff else "planned"
    return planned_rows.add(session, appointment, planned, now, staff, detail)
