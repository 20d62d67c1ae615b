"""Notifications: an appointment's, the failed ones staff retry, the counts and timings that
/metrics reads at scrape time, and the clock's and the worker's batches and leases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, select, union_all, update
from sqlalchemy.orm import Session, joinedload, selectinload

from .. import priority
from ..models import Appointment, Notification


def by_id(session: Session, notification_id: int) -> Notification | None:
    return session.get(Notification, notification_id)


def one_by_id(session: Session, notification_id: int) -> Notification:
    """The notification, which the caller knows is there (NoResultFound otherwise)."""
    return session.get_one(Notification, notification_id)


def for_appointment(
    session: Session, appointment_id: str, *, with_history: bool = False
) -> list[Notification]:
    """By due time; `with_history` loads every row's history in one more query."""
    query = (
        select(Notification)
        .where(Notification.appointment_id == appointment_id)
        .order_by(Notification.due_at, Notification.id)
    )
    if with_history:
        query = query.options(selectinload(Notification.history))
    return list(session.scalars(query))


def latest_manual(
    session: Session, appointment_id: str, channels: Iterable[str], since: datetime
) -> Notification | None:
    """The newest staff reminder on one of `channels` made after `since`, if there is one."""
    return session.scalar(
        select(Notification)
        .where(
            Notification.appointment_id == appointment_id,
            Notification.kind == "manual",
            Notification.channel.in_(list(channels)),
            Notification.created_at > since,
        )
        .order_by(Notification.created_at.desc())
        .limit(1)
    )


def failed_at(session: Session, location_ids: list[str], limit: int) -> list[Notification]:
    """Failed, for appointments at these locations, the latest change first, with the
    appointment, its patient and the history loaded."""
    query = (
        _failed(location_ids)
        .options(
            selectinload(Notification.appointment).selectinload(Appointment.patient),
            selectinload(Notification.history),
        )
        .order_by(Notification.updated_at.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def count_failed_at(session: Session, location_ids: list[str]) -> int:
    return session.scalar(_failed(location_ids).with_only_columns(func.count())) or 0


def _failed(location_ids: list[str]) -> Select[tuple[Notification]]:
    return (
        select(Notification)
        .join(Appointment, Notification.appointment_id == Appointment.id)
        .where(Notification.status == "failed", Appointment.location_id.in_(location_ids))
    )


def count_by_state(session: Session) -> Sequence[Row[Any]]:
    """(kind, channel, status, count) rows."""
    return session.execute(
        select(Notification.kind, Notification.channel, Notification.status, func.count()).group_by(
            Notification.kind, Notification.channel, Notification.status
        )
    ).all()


def due_unclaimed(session: Session, now: datetime) -> Row[Any]:
    """(how many, the oldest due_at) of the rows due by `now` and still `scheduled`: one range
    of the claim's index per priority."""
    each = union_all(
        *(
            select(func.count().label("due"), func.min(Notification.due_at).label("oldest")).where(
                Notification.status == "scheduled",
                Notification.priority == level,
                Notification.due_at <= now,
            )
            for level in priority.LEVELS
        )
    ).subquery()
    return session.execute(
        select(func.coalesce(func.sum(each.c.due), 0), func.min(each.c.oldest))
    ).one()


def count_in(session: Session, status: str) -> int:
    return session.scalar(select(func.count()).where(Notification.status == status)) or 0


def lease_expired(status: str, now: datetime) -> Select[tuple[int]]:
    """The ids in `status` whose lease ended before `now`, as a query for a move."""
    return select(Notification.id).where(
        Notification.status == status, Notification.lease_until < now
    )


def unknown_due(session: Session, now: datetime, limit: int) -> Sequence[Notification]:
    """The `unknown` rows whose lease has passed, the oldest lease first."""
    return session.scalars(
        select(Notification)
        .where(Notification.status == "unknown", Notification.lease_until <= now)
        .order_by(Notification.lease_until)
        .limit(limit)
    ).all()


def provider_ids_of_patient(session: Session, patient_id: str) -> set[str]:
    query = select(Notification.provider_id).where(
        Notification.patient_id == patient_id, Notification.provider_id.is_not(None)
    )
    return {pid for pid in session.scalars(query) if pid}


def batch(
    session: Session, ids: Iterable[int], status: str, owner: str | None = None
) -> list[Notification]:
    """These ids still in `status` (and held by `owner`), with appointment and patient."""
    query = (
        select(Notification)
        .where(Notification.id.in_(list(ids)), Notification.status == status)
        # One query, joined: a batch's rows, appointments and patients in one round trip.
        .options(
            joinedload(Notification.appointment, innerjoin=True).joinedload(
                Appointment.patient, innerjoin=True
            )
        )
        .order_by(Notification.id)
    )
    if owner is not None:
        query = query.where(Notification.lease_owner == owner)
    return list(session.scalars(query))


def renew_lease(
    session: Session, ids: Iterable[int], owner: str, until: datetime, now: datetime
) -> set[int]:
    """Extends the lease of those of `ids` that `owner` still holds `sending`; returns them.
    No status moves: the row stays `sending`."""
    renewed = session.scalars(
        update(Notification)
        .where(
            Notification.id.in_(ids),
            Notification.status == "sending",
            Notification.lease_owner == owner,
        )
        .values(lease_until=until, updated_at=now)
        .returning(Notification.id),
        execution_options={"synchronize_session": False},
    )
    return set(renewed)


def by_provider_id(session: Session, provider_id: str) -> Notification | None:
    return session.scalar(select(Notification).where(Notification.provider_id == provider_id))


def last_asked(session: Session, appointment_ids: list[str]) -> str | None:
    """Which of these appointments the latest sent SMS asking for confirmation was about."""
    return session.scalar(
        select(Notification.appointment_id)
        .where(
            Notification.appointment_id.in_(appointment_ids),
            Notification.channel == "sms",
            Notification.ask_confirm.is_(True),
            Notification.sent_at.is_not(None),
        )
        .order_by(Notification.sent_at.desc())
        .limit(1)
    )


def has_email_in_slots(session: Session, appointment_id: str, kind: str, slots: list[str]) -> bool:
    """Whether the appointment has an email of this kind, not cancelled, in one of `slots`."""
    twin = select(Notification.id).where(
        Notification.appointment_id == appointment_id,
        Notification.kind == kind,
        Notification.channel == "email",
        Notification.slot.in_(slots),
        Notification.status != "cancelled",
    )
    return session.scalar(twin.limit(1)) is not None


def next_due(session: Session) -> datetime | None:
    """When the next `scheduled` row falls due."""
    each = union_all(
        *(
            select(func.min(Notification.due_at).label("due")).where(
                Notification.status == "scheduled", Notification.priority == level
            )
            for level in priority.LEVELS
        )
    ).subquery()
    return session.scalar(select(func.min(each.c.due)))


def withdrawn(session: Session) -> Sequence[Row[Any]]:
    """(patient_id, kind, channel, status, reason, updated_at) of each suppressed or cancelled
    row."""
    return session.execute(
        select(Notification.patient_id, Notification.kind, Notification.channel,
               Notification.status, Notification.reason, Notification.updated_at)
        .where(Notification.status.in_(["suppressed", "cancelled"]))
    ).all()  # fmt: skip
