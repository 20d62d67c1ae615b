"""The waitlist page: who waits, the freed visits offered lately and how each offer went, and
the front desk's own additions (a patient on the phone asking for an earlier time)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ..clinic import Clinic
from ..ingest import InvalidEvent
from ..models import Patient, WaitlistEntry, WaitlistOffer, WaitlistSlot
from ..store import patients
from ..store import waitlist as rows
from ..waitlist import DAYS
from ..waitlist_entries import add, parse_entry
from .board import in_scope

LISTED = 500
RECENT_SLOTS = 20


@dataclass(frozen=True)
class Offered:
    slot: WaitlistSlot
    offers: list[WaitlistOffer]


@dataclass(frozen=True)
class WaitlistPage:
    entries: Sequence[WaitlistEntry]
    slots: list[Offered]


def page(session: Session, clinic: Clinic, location_id: str | None) -> WaitlistPage:
    ids = [loc.id for loc in in_scope(clinic, location_id)]
    slots = rows.recent_slots(session, ids, RECENT_SLOTS)
    offers = rows.offers_of(session, [slot.id for slot in slots])
    return WaitlistPage(
        rows.listed(session, ids, LISTED),
        [Offered(slot, [o for o in offers if o.slot_id == slot.id]) for slot in slots],
    )


class Refused(Exception):
    """The form cannot be taken as it is: the message says what to fix."""


def add_from_form(
    session: Session, clinic: Clinic, form: FormData, staff: str, now: datetime
) -> WaitlistEntry:
    """A patient the desk puts on the waitlist: a known patient by their phone keeps their
    record; a new one is made. The desk vouches that the patient agreed to be texted."""
    phone = str(form.get("phone", "")).strip()
    if form.get("agreed") != "1":
        raise Refused("Ask the patient whether we may text them the offers, and tick the box.")
    try:
        normalized = parse_entry(_entry(form, phone, "probe"), clinic).patient.phone
    except InvalidEvent as exc:
        raise Refused(_said(exc)) from None
    known = patients.first_with_phone(session, normalized or "")
    patient_id = known.id if known else f"wl-{secrets.token_hex(8)}"
    given = parse_entry(_entry(form, phone, patient_id, known), clinic)
    entry, _ = add(session, given, f"staff:{staff}", now)
    session.commit()
    return entry


def _entry(
    form: FormData, phone: str, patient_id: str, patient: Patient | None = None
) -> dict[str, object]:
    return {
        "id": f"staff-{secrets.token_hex(8)}",
        "patient": {
            "id": patient_id,
            "first_name": patient.first_name if patient else str(form.get("first_name", "")),
            "last_name": patient.last_name if patient else str(form.get("last_name", "")),
            "phone": phone,
            "email": patient.email if patient else None,
            "language": patient.language if patient else str(form.get("language", "en")),
            "time_zone": patient.time_zone if patient else None,
            "consent": {
                "sms": True,
                "email": patient.consent_email if patient else False,
                "marketing": patient.consent_marketing if patient else False,
            },
        },
        "location": str(form.get("location", "")),
        "treatment": str(form.get("treatment", "")),
        "days": [d for d in DAYS if form.get(f"day_{d}") == "1"] or ["none"],
        "earliest": str(form.get("earliest", "")),
        "latest": str(form.get("latest", "")),
    }


def _said(exc: InvalidEvent) -> str:
    return "Not added: " + "; ".join(f"{field or 'hours'}: {why}" for field, why in exc.errors)


def remove(session: Session, entry_id: int, now: datetime) -> bool:
    removed = rows.remove(session, entry_id, now)
    session.commit()
    return removed


def mark_booked(session: Session, slot_id: int, staff: str, now: datetime) -> bool:
    booked = rows.mark_booked(session, slot_id, staff, now)
    session.commit()
    return booked
