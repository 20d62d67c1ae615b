"""Conversations with patients and the worklist: what staff read and answer.

A staff member's answer is a notification like any other (`staff_message`): it enters the
schedule through `states.enter`, and the clock and the worker send it through the same
exactly-once path as a reminder, with the same checks at the moment of the call (opt-out,
consent, quiet hours). The form that writes it carries a random id kept as the row's slot, so
the same form posted twice makes one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ..clinic import Clinic, Location
from ..models import Appointment, InboundMessage, Notification, Patient, WaitlistSlot
from ..plan import next_allowed
from ..schedule import recipient
from ..states import enter
from ..store import conversations, opt_outs, patients, replies
from ..store import waitlist as waitlist_rows
from .board import Failure, InboxReply, in_scope, inbox

MAX_LENGTH = 600  # four SMS segments: a longer answer is a phone call
SHOWN = 200  # the latest texts each way a conversation shows
LIST_LIMIT = 200  # failed messages the worklist shows (replies: the inbox's own limit)
# "Send now" inside quiet hours answers a patient who is awake and texting: within the hour.
ANSWER_WITHIN = timedelta(hours=1)
# A message held for the morning is worth sending until the end of that day.
KEPT_FOR = timedelta(hours=16)
FORM_ID = r"^[A-Za-z0-9_-]{16,64}$"


class CannotText(Exception):
    """Nothing was written; the message says why, for the staff member."""


@dataclass(frozen=True)
class Entry:
    """One line of a conversation: a text either way, or an answer through a link."""

    at: datetime
    incoming: bool
    text: str
    channel: str  # sms | link
    status: str | None = None  # ours: the notification's state
    kind: str | None = None  # ours: reminder, staff_message, …
    staff: str | None = None
    due_at: datetime | None = None
    override: bool = False
    reason: str | None = None
    auto_replied: bool = False  # theirs: the service answered it (its answer is not kept)


@dataclass(frozen=True)
class Thread:
    patient: Patient
    location: Location
    zone: ZoneInfo
    entries: list[Entry]
    appointment: Appointment | None
    reason_not: str | None  # why staff cannot text this patient, if they cannot
    quiet_until: datetime | None  # set while quiet hours hold texts
    may_send_now: bool  # inside quiet hours, answering a text from within the hour
    open_reply: InboundMessage | None  # the reply an answer settles, if one waits


def thread(session: Session, clinic: Clinic, patient_id: str, now: datetime) -> Thread | None:
    """The patient's conversation, oldest first; opening it marks their replies read."""
    patient = patients.by_id(session, patient_id)
    if patient is None:
        return None
    appointment = conversations.next_appointment(session, patient.id, now)
    location = _location(clinic, appointment)
    zone = recipient(patient, location.zone).zone
    ours = [_ours(n) for n in conversations.texts_to(session, patient.id, SHOWN)]
    theirs = [
        _theirs(m) for m in conversations.replies_from(session, patient.id, patient.phone, SHOWN)
    ]
    conversations.mark_read(session, patient.id, patient.phone, now)
    session.commit()
    quiet = _quiet_until(clinic, zone, now)
    open_reply = next((m for m in replies_waiting(session, patient) if m.channel == "sms"), None)
    return Thread(
        patient=patient,
        location=location,
        zone=zone,
        entries=sorted(ours + theirs, key=lambda e: e.at),
        appointment=appointment,
        reason_not=_reason_not(session, patient, appointment),
        quiet_until=quiet,
        may_send_now=quiet is not None and _texted_within_hour(session, patient, now),
        open_reply=open_reply,
    )


def replies_waiting(session: Session, patient: Patient) -> list[InboundMessage]:
    """The patient's replies that still wait for staff, latest first."""
    listed = conversations.replies_from(session, patient.id, patient.phone, SHOWN)
    return [m for m in listed if m.needs_staff and m.handled_at is None]


def _ours(n: Notification) -> Entry:
    held = n.status == "scheduled"
    return Entry(
        at=n.sent_at or n.created_at,
        incoming=False,
        text=n.body or n.staff_text or "",
        channel="sms",
        status=n.status,
        kind=n.kind,
        staff=n.staff,
        due_at=n.due_at if held else None,
        override=n.quiet_override,
        reason=n.reason,
    )


def _theirs(m: InboundMessage) -> Entry:
    return Entry(
        at=m.received_at, incoming=True, text=m.body, channel=m.channel,
        auto_replied=m.auto_replied,
    )  # fmt: skip


def _location(clinic: Clinic, appointment: Appointment | None) -> Location:
    found = clinic.location(appointment.location_id) if appointment else None
    return found or clinic.locations[0]


def _quiet_until(clinic: Clinic, zone: ZoneInfo, now: datetime) -> datetime | None:
    allowed = next_allowed(now, clinic.policy.quiet_hours, zone)
    return None if allowed == now else allowed


def _texted_within_hour(session: Session, patient: Patient, now: datetime) -> bool:
    last = conversations.last_text_from(session, patient.id, patient.phone)
    return last is not None and now - last.received_at <= ANSWER_WITHIN


def _reason_not(session: Session, patient: Patient, appointment: Appointment | None) -> str | None:
    if not patient.phone:
        return "not sent: no mobile number"
    if opt_outs.is_active(session, patient.phone):
        return "not sent: patient opted out of texts"
    if not patient.consent_sms:
        return "not sent: patient has not agreed to texts"
    if appointment is None:
        return "not sent: the patient has no appointment with us"
    return None


@dataclass(frozen=True)
class Answered:
    """What became of a staff member's answer."""

    state: str  # sent (on its way) | held (quiet hours) | again (this form was sent already)
    due_at: datetime
    zone: ZoneInfo


def answer(
    session: Session,
    clinic: Clinic,
    patient_id: str,
    text: str,
    staff: str,
    form_id: str,
    now: datetime,
    *,
    send_now: bool = False,
    reply_id: int | None = None,
) -> Answered:
    """Writes a staff member's text to the patient into the schedule, due now, or at the end
    of quiet hours unless `send_now` answers a text the patient sent within the hour. Settles
    the reply `reply_id` it answers. Raises CannotText when it may not be sent at all."""
    patient = patients.by_id(session, patient_id)
    if patient is None:
        raise CannotText("There is no such patient.")
    words = " ".join(text.split())
    if not words:
        raise CannotText("Write a message first.")
    if len(words) > MAX_LENGTH:
        raise CannotText(f"That is {len(words)} characters; keep a text under {MAX_LENGTH}.")
    appointment = conversations.next_appointment(session, patient.id, now)
    why_not = _reason_not(session, patient, appointment)
    if why_not or appointment is None:
        raise CannotText(f"{why_not or 'not sent'}.".capitalize())
    zone = recipient(patient, _location(clinic, appointment).zone).zone
    quiet = _quiet_until(clinic, zone, now)
    override = bool(quiet and send_now)
    if override and not _texted_within_hour(session, patient, now):
        raise CannotText(
            "Not sent: inside quiet hours a text goes now only in answer to one the patient"
            " sent within the last hour."
        )
    due = now if override or quiet is None else quiet
    row = Notification(
        appointment_id=appointment.id,
        patient_id=patient.id,
        kind="staff_message",
        channel="sms",
        slot=f"staff:{form_id}",
        planned_for=due,
        due_at=due,
        expires_at=due + KEPT_FOR,
        staff=staff,
        staff_text=words,
        quiet_override=override,
    )
    detail = f"staff message by {staff}"
    if override:
        detail += ", sent inside quiet hours in answer to the patient's text"
    if not enter(session, row, now, detail):
        return Answered("again", due, zone)
    if reply_id in {m.id for m in replies_waiting(session, patient)}:
        replies.mark_handled(session, reply_id, staff, now)
    session.commit()
    return Answered("held" if due > now else "sent", due, zone)


@dataclass(frozen=True)
class WorkItem:
    """One thing on the worklist, and what settles it."""

    what: str  # reply | reschedule | opted_out | failed | slot_claimed
    at: datetime
    location: Location
    patient: Patient | None
    appointment: Appointment | None
    message: InboundMessage | None = None
    failure: Failure | None = None
    claim: WaitlistSlot | None = None  # a waitlisted patient took this freed visit: book it

    @property
    def label(self) -> str:
        if self.what == "reschedule":
            how = "email link" if self.message and self.message.channel == "link" else "text"
            return f"Wants another time (by {how})"
        return {
            "reply": "Reply not understood",
            "opted_out": "Opted out of texts — call to check whether they meant to cancel",
            "failed": "Message failed",
            "slot_claimed": "Slot claimed — book it",
        }[self.what]


def worklist(session: Session, clinic: Clinic, location_id: str | None) -> list[WorkItem]:
    """Everything that needs a person, newest first."""
    locations = in_scope(clinic, location_id)
    ids = [loc.id for loc in locations]
    items = [_reply_item(r) for r in inbox(session, clinic, location_id)]
    by_id = {loc.id: loc for loc in locations}
    for n in conversations.open_failures(session, ids, LIST_LIMIT):
        location = by_id[n.appointment.location_id]
        items.append(
            WorkItem("failed", n.updated_at, location, n.patient, n.appointment,
                     failure=Failure(n, location))
        )  # fmt: skip
    items += [
        _claim_item(slot, by_id) for slot in waitlist_rows.claimed_to_book(session, ids, LIST_LIMIT)
    ]
    return sorted(items, key=lambda item: item.at, reverse=True)


def _claim_item(slot: WaitlistSlot, by_id: dict[str, Location]) -> WorkItem:
    entry = slot.claimed_entry
    patient = entry.patient if entry else None
    at = slot.claimed_at or slot.opened_at
    return WorkItem("slot_claimed", at, by_id[slot.location_id], patient, None, claim=slot)


def _reply_item(r: InboxReply) -> WorkItem:
    what = {"reschedule": "reschedule", "stop": "opted_out"}.get(r.message.intent, "reply")
    return WorkItem(
        what, r.message.received_at, r.location, r.patient, r.appointment, message=r.message
    )


def worklist_count(session: Session, clinic: Clinic, location_id: str | None) -> int:
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    return (
        replies.count_needing_staff(session, ids)
        + conversations.count_open_failures(session, ids)
        + waitlist_rows.count_claimed_to_book(session, ids)
    )


def unread(session: Session, clinic: Clinic) -> list[tuple[str, int]]:
    """Unread replies by location (name, count); those matched to no visit count everywhere."""
    counts = conversations.unread_by_location(session)
    unmatched = counts.get(None, 0)
    return [(loc.name, counts.get(loc.id, 0) + unmatched) for loc in clinic.locations]


def settle_failure(session: Session, notification_id: int, staff: str, now: datetime) -> bool:
    settled = conversations.settle_failure(session, notification_id, staff, now)
    session.commit()
    return settled
