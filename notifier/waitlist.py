"""The waitlist: patients who would come sooner, offered the visits others free.

A cancelled visit (or one marked no-show while still far enough ahead) becomes a slot. The
waitlisted patients it suits (location, treatment, weekday, hours) are offered it by SMS, a few
at a time, a wave every few minutes (`policy.waitlist`); the offers are notifications like any
other, so quiet hours, opt-outs and the send-time checks hold. The first "1" takes the slot, by
one conditional update; the front desk books it (the worklist), and the booking system hears
of it through the `waitlist.slot_claimed` webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from .clinic import Clinic
from .models import Appointment, Notification, Patient, WaitlistEntry, WaitlistOffer, WaitlistSlot
from .plan import next_allowed
from .schedule import cannot_take_texts
from .states import PENDING, Status, record, transition
from .store import opt_outs
from .store import waitlist as rows

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A "1" answers an offer; nothing else does, so that every contract keyword (C, Y, YES, STOP…)
# keeps exactly its meaning, and own words ("I'll take it") stay for staff to read.
TAKE_IT = frozenset({"1"})
# A "1" after the offer's slot went is told so for this long; later it is just a text.
GONE_ANSWERED_FOR = timedelta(days=2)
OFFER_KIND = "waitlist_offer"


def visit_changed(
    session: Session, clinic: Clinic, appointment: Appointment, now: datetime
) -> None:
    """After a booking event: a freed visit is offered, a visit booked again is not."""
    if appointment.status == "booked":
        for slot_id in rows.withdraw(session, appointment.id):
            _withdraw_offers(session, slot_id, now, "visit booked again")
    elif appointment.status in ("cancelled", "no_show"):
        offer(session, clinic, appointment, now)


def offer(
    session: Session, clinic: Clinic, appointment: Appointment, now: datetime
) -> WaitlistSlot | None:
    """Opens the freed visit as a slot and plans its offers in waves; None when it is too late
    to fill, or it was offered already (a replayed event)."""
    location = clinic.location(appointment.location_id)
    rules = clinic.policy.waitlist
    until = appointment.start_at - timedelta(minutes=rules.close_minutes_before)
    if location is None or until <= now:
        return None
    if rows.slot_of(session, appointment.id, appointment.start_at) is not None:
        return None
    slot = WaitlistSlot(
        appointment_id=appointment.id,
        location_id=appointment.location_id,
        treatment_id=appointment.treatment_id,
        start_at=appointment.start_at,
        end_at=appointment.end_at,
        opened_at=now,
        offer_until=until,
        status="open",
    )
    session.add(slot)
    session.flush()
    chosen = _who(session, appointment, location.zone)
    first = next_allowed(now, clinic.policy.quiet_hours, location.zone)
    for i, entry in enumerate(chosen):
        wave = i // rules.per_wave
        due = first + timedelta(minutes=rules.wave_minutes * wave)
        # A wave that would fall into the night waits for the morning, after the earlier ones.
        due = next_allowed(due, clinic.policy.quiet_hours, location.zone)
        if due >= until:
            break
        _offer_one(session, slot, entry, wave, due, now)
    return slot


def _who(session: Session, appointment: Appointment, zone: ZoneInfo) -> list[WaitlistEntry]:
    """The waiting entries the slot suits, first come first, one per patient, each reachable
    by SMS now (the send-time check asks again)."""
    waiting = rows.waiting_for(session, appointment.location_id, appointment.treatment_id)
    phones = {e.patient.phone for e in waiting if e.patient.phone}
    opted_out = opt_outs.active_among(session, phones) if phones else set()
    chosen: list[WaitlistEntry] = []
    seen = {appointment.patient_id}
    for entry in waiting:
        patient = entry.patient
        if patient.id in seen or not _textable(patient) or patient.phone in opted_out:
            continue
        if suits(entry, appointment.start_at, appointment.end_at, zone):
            chosen.append(entry)
            seen.add(patient.id)
    return chosen


def _textable(patient: Patient) -> bool:
    return bool(patient.phone and patient.consent_sms) and not cannot_take_texts(patient)


def suits(entry: WaitlistEntry, start: datetime, end: datetime, zone: ZoneInfo) -> bool:
    """Whether a visit from `start` to `end` falls on the entry's days, within its hours (the
    location's wall clock)."""
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    if DAYS[local_start.weekday()] not in entry.days.split(","):
        return False
    earliest, latest = time.fromisoformat(entry.earliest), time.fromisoformat(entry.latest)
    ends_same_day = local_end.date() == local_start.date()
    return earliest <= local_start.time() and ends_same_day and local_end.time() <= latest


def _offer_one(
    session: Session,
    slot: WaitlistSlot,
    entry: WaitlistEntry,
    wave: int,
    due: datetime,
    now: datetime,
) -> None:
    n = Notification(
        appointment_id=slot.appointment_id,
        patient_id=entry.patient_id,
        kind=OFFER_KIND,
        channel="sms",
        slot=f"waitlist:{slot.id}:{entry.id}",
        ask_confirm=False,
        planned_for=due,
        due_at=due,
        expires_at=slot.offer_until,
        status=Status.SCHEDULED,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(n)
    session.flush()
    record(session, [n.id], Status.SCHEDULED, now, f"waitlist offer, wave {wave + 1}")
    phone = entry.patient.phone or ""
    session.add(
        WaitlistOffer(
            slot_id=slot.id, entry_id=entry.id, notification_id=n.id, phone=phone, wave=wave
        )
    )


def _withdraw_offers(session: Session, slot_id: int, now: datetime, why: str) -> None:
    pending = rows.pending_offer_ids(session, slot_id)
    transition(session, pending, PENDING, Status.CANCELLED, now, why, reason="slot_taken")


@dataclass(frozen=True)
class Claim:
    """What a "1" did: the answer to text back, the patient who sent it, the freed visit."""

    reply: str  # reply_slot_won | reply_slot_gone
    patient: Patient
    appointment: Appointment
    won: WaitlistSlot | None = None


def claim_by_text(session: Session, phone: str, now: datetime) -> Claim | None:
    """A "1" from `phone`: takes the open slot it was offered, if no one was first. None when
    the number has no offer to answer (then the text is like any other). Caller commits."""
    offered = rows.open_offer_to(session, phone, now)
    if offered is None:
        return _after_the_fact(session, phone, now)
    slot, entry = offered.slot, offered.entry
    if not rows.claim(session, slot.id, entry.id, now):
        rows.answered(session, offered.id, "too_late", now)
        return Claim("reply_slot_gone", entry.patient, slot.appointment)
    rows.answered(session, offered.id, "won", now)
    rows.entry_claimed(session, entry.id, now)
    _withdraw_offers(session, slot.id, now, "slot claimed")
    session.refresh(slot)
    return Claim("reply_slot_won", entry.patient, slot.appointment, won=slot)


def _after_the_fact(session: Session, phone: str, now: datetime) -> Claim | None:
    last = rows.last_offer_to(session, phone, now - GONE_ANSWERED_FOR)
    if last is None:
        return None
    # The winner texting "1" again is told again that it is theirs.
    reply = "reply_slot_won" if last.answer == "won" else "reply_slot_gone"
    return Claim(reply, last.entry.patient, last.slot.appointment)


def claimed_payload(slot: WaitlistSlot) -> dict[str, Any]:
    """What the booking system needs to book the winner: the freed visit's place and time, the
    patient, the waitlist entry. No message text, no phone: it has the patient."""
    entry = slot.claimed_entry
    assert entry is not None  # claimed
    return {
        "slot": {
            "id": slot.id,
            "appointment": slot.appointment_id,
            "location": slot.location_id,
            "treatment": slot.treatment_id,
            "start": slot.start_at.isoformat().replace("+00:00", "Z"),
            "end": slot.end_at.isoformat().replace("+00:00", "Z"),
        },
        "patient": {"id": entry.patient_id},
        "waitlist_entry": entry.external_id,
        "claimed_at": (slot.claimed_at or slot.opened_at).isoformat().replace("+00:00", "Z"),
    }
