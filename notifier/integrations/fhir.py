"""FHIR R4 Appointments in: a resource, or a Bundle holding one (as a Subscription notification
carries it), becomes the contract's booking event.

fhir.resources 8 has R5 at its top level, R4B under `fhir.resources.R4B` and no R4 package. R4B
(4.3) kept Appointment, Patient, Location and Bundle as R4 (4.0.1) has them, so its models
validate R4 resources as written; the top-level R5 ones would not (R5 reshaped Appointment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from ..clinic import Clinic
from ..ingest import InvalidEvent, normalize_phone, parse_event, payload_digest
from . import Ignored, error_reason, primary_language
from .config import FhirConfig

EVENT_TYPES = {
    "proposed": "appointment.booked",
    "pending": "appointment.booked",
    "booked": "appointment.booked",
    "arrived": "appointment.booked",
    "checked-in": "appointment.booked",
    "fulfilled": "appointment.completed",
    "cancelled": "appointment.cancelled",
    # As far as the patient knows it was booked: the pending reminders must stop all the same.
    "entered-in-error": "appointment.cancelled",
    "noshow": "appointment.no_show",
}
# Where each contract field comes from, so the contract's own checks can name the FHIR element.
ELEMENTS = {
    "type": "Appointment.status",
    "occurred_at": "Appointment.meta.lastUpdated",
    "appointment.id": "Appointment.id",
    "appointment.location": "Appointment.participant",
    "appointment.treatment": "Appointment.serviceType",
    "appointment.provider": "Appointment.participant",
    "appointment.start": "Appointment.start",
    "appointment.end": "Appointment.end",
    "patient.id": "Patient.id",
    "patient.first_name": "Patient.name",
    "patient.last_name": "Patient.name",
    "patient.phone": "Patient.telecom",
    "patient.email": "Patient.telecom",
    "patient.language": "Patient.communication",
}
# A work line may be shared and an old one may belong to someone else now.
UNTEXTABLE_USES = {"work", "old"}
NAME_PREFERENCE = {"usual": 0, "official": 1}  # "usual" is what the patient goes by
RANK_UNSET = 1_000_000  # FHIR ranks start at 1; an unranked contact point comes after ranked ones

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True)
class _Actor:
    element: str  # its FHIRPath, for errors
    reference: Reference
    resource: Resource | None  # None when neither in the Bundle nor contained


@dataclass(frozen=True)
class _Document:
    appointment: Appointment
    # "Patient/p1", an entry's fullUrl, or "#p1" for a contained resource → the resource.
    resources: dict[str, Resource]

    def participant(self, kind: type[Resource]) -> _Actor | None:
        """The first participant of that kind, by its resource, its type or its reference."""
        name = kind.get_resource_type()
        for index, participant in enumerate(self.appointment.participant):
            actor = participant.actor
            if actor is None:
                continue
            resource = self.resources.get(actor.reference or "")
            if isinstance(resource, kind) or name in (actor.type, _type_of(actor.reference)):
                return _Actor(f"Appointment.participant[{index}].actor", actor, resource)
        return None


def booking_event(
    payload: Any, config: FhirConfig, clinic: Clinic, now: datetime
) -> dict[str, Any] | Ignored:
    """The contract event for an Appointment or a Bundle holding one; raises InvalidEvent whose
    fields are FHIR elements."""
    document = _read(payload)
    if isinstance(document, Ignored):
        return document
    appointment = document.appointment
    unremindable = _unremindable(appointment)
    if unremindable is not None:
        return unremindable
    event_type = EVENT_TYPES.get(appointment.status or "")
    if event_type is None:
        raise InvalidEvent([("Appointment.status", f"unknown status {appointment.status!r}")])
    if not appointment.id:
        raise InvalidEvent([("Appointment.id", "required: it is the appointment's id here")])
    last_updated = appointment.meta.lastUpdated if appointment.meta else None
    event = {
        "type": event_type,
        "occurred_at": (last_updated or now).isoformat(),
        "appointment": _appointment(document, config),
        "patient": _patient(document, config),
    }
    event = {"id": _event_id(appointment, event), **event}
    _check(event, clinic, now)
    return event


def _unremindable(appointment: Appointment) -> Ignored | None:
    """Why a well-formed Appointment has nothing to remind of, if so."""
    if appointment.status == "waitlist":
        return Ignored("a waitlist Appointment has no time to remind of")
    if appointment.start is None and appointment.status in ("proposed", "cancelled"):
        # The only statuses FHIR lets go without a time (invariant app-3).
        return Ignored(f"a {appointment.status} Appointment without a start has no time")
    return None


def _read(payload: Any) -> _Document | Ignored:
    kind = payload.get("resourceType") if isinstance(payload, dict) else None
    if kind == "Appointment":
        appointment = _validated(Appointment, payload)
        return _Document(appointment, _contained(appointment))
    if kind == "Bundle":
        return _from_bundle(_validated(Bundle, payload))
    raise InvalidEvent([("resourceType", "expected an Appointment, or a Bundle holding one")])


def _validated(model: type[R], payload: dict[str, Any]) -> R:
    root = model.get_resource_type()
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [(_fhirpath(root, e["loc"]), error_reason(e)) for e in exc.errors()]
        raise InvalidEvent(errors) from None
    except KeyError:  # fhir.resources' answer to an entry or contained resource of unknown type
        raise InvalidEvent([(root, "a resource inside has an unknown resourceType")]) from None


def _fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif part.endswith("__ext"):  # fhir.resources' name for a primitive's `_start` in JSON
            path += "._" + part.removesuffix("__ext")
        else:
            path += f".{part}"
    return path


def _contained(appointment: Appointment) -> dict[str, Resource]:
    return {f"#{r.id}": r for r in appointment.contained or [] if r.id}


def _from_bundle(bundle: Bundle) -> _Document | Ignored:
    resources: dict[str, Resource] = {}
    appointments: list[Appointment] = []
    for entry in bundle.entry or []:
        resource = entry.resource
        if resource is None:
            continue
        if isinstance(resource, Appointment):
            appointments.append(resource)
        if entry.fullUrl:
            resources[entry.fullUrl] = resource
        if resource.id:
            resources[f"{resource.get_resource_type()}/{resource.id}"] = resource
    if not appointments and bundle.type == "history":
        # A Subscription's handshake and heartbeat carry no Appointment; a 4xx would make the
        # FHIR server mark the subscription as failing.
        return Ignored("no Appointment in the Bundle (a subscription handshake or heartbeat)")
    if len(appointments) != 1:
        raise InvalidEvent([("Bundle.entry", "exactly one Appointment entry, please")])
    return _Document(appointments[0], {**resources, **_contained(appointments[0])})


def _type_of(reference: str | None) -> str | None:
    """The type a reference names: Location in "https://ehr.example/fhir/Location/fh-1"."""
    parts = (reference or "").split("/")
    return parts[-2] if len(parts) >= 2 else None


def _appointment(document: _Document, config: FhirConfig) -> dict[str, Any]:
    appointment = document.appointment
    start, end = _times(appointment)
    practitioner = document.participant(Practitioner)
    return {
        "id": appointment.id,
        "location": _location(document, config),
        "treatment": _treatment(appointment, config),
        "provider": practitioner.reference.display if practitioner else None,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }


def _times(appointment: Appointment) -> tuple[datetime, datetime]:
    start: datetime | None = appointment.start
    if start is None:
        raise InvalidEvent([("Appointment.start", "required: a reminder needs the visit's time")])
    if appointment.end is not None:
        return start, appointment.end
    if appointment.minutesDuration:
        return start, start + timedelta(minutes=appointment.minutesDuration)
    raise InvalidEvent([("Appointment.end", "required (or minutesDuration)")])


def _keys(system: str | None, value: str | None) -> list[str]:
    """How a coding or identifier may be written in the config: "system|value", else the value."""
    if not value:
        return []
    return [f"{system}|{value}", value] if system else [value]


def _identifier_keys(identifiers: list[Identifier]) -> list[str]:
    return [key for i in identifiers for key in _keys(i.system, i.value)]


def _location(document: _Document, config: FhirConfig) -> str:
    found = document.participant(Location)
    if found is None:
        if config.default_location:
            return config.default_location
        raise InvalidEvent(
            [("Appointment.participant", "no Location participant (and no default_location)")]
        )
    reference, location = found.reference, found.resource
    keys = _keys(None, (reference.reference or "").rsplit("/", 1)[-1])
    keys += _identifier_keys([reference.identifier] if reference.identifier else [])
    keys += _identifier_keys(location.identifier or []) if isinstance(location, Location) else []
    for key in keys:
        if key in config.locations:
            return config.locations[key]
    named = reference.reference or reference.display
    raise InvalidEvent(
        [(found.element, f"Location {named!r} is not in integrations.fhir.locations")]
    )


def _treatment(appointment: Appointment, config: FhirConfig) -> str:
    concepts = [*(appointment.serviceType or [])]
    if appointment.appointmentType is not None:
        concepts.append(appointment.appointmentType)
    for concept in concepts:
        for coding in concept.coding or []:
            for key in _keys(coding.system, coding.code):
                if key in config.treatments:
                    return config.treatments[key]
    if config.default_treatment:
        return config.default_treatment
    raise InvalidEvent(
        [("Appointment.serviceType", "no code maps to a treatment in integrations.fhir.treatments")]
    )


def _patient(document: _Document, config: FhirConfig) -> dict[str, Any]:
    found = document.participant(Patient)
    if found is None:
        raise InvalidEvent([("Appointment.participant", "no Patient participant")])
    patient = found.resource
    if not isinstance(patient, Patient):
        missing = f"{found.reference.reference!r} is neither in the Bundle nor contained"
        raise InvalidEvent([(found.element, missing)])
    first_name, last_name = _name(patient)
    email = _email(patient)
    given = {
        "id": _patient_id(patient, found.reference.reference or ""),
        "first_name": first_name,
        "last_name": last_name,
        "phone": _phone(patient, config.default_region, has_email=email is not None),
        "email": email,
        "consent": config.consent.model_dump(),
    }
    language = _language(patient)
    return given if language is None else {**given, "language": language}


def _patient_id(patient: Patient, reference: str) -> str:
    if not reference.startswith("#"):
        return patient.id or reference.rsplit("/", 1)[-1]
    # A contained Patient's id is local to its Appointment: two visits of one person would make
    # two patients, and two people one. Its identifier (the MRN) tells them apart.
    identifier = next((i.value for i in patient.identifier or [] if i.value), None)
    if identifier is None:
        raise InvalidEvent([("Patient.identifier", "a contained Patient needs an identifier")])
    return identifier


def _name(patient: Patient) -> tuple[str, str]:
    names = [n for n in patient.name or [] if n.use != "old"]
    names.sort(key=lambda n: NAME_PREFERENCE.get(n.use or "", len(NAME_PREFERENCE)))
    if not names:
        return "", ""
    name = names[0]
    first_name = name.given[0] if name.given else name.text
    return first_name or "", name.family or ""


def _contacts(patient: Patient, systems: set[str], unwanted: set[str]) -> list[str]:
    """The values of the patient's contact points of those systems, best ranked first."""
    points = [t for t in patient.telecom or [] if t.system in systems and t.use not in unwanted]
    points.sort(key=lambda t: t.rank or RANK_UNSET)
    # Then, keeping that order among equals, numbers said to take texts before the rest.
    points.sort(key=lambda t: t.system != "sms" and t.use != "mobile")
    return [t.value for t in points if t.value]


def _email(patient: Patient) -> str | None:
    return next(iter(_contacts(patient, {"email"}, {"old"})), None)


def _phone(patient: Patient, region: str, has_email: bool) -> str | None:
    """The best number to text, in E.164."""
    numbers = _contacts(patient, {"sms", "phone"}, UNTEXTABLE_USES)
    for number in numbers:
        try:
            return normalize_phone(number, region)
        except ValueError:
            continue
    # None can take a text. With an email the patient is still reachable; without one, the
    # contract's own check says what is wrong with the number.
    return numbers[0] if numbers and not has_email else None


def _language(patient: Patient) -> str | None:
    spoken = sorted(patient.communication or [], key=lambda c: not c.preferred)
    for communication in spoken:
        for coding in communication.language.coding or []:
            language = primary_language(coding.code)
            if language is not None:
                return language
    return None


def _event_id(appointment: Appointment, event: dict[str, Any]) -> str:
    # Sent again (a retried notification), the resource must be the same event; changed, a new
    # one. The versionId alone would not do: the Bundle's Patient can change under one version,
    # and some senders set none. So the id digests the version and everything applied.
    version = appointment.meta.versionId if appointment.meta else None
    return f"fhir:{appointment.id}:{payload_digest({'version': version, **event})[:16]}"


def _check(event: dict[str, Any], clinic: Clinic, now: datetime) -> None:
    # `accept` validates again; checking here too is what lets an error name the FHIR element.
    try:
        parse_event(event, clinic, now)
    except InvalidEvent as exc:
        raise InvalidEvent([(ELEMENTS.get(f, "Appointment"), r) for f, r in exc.errors]) from None
