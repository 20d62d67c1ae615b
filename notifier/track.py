"""What comes back: patients' replies and link answers, delivery receipts, opt-outs.

Replies and the links in messages confirm or flag appointments, STOP-family words fill the
opt-out registry, and anything not understood waits in the staff inbox. Delivery receipts only
ever move a state forward.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import eventlog, hooks, landlines, waitlist
from .channels import DeliveryReceipt, InboundText
from .clinic import Clinic
from .models import (
    Appointment,
    InboundMessage,
    Notification,
    Patient,
)
from .own_words import in_own_words
from .plan import Planned
from .runtime import Runtime
from .schedule import add
from .states import Confirmation, Status, set_confirmation, transition
from .store import (
    appointments,
    conversations,
    first_texts,
    notifications,
    opt_outs,
    patients,
    receipts,
    replies,
)

# Words reduced by keyword(): "Sí", "¡Sí!" and "si" are all SI; "Confirmo." is CONFIRMO.
CONFIRM = {"C", "Y", "YES", "CONFIRM", "CONFIRMED", "OK", "SI", "CONFIRMO"}
RESCHEDULE = {"R", "RESCHEDULE", "N", "NO"}
# Carrier and provider opt-out words. CANCEL is one of them: never ask patients to reply CANCEL.
STOP = {"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL"}
START = {"START", "UNSTOP", "YES"}
HELP = {"HELP", "INFO"}
# The provider names the kind of opt-out keyword it matched, whatever the word: a clinic's own
# words ("BAJA", "PARAR") block or unblock the number at the provider all the same.
OPT_OUT_KINDS = {"stop", "start", "help"}
AUTO_REPLY_EVERY = timedelta(days=1)
EARLY_RECEIPTS_KEPT = timedelta(days=1)
# The opt-out source when the provider refused a text because the number opted out (rows
# written before providers were told apart say twilio:21610; both mean this).
CARRIER_OPT_OUT = "carrier:opted_out"
# Failures that say this number cannot take texts: the patient is told by email instead, once.
EMAIL_INSTEAD = {"invalid_number", "not_mobile", "unreachable", "unknown_number", "undeliverable"}


def keyword(body: str) -> str:
    """The reply reduced to its word: case, accents, spaces, punctuation and emoji dropped."""
    folded = unicodedata.normalize("NFKD", body)
    letters = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return re.sub(r"[^A-Za-z0-9]", "", letters).upper()


def intent(word: str, opted_out: bool, opt_out: str | None = None) -> str:
    """What a reply asks for; `opt_out` is the kind of keyword the provider matched, if any."""
    provider_says = (opt_out or "").strip().lower()
    # Twilio counts YES as an opt-in word even from a number that never opted out; unblocking
    # such a number changes nothing, and the patient meant "I'll be there".
    if provider_says == "start" and not opted_out and word in CONFIRM:
        return "confirm"
    if provider_says in OPT_OUT_KINDS:
        return provider_says
    # YES means "text me again" to someone who said STOP, and "I'll be there" to anyone else.
    if word in START and (opted_out or word != "YES"):
        return "start"
    if word in CONFIRM:
        return "confirm"
    if word in RESCHEDULE:
        return "reschedule"
    if word in STOP:
        return "stop"
    if word in HELP:
        return "help"
    return "other"


def classify(body: str, opted_out: bool, opt_out: str | None = None) -> str:
    """What a reply asks for: the contract's keywords first, exactly as DESIGN.md lists them,
    then, for anything else, the patient's own words ("yes I'll be there", "¿podemos
    cambiarla?"). Pure: the text and the number's opt-out state in, an intent out."""
    what = intent(keyword(body), opted_out, opt_out)
    return in_own_words(body) if what == "other" else what


def is_opted_out(session: Session, phone: str | None) -> bool:
    if not phone:
        return False
    return opt_outs.is_active(session, phone)


@dataclass(frozen=True)
class Answer:
    """What to answer the patient with: a template kind and its context, or nothing."""

    kind: str | None
    context: dict[str, Any]


def receive(rt: Runtime, session: Session, text: InboundText, now: datetime) -> Answer:
    """Handles one incoming SMS; safe to call again for the same one."""
    sender = text.sender
    if replies.seen(session, text.provider_id):
        return Answer(None, {})  # the provider retried a webhook we already handled
    what = classify(text.body, is_opted_out(session, sender), text.opt_out)
    # "1" is no contract keyword: it answers a waitlist offer, and only from a number offered one.
    claim = None
    if what == "other" and keyword(text.body) in waitlist.TAKE_IT:
        claim = waitlist.claim_by_text(session, sender, now)
    if claim is not None:
        return _claim_answered(rt, session, text, claim, now)
    appointment = match_appointment(rt, session, sender, text.to, now)
    patient = appointment.patient if appointment else patients.first_with_phone(session, sender)
    message = InboundMessage(
        provider_id=text.provider_id,
        from_number=sender,
        to_number=text.to,
        body=text.body[:1600],
        received_at=now,
        patient_id=patient.id if patient else None,
        appointment_id=appointment.id if appointment else None,
        intent=what,
        # A STOP (or CANCEL) from a patient with a visit booked may have meant the visit.
        needs_staff=what in ("reschedule", "other") or (what == "stop" and appointment is not None),
        auto_replied=False,
    )
    reply_kind = _act(rt, session, message, appointment, now)
    message.auto_replied = reply_kind is not None
    session.add(message)
    try:
        session.commit()
    except IntegrityError:  # the same webhook, twice at once: the other one answered
        session.rollback()
        return Answer(None, {})
    _log_reply(message, appointment)
    return Answer(reply_kind, reply_context(rt, patient, appointment))


def _claim_answered(
    rt: Runtime, session: Session, text: InboundText, claim: waitlist.Claim, now: datetime
) -> Answer:
    """A "1" to a waitlist offer: recorded like any text, answered "it's yours" or "it's gone";
    the winner goes to the booking system by webhook, in the same transaction as the claim."""
    message = InboundMessage(
        provider_id=text.provider_id,
        from_number=text.sender,
        to_number=text.to,
        body=text.body[:1600],
        received_at=now,
        patient_id=claim.patient.id,
        appointment_id=None,  # the freed visit is another patient's
        intent="slot_claim",
        needs_staff=False,
        auto_replied=True,
    )
    session.add(message)
    if claim.won is not None:
        hooks.emit(session, "waitlist.slot_claimed", waitlist.claimed_payload(claim.won), now)
    try:
        session.commit()
    except IntegrityError:  # the same webhook, twice at once: the other one answered
        session.rollback()
        return Answer(None, {})
    eventlog.reply_received(
        message.id, None, claim.appointment.location_id, "slot_claim", claim.reply
    )
    return Answer(claim.reply, reply_context(rt, claim.patient, claim.appointment))


# What a reply did, by its intent, for the event log.
DID = {
    "confirm": "confirmed",
    "reschedule": "wants_reschedule",
    "stop": "opted_out",
    "start": "opted_in",
    "help": "answered_help",
}


def _log_reply(message: InboundMessage, appointment: Appointment | None) -> None:
    location = appointment.location_id if appointment else None
    # A STOP opts the number out whatever else it does (with a visit booked it also lands on the
    # worklist, so that someone calls): the line says what the patient's word did.
    if message.intent == "stop":
        did = DID["stop"]
    else:
        did = "staff_inbox" if message.needs_staff else DID.get(message.intent, "nothing")
    eventlog.reply_received(message.id, message.appointment_id, location, message.intent, did)
    if message.intent == "stop":
        eventlog.opted_out(f"keyword:{keyword(message.body)}", message.appointment_id, location)
    elif message.intent == "start":
        eventlog.opted_in(message.appointment_id, location)


def _act(
    rt: Runtime,
    session: Session,
    message: InboundMessage,
    appointment: Appointment | None,
    now: datetime,
) -> str | None:
    """Applies the reply's effect and names the answer to send, if any."""
    policy = rt.clinic.policy
    # Twilio answers STOP and START itself by default; a second answer would only confuse.
    ours = not policy.twilio_answers_keywords
    if message.intent in ("stop", "start"):
        _opt(session, message, appointment, now)
        return f"reply_{message.intent}" if ours else None
    if message.intent == "help":
        # Twilio's own HELP answer names neither the practice nor its phone: ours does,
        # unless the clinic's Messaging Service is set up to answer HELP itself.
        return None if policy.twilio_answers_help else "reply_help"
    if message.intent in ANSWERS and appointment is not None:
        before = appointment.confirmation
        set_confirmation(appointment, ANSWERS[message.intent], now)
        hooks.answered(session, appointment, before, "sms", now, rt.settings.fhir_writeback_url)
        return f"reply_{'confirmed' if message.intent == 'confirm' else 'reschedule'}"
    message.needs_staff = True
    # A polite "we got your message" at most once a day, so a chat doesn't become a loop.
    if replies.auto_replied_since(session, message.from_number, now - AUTO_REPLY_EVERY):
        return None
    return "reply_other"


ANSWERS = {"confirm": Confirmation.CONFIRMED, "reschedule": Confirmation.WANTS_RESCHEDULE}


def _opt(
    session: Session, message: InboundMessage, appointment: Appointment | None, now: datetime
) -> None:
    """STOP or START: the registry, and the booking system told of what changed. A STOP with a
    visit booked may have meant the visit (CANCEL is a STOP word): that is told too."""
    phone, source = message.from_number, f"keyword:{keyword(message.body)}"
    was_out = opt_outs.is_active(session, phone)
    if message.intent == "stop":
        opt_outs.register(session, phone, source, now)
        if appointment is not None:
            data = {"appointment_id": appointment.id, "patient_id": appointment.patient_id}
            said = {"via": "sms", "word": keyword(message.body)}
            hooks.emit(session, "appointment.cancel_requested", {**data, **said}, now)
    else:
        opt_outs.lift(session, phone, now)
    if was_out != (message.intent == "stop"):
        hooks.opted(session, phone, message.intent == "stop", source, now)


def match_appointment(
    rt: Runtime, session: Session, phone: str, our_number: str, now: datetime
) -> Appointment | None:
    """The upcoming appointment a reply is about: the one the latest asking reminder was for,
    else the next one; a reply to a location's own number only matches that location's."""
    upcoming = appointments.booked_ahead_for_phone(session, phone, now)
    at_location = [a for a in upcoming if _location_number(rt, a.location_id) == our_number]
    candidates = at_location or upcoming
    if not candidates:
        return None
    asked = notifications.last_asked(session, [a.id for a in candidates])
    return next((a for a in candidates if a.id == asked), candidates[0])


def _location_number(rt: Runtime, location_id: str) -> str | None:
    location = rt.clinic.location(location_id)
    return (location.sender if location else None) or rt.settings.twilio_from_number


def reply_context(
    rt: Runtime, patient: Patient | None, appointment: Appointment | None
) -> dict[str, Any]:
    location = rt.clinic.location(appointment.location_id) if appointment else None
    location = location or rt.clinic.locations[0]
    return {
        "lang": patient.language if patient else "en",
        "practice": {"name": rt.clinic.practice.name},
        "location": location.for_templates(),
        "patient": {"first_name": patient.first_name if patient else ""},
    }


def linked_appointment(session: Session, appointment_id: str) -> Appointment | None:
    """The appointment a patient's link names, while it is still booked."""
    appointment = appointments.by_id(session, appointment_id)
    return appointment if appointment is not None and appointment.status == "booked" else None


def answer_by_link(
    session: Session,
    appointment: Appointment,
    action: str,
    now: datetime,
    write_back_url: str | None = None,
) -> None:
    """A patient's answer through a link: `confirm`, or else a wish for another time, which
    waits on the worklist as a reply does (once, however often the page is posted)."""
    answer = Confirmation.CONFIRMED if action == "confirm" else Confirmation.WANTS_RESCHEDULE
    before = appointment.confirmation
    set_confirmation(appointment, answer, now)
    hooks.answered(session, appointment, before, "link", now, write_back_url)
    if answer == Confirmation.WANTS_RESCHEDULE and not conversations.has_open_link_request(
        session, appointment.id
    ):
        session.add(_link_request(appointment, now))
    session.commit()


def _link_request(appointment: Appointment, now: datetime) -> InboundMessage:
    # A link answer has no provider id: one made of the appointment and the moment is unique.
    made = hashlib.sha256(f"{appointment.id}|{now.isoformat()}".encode()).hexdigest()[:40]
    return InboundMessage(
        provider_id=f"link:{made}",
        channel="link",
        from_number="",  # not a text: nothing that goes by number may take it for one
        to_number="",
        body="Asked for another time, by the link in an email.",
        received_at=now,
        patient_id=appointment.patient_id,
        appointment_id=appointment.id,
        intent="reschedule",
        needs_staff=True,
        auto_replied=False,
    )


def delivery_receipt(
    session: Session, clinic: Clinic, receipt: DeliveryReceipt, now: datetime
) -> Notification | None:
    """Applies a delivery receipt; returns the notification when it moved it to a final state.
    A receipt never moves a state backwards; one for a send not yet recorded waits for it."""
    sid, to, code = receipt.provider_id, receipt.status, receipt.error_code
    notification = notifications.by_provider_id(session, sid)
    if notification is None:
        _keep_for_later(session, receipt, now)
        return None
    moved = _apply_receipt(session, clinic, notification, to, code, receipt.reason, now)
    session.commit()
    return notification if moved else None


def _apply_receipt(
    session: Session,
    clinic: Clinic,
    notification: Notification,
    to: str,
    code: str | None,
    why: str | None,
    now: datetime,
) -> bool:
    # A failure the provider gave no known reason for is still a failure to reach the number.
    reason = None if to == Status.DELIVERED else (why or "undeliverable")
    detail = f"receipt: {to}" + (f" ({code})" if code else "")
    moved = transition(
        session, [notification.id], [Status.SENT], Status(to), now, detail,
        error_code=code, reason=reason,
    )  # fmt: skip
    if moved and reason:
        hooks.message_failed(session, notification, to, reason, code, now)
        first_texts.forget(session, notification.id)
        eventlog.message_failed(notification, to, code, reason)
        after_sms_failure(session, clinic, notification, reason, now)
    elif moved:
        eventlog.message_delivered(notification)
    return bool(moved)


def _keep_for_later(session: Session, receipt: DeliveryReceipt, now: datetime) -> None:
    # Receipts nobody claims within a day were for messages that are not ours: forget them.
    receipts.forget_before(session, now - EARLY_RECEIPTS_KEPT)
    receipts.keep(
        session, receipt.provider_id, receipt.status, receipt.error_code, receipt.reason, now
    )
    try:
        session.commit()
    except IntegrityError:  # the same early receipt twice at once
        session.rollback()


def apply_early_receipts(
    session: Session, clinic: Clinic, provider_ids: list[str], now: datetime
) -> None:
    """Applies the receipts that came before these sends were recorded (caller commits)."""
    for receipt in receipts.waiting_for(session, provider_ids):
        notification = notifications.by_provider_id(session, receipt.provider_id)
        if notification is not None:
            _apply_receipt(
                session,
                clinic,
                notification,
                receipt.status,
                receipt.error_code,
                receipt.reason,
                now,
            )
        receipts.drop(session, receipt)


def after_sms_failure(
    session: Session, clinic: Clinic, sms: Notification, reason: str | None, now: datetime
) -> None:
    """A permanent SMS failure: record an opt-out the carrier told us of, or send by email; a
    number that cannot take texts stops being texted at all (`landlines`)."""
    patient = sms.patient
    if sms.kind == "staff_message":  # a person wrote it for this number: they see it failed
        reason = None if reason in EMAIL_INSTEAD else reason
    if reason == "opted_out" and patient.phone:
        if not opt_outs.is_active(session, patient.phone):
            hooks.opted(session, patient.phone, True, CARRIER_OPT_OUT, now)
        opt_outs.register(session, patient.phone, CARRIER_OPT_OUT, now)
        eventlog.opted_out(CARRIER_OPT_OUT, sms.appointment_id, sms.appointment.location_id)
        return
    if reason == "not_mobile" and patient.phone:
        landlines.found(session, clinic, patient.phone, sms, now)
    if reason not in EMAIL_INSTEAD or not (patient.email and patient.consent_email):
        return
    if sms.kind == waitlist.OFFER_KIND:  # answered by texting "1": no email can take its place
        return
    slots = [sms.slot, f"fallback:{sms.id}"]
    if not notifications.has_email_in_slots(session, sms.appointment_id, sms.kind, slots):
        fallback = Planned(
            sms.kind, "email", f"fallback:{sms.id}", now, sms.expires_at, sms.ask_confirm
        )
        add(session, sms.appointment, [fallback], now)
