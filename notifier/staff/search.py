"""Finding a patient from the search box: by name, by phone number however it is written, or
by appointment id."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import phonenumbers
from sqlalchemy.orm import Session

from ..ingest import is_id
from ..models import Appointment, Patient
from ..store import appointments, search

LIMIT = 50
MAX_QUERY = 100


@dataclass(frozen=True)
class Found:
    patient: Patient
    appointments: list[Appointment]  # the latest start first


@dataclass
class Results:
    query: str
    by: str = ""  # "appointment id", "phone", "name", or "" when nothing was asked
    found: list[Found] = field(default_factory=list)


def as_phone(query: str) -> str | None:
    """The query as an E.164 number, if it reads as one (US numbers as people write them)."""
    if len(re.sub(r"\D", "", query)) < 7 or re.search(r"[A-Za-z]", query):
        return None
    try:
        number = phonenumbers.parse(query, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def find(session: Session, query: str) -> Results:
    # Control characters (NUL above all, which PostgreSQL refuses in text) are no one's name.
    printable = "".join(ch if ch.isprintable() else " " for ch in query[: MAX_QUERY * 4])
    query = " ".join(printable.split())[:MAX_QUERY]
    results = Results(query)
    if not query:
        return results
    if is_id(query) and (appointment := appointments.by_id(session, query)) is not None:
        results.by = "appointment id"
        results.found = [Found(appointment.patient, [appointment])]
        return results
    phone = as_phone(query)
    if phone is not None:
        results.by, listed = "phone", search.patients_with_phone(session, phone, LIMIT)
    else:
        results.by, listed = "name", search.patients_named(session, query.split(), LIMIT)
    by_patient: dict[str, list[Appointment]] = defaultdict(list)
    for a in search.appointments_of(session, [p.id for p in listed]):
        by_patient[a.patient_id].append(a)
    results.found = [Found(p, by_patient[p.id]) for p in listed]
    return results
