"""The waitlist's rows: who waits, which freed visits are offered, who was offered what, and
the one conditional update that decides who gets a slot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..models import Notification, WaitlistEntry, WaitlistOffer, WaitlistSlot
from ..states import Status

# An offer counts as made once its text has left: the patient can only answer what they got.
_OFFERED = (Status.SENT, Status.DELIVERED)
_PENDING = (Status.SCHEDULED, Status.QUEUED)


def entry_by_external_id(session: Session, external_id: str) -> WaitlistEntry | None:
    return session.scalar(select(WaitlistEntry).where(WaitlistEntry.external_id == external_id))


def entry_by_id(session: Session, entry_id: int) -> WaitlistEntry | None:
    return session.get(WaitlistEntry, entry_id)


def waiting_for(session: Session, location_id: str, treatment_id: str) -> list[WaitlistEntry]:
    """Who waits for this location and treatment, first come first."""
    query = (
        select(WaitlistEntry)
        .where(
            WaitlistEntry.location_id == location_id,
            WaitlistEntry.treatment_id == treatment_id,
            WaitlistEntry.status == "waiting",
        )
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    )
    return list(session.scalars(query))


def listed(session: Session, location_ids: list[str], limit: int) -> Sequence[WaitlistEntry]:
    """The entries still waiting, for the staff page, first come first."""
    query = (
        select(WaitlistEntry)
        .where(WaitlistEntry.location_id.in_(location_ids), WaitlistEntry.status == "waiting")
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def remove(session: Session, entry_id: int, now: datetime) -> bool:
    """waiting → removed; False when it was not waiting any more."""
    moved = session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.id == entry_id, WaitlistEntry.status == "waiting")
        .values(status="removed", updated_at=now)
    )
    return bool(getattr(moved, "rowcount", 0))


def slot_of(session: Session, appointment_id: str, start_at: datetime) -> WaitlistSlot | None:
    query = select(WaitlistSlot).where(
        WaitlistSlot.appointment_id == appointment_id, WaitlistSlot.start_at == start_at
    )
    return session.scalar(query)


def withdraw(session: Session, appointment_id: str) -> list[int]:
    """The visit is booked again: its open slots are not on offer any more."""
    moved = session.scalars(
        update(WaitlistSlot)
        .where(WaitlistSlot.appointment_id == appointment_id, WaitlistSlot.status == "open")
        .values(status="withdrawn")
        .returning(WaitlistSlot.id)
    )
    return list(moved)


def still_offered(session: Session, notification_id: int, now: datetime) -> bool:
    """Whether an offer's text is still worth sending: its slot open, its patient waiting."""
    query = (
        select(WaitlistOffer.id)
        .join(WaitlistSlot, WaitlistSlot.id == WaitlistOffer.slot_id)
        .join(WaitlistEntry, WaitlistEntry.id == WaitlistOffer.entry_id)
        .where(
            WaitlistOffer.notification_id == notification_id,
            WaitlistSlot.status == "open",
            WaitlistSlot.offer_until > now,
            WaitlistEntry.status == "waiting",
        )
    )
    return session.scalar(query) is not None


def open_offer_to(session: Session, phone: str, now: datetime) -> WaitlistOffer | None:
    """The offer a "1" from this number takes: made (its text sent), its slot still open;
    of several, the soonest slot."""
    query = (
        select(WaitlistOffer)
        .join(WaitlistSlot, WaitlistSlot.id == WaitlistOffer.slot_id)
        .join(Notification, Notification.id == WaitlistOffer.notification_id)
        .where(
            WaitlistOffer.phone == phone,
            WaitlistOffer.answer.is_(None),
            Notification.status.in_(_OFFERED),
            WaitlistSlot.status == "open",
            WaitlistSlot.offer_until > now,
        )
        .order_by(WaitlistSlot.start_at, WaitlistOffer.id)
        .limit(1)
    )
    return session.scalar(query)


def last_offer_to(session: Session, phone: str, since: datetime) -> WaitlistOffer | None:
    """The latest offer made to this number since `since`, whatever became of its slot."""
    query = (
        select(WaitlistOffer)
        .join(WaitlistSlot, WaitlistSlot.id == WaitlistOffer.slot_id)
        .join(Notification, Notification.id == WaitlistOffer.notification_id)
        .where(
            WaitlistOffer.phone == phone,
            Notification.status.in_(_OFFERED),
            WaitlistSlot.opened_at >= since,
        )
        .order_by(WaitlistOffer.id.desc())
        .limit(1)
    )
    return session.scalar(query)


def claim(session: Session, slot_id: int, entry_id: int, now: datetime) -> bool:
    """open → claimed for this entry, in one conditional update: of replies at the same moment,
    the row count tells the one that won (PostgreSQL makes the others wait on the row lock,
    then finds it claimed)."""
    moved = session.execute(
        update(WaitlistSlot)
        .where(
            WaitlistSlot.id == slot_id,
            WaitlistSlot.status == "open",
            WaitlistSlot.offer_until > now,
        )
        .values(status="claimed", claimed_entry_id=entry_id, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(moved, "rowcount", 0) == 1


def answered(session: Session, offer_id: int, answer: str, now: datetime) -> None:
    session.execute(
        update(WaitlistOffer)
        .where(WaitlistOffer.id == offer_id)
        .values(answer=answer, answered_at=now)
        .execution_options(synchronize_session=False)
    )


def entry_claimed(session: Session, entry_id: int, now: datetime) -> None:
    session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.id == entry_id)
        .values(status="claimed", updated_at=now)
        .execution_options(synchronize_session=False)
    )


def pending_offer_ids(session: Session, slot_id: int) -> list[int]:
    """The offers of a slot whose texts have not left yet (later waves)."""
    query = (
        select(Notification.id)
        .join(WaitlistOffer, WaitlistOffer.notification_id == Notification.id)
        .where(WaitlistOffer.slot_id == slot_id, Notification.status.in_(_PENDING))
    )
    return list(session.scalars(query))


def claimed_to_book(
    session: Session, location_ids: list[str], limit: int
) -> Sequence[WaitlistSlot]:
    """Slots a patient claimed that the front desk has not booked yet: the worklist's."""
    query = (
        select(WaitlistSlot)
        .where(
            WaitlistSlot.status == "claimed",
            WaitlistSlot.handled_at.is_(None),
            WaitlistSlot.location_id.in_(location_ids),
        )
        .order_by(WaitlistSlot.claimed_at.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def count_claimed_to_book(session: Session, location_ids: list[str]) -> int:
    query = select(func.count(WaitlistSlot.id)).where(
        WaitlistSlot.status == "claimed",
        WaitlistSlot.handled_at.is_(None),
        WaitlistSlot.location_id.in_(location_ids),
    )
    return session.scalar(query) or 0


def mark_booked(session: Session, slot_id: int, staff: str, now: datetime) -> bool:
    """The desk booked the winner: off the worklist, once."""
    moved = session.execute(
        update(WaitlistSlot)
        .where(
            WaitlistSlot.id == slot_id,
            WaitlistSlot.status == "claimed",
            WaitlistSlot.handled_at.is_(None),
        )
        .values(handled_at=now, handled_by=staff)
    )
    return getattr(moved, "rowcount", 0) == 1


def recent_slots(session: Session, location_ids: list[str], limit: int) -> Sequence[WaitlistSlot]:
    query = (
        select(WaitlistSlot)
        .where(WaitlistSlot.location_id.in_(location_ids))
        .order_by(WaitlistSlot.opened_at.desc(), WaitlistSlot.id.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def offers_of(session: Session, slot_ids: list[int]) -> Sequence[WaitlistOffer]:
    if not slot_ids:
        return []
    query = select(WaitlistOffer).where(WaitlistOffer.slot_id.in_(slot_ids))
    return session.scalars(query.order_by(WaitlistOffer.id)).all()
