"""FHIR R4 Appointments in: a resource, a Bundle holding one, or a subscription notification
naming one, become the contract's booking event.

fhir.resources 8 has R5 at its top level, R4B under `fhir.resources.R4B` and no R4 package. R4B
(4.3) kept Appointment, Patient, Location and Bundle as R4 (4.0.1) has them, so its models
validate R4 resources as written; the top-level R5 ones would not (R5 reshaped Appointment).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from ..clinic import Clinic
from ..ingest import (
    InvalidEvent,
    implausible_year,
    normalize_phone,
    parse_event,
    payload_digest,
)
from . import Ignored, WaitlistWish, error_reason, primary_language
from .config import FhirConfig
from .fhir_client import FhirReadError, FhirServer

EVENT_TYPES = {
    "booked": "appointment.booked",
    "arrived": "appointment.booked",
    "checked-in": "appointment.booked",
    "fulfilled": "appointment.completed",
    "cancelled": "appointment.cancelled",
    # As far as the patient knows it was booked: the pending reminders must stop all the same.
    "entered-in-error": "appointment.cancelled",
    "noshow": "appointment.no_show",
}
# Not booked yet: a request, a slot the patient has not accepted. Telling the patient "you're
# booked" would be false; the booking comes as `booked` if it does. (A `waitlist` Appointment,
# a wish for an earlier visit, puts the patient on the waitlist: `waitlist_wish`.)
NOT_YET_BOOKED = {"proposed", "pending"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
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
# "Patient/p1", "Patient/p1/_history/3" or "https://ehr.example/fhir/Patient/p1": a type, an id.
_LITERAL = re.compile(
    r"(?:^|/)(?P<kind>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)
_HISTORY = re.compile(r"/_history/[^/]+$")
# What the Subscriptions Backport IG calls a notification that reports an event.
EVENT_NOTIFICATION = "event-notification"

_EMPTY: tuple[Any, ...] = ("", {}, [])

R = TypeVar("R", bound=Resource)
T = TypeVar("T")


@dataclass(frozen=True)
class KnownAppointment:
    """An appointment as stored, in the contract's fields: what a cancel may leave out."""

    appointment: dict[str, Any]
    patient: dict[str, Any]


@dataclass(frozen=True)
class Sources:
    """Where what a resource only refers to is found, besides the message itself."""

    server: FhirServer | None = None
    known: Callable[[str], KnownAppointment | None] = lambda _id: None


@dataclass(frozen=True)
class _Literal:
    kind: str
    id: str
    url: str  # as written, without its _history


def _literal(reference: str | None) -> _Literal | None:
    match = _LITERAL.search(reference or "")
    if match is None or (reference or "").startswith("#"):
        return None
    return _Literal(match["kind"], match["id"], _HISTORY.sub("", reference or ""))


@dataclass(frozen=True)
class _Actor:
    element: str  # its FHIRPath, for errors
    reference: Reference
    resource: Resource | None  # None when neither in the message nor contained


@dataclass(frozen=True)
class _Document:
    appointment: Appointment
    # "Patient/p1", an entry's fullUrl, or "#p1" for a contained resource → the resource.
    resources: dict[str, Resource]

    def resolve(self, actor: Reference) -> Resource | None:
        if actor.reference:
            literal = _literal(actor.reference)
            keys = [actor.reference, _HISTORY.sub("", actor.reference)]
            keys += [literal.url, f"{literal.kind}/{literal.id}"] if literal else []
            return next((self.resources[k] for k in keys if k in self.resources), None)
        if actor.identifier is not None and actor.identifier.value:
            # Identifier-only: the same person, or place, among what was sent.
            wanted = (actor.identifier.system, actor.identifier.value)
            for resource in self.resources.values():
                identifiers = getattr(resource, "identifier", None) or []
                same = any((i.system, i.value) == wanted for i in identifiers)
                if same and actor.type in (None, resource.get_resource_type()):
                    return resource
        return None

    def dangling(self) -> _Actor | None:
        """The first participant naming a contained resource that is not there."""
        for index, participant in enumerate(self.appointment.participant):
            actor = participant.actor
            if actor and (actor.reference or "").startswith("#") and not self.resolve(actor):
                return _Actor(f"Appointment.participant[{index}].actor", actor, None)
        return None

    def participant(self, kind: type[Resource]) -> _Actor | None:
        """The first participant of that kind, by its resource, its type or its reference."""
        name = kind.get_resource_type()
        for index, participant in enumerate(self.appointment.participant):
            actor = participant.actor
            if actor is None:
                continue
            resource = self.resolve(actor)
            literal = _literal(actor.reference)
            named = resource.get_resource_type() if resource else None
            if name in (named, actor.type, literal.kind if literal else None):
                return _Actor(f"Appointment.participant[{index}].actor", actor, resource)
        return None


def booking_event(
    payload: Any, config: FhirConfig, clinic: Clinic, now: datetime, sources: Sources = Sources()
) -> dict[str, Any] | Ignored | WaitlistWish:
    """The contract event for an Appointment, a Bundle holding one, or a notification naming
    one; raises InvalidEvent listing every problem, each named by its FHIR element, or
    FhirReadError when the clinic's FHIR server could not be read."""
    document = _read(lenient(payload), sources)
    if isinstance(document, Ignored):
        return document
    appointment = document.appointment
    if appointment.status == "waitlist":
        return waitlist_wish(document, config, clinic, sources)
    if appointment.status in NOT_YET_BOOKED:
        return Ignored(
            f"a {appointment.status} Appointment is not booked yet: nothing is sent until it is"
        )
    event_type = EVENT_TYPES.get(appointment.status or "")
    if event_type is None:
        raise InvalidEvent([("Appointment.status", f"unknown status {appointment.status!r}")])
    if not appointment.id:
        raise InvalidEvent([("Appointment.id", "required: it is the appointment's id here")])
    cancel = event_type == "appointment.cancelled"
    known = sources.known(appointment.id) if cancel else None
    parts = _parts(document, config, sources, known)
    if isinstance(parts, InvalidEvent):
        if cancel and known is None:
            unknown = f"Appointment/{appointment.id} is not known here: a cancel stops nothing"
            return Ignored(unknown)
        raise parts
    last_updated = appointment.meta.lastUpdated if appointment.meta else None
    event = {"type": event_type, "occurred_at": (last_updated or now).isoformat(), **parts}
    event = {"id": _event_id(appointment, event), **event}
    _check(event, clinic, now)
    return event


def _parts(
    document: _Document, config: FhirConfig, sources: Sources, known: KnownAppointment | None
) -> dict[str, Any] | InvalidEvent:
    """The event's appointment and patient, or every problem found. Of an appointment we know,
    a cancel needs only the id: what it leaves out or we cannot read is taken as stored."""
    appointment = document.appointment
    stored = known.appointment if known else {}
    errors: list[tuple[str, str]] = []
    times = _gather(errors, lambda: _times(appointment), known and (stored["start"], stored["end"]))
    location = _gather(errors, lambda: _location(document, config), stored.get("location"))
    treatment = _gather(errors, lambda: _treatment(appointment, config), stored.get("treatment"))
    patient = _gather(errors, lambda: _patient(document, config, sources), known and known.patient)
    if errors or times is None:
        return InvalidEvent(errors)
    practitioner = document.participant(Practitioner)
    provider = practitioner.reference.display if practitioner else None
    start, end = times
    return {
        "appointment": {
            "id": appointment.id,
            "location": location,
            "treatment": treatment,
            "provider": provider or stored.get("provider"),
            "start": start if isinstance(start, str) else start.isoformat(),
            "end": end if isinstance(end, str) else end.isoformat(),
        },
        "patient": patient,
    }


def waitlist_wish(
    document: _Document, config: FhirConfig, clinic: Clinic, sources: Sources
) -> WaitlistWish:
    """A `waitlist` Appointment as a waitlist entry: its location, service and patient as a
    booking's, and the weekdays and hours of its `requestedPeriod`s (in the location's zone)
    as when the patient can come; without any, weekdays 8 AM to 8 PM."""
    appointment = document.appointment
    if not appointment.id:
        raise InvalidEvent([("Appointment.id", "required: it is the waitlist entry's id here")])
    errors: list[tuple[str, str]] = []
    location = _gather(errors, lambda: _location(document, config), None)
    treatment = _gather(errors, lambda: _treatment(appointment, config), None)
    patient = _gather(errors, lambda: _patient(document, config, sources), None)
    if errors:
        raise InvalidEvent(errors)
    place = clinic.location(location or "")
    entry: dict[str, Any] = {
        "id": f"fhir-{appointment.id}",
        "patient": patient,
        "location": location,
        "treatment": treatment,
    }
    periods = [p for p in appointment.requestedPeriod or [] if p.start and p.end]
    if periods and place is not None:
        starts = [p.start.astimezone(place.zone) for p in periods]  # type: ignore[union-attr]
        ends = [p.end.astimezone(place.zone) for p in periods]  # type: ignore[union-attr]
        days = {
            WEEKDAYS[(s + timedelta(days=d)).weekday()]
            for s, e in zip(starts, ends, strict=True)
            for d in range(min((e.date() - s.date()).days + 1, 7))
        }
        entry["days"] = [d for d in WEEKDAYS if d in days]
        entry["earliest"] = min(s.time() for s in starts).strftime("%H:%M")
        entry["latest"] = max(e.time() for e in ends).strftime("%H:%M")
    return WaitlistWish(entry)


def _gather(errors: list[tuple[str, str]], build: Callable[[], T], fallback: Any) -> T | None:
    try:
        return build()
    except InvalidEvent as exc:
        if fallback:
            return fallback  # type: ignore[no-any-return]
        errors.extend(exc.errors)
        return None


def lenient(value: Any) -> Any:
    """The resource without what we never read and FHIR servers get wrong: extensions (a vendor's
    empty `valueString` would fail validation and drop the booking), and empty strings, objects
    and arrays, which FHIR forbids and which can only mean "absent" (the `_birthDate` left when
    its extension goes is one). modifierExtension stays: it changes the meaning."""
    if isinstance(value, dict):
        kept = {key: lenient(item) for key, item in value.items() if key != "extension"}
        return {key: item for key, item in kept.items() if item not in _EMPTY}
    if isinstance(value, list):
        return [item for item in map(lenient, value) if item not in _EMPTY]
    return value


def _read(payload: Any, sources: Sources) -> _Document | Ignored:
    kind = payload.get("resourceType") if isinstance(payload, dict) else None
    if kind == "Appointment":
        appointment = _validated(Appointment, payload)
        return _Document(appointment, _contained(appointment))
    if kind == "Bundle":
        return _from_bundle(_validated(Bundle, payload), sources)
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


def _from_bundle(bundle: Bundle, sources: Sources) -> _Document | Ignored:
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
        return _notified(bundle, resources, sources)
    if len(appointments) != 1:
        raise InvalidEvent([("Bundle.entry", "exactly one Appointment entry, please")])
    return _Document(appointments[0], {**resources, **_contained(appointments[0])})


def _notified(
    bundle: Bundle, resources: dict[str, Resource], sources: Sources
) -> _Document | Ignored:
    """A subscription notification without the Appointment: a handshake or heartbeat (nothing to
    do, and a 4xx would make the FHIR server mark the subscription as failing), or an `id-only`
    event notification, whose Appointment is read from the clinic's FHIR server."""
    status = bundle.entry[0].resource if bundle.entry else None
    if not isinstance(status, Parameters):
        return Ignored("no Appointment in the Bundle (a subscription handshake or heartbeat)")
    kind = next((p.valueCode for p in status.parameter or [] if p.name == "type"), None)
    if kind != EVENT_NOTIFICATION:
        return Ignored(f"a subscription {kind or 'status'} notification: nothing to apply")
    focuses = [
        (index, part.valueReference.reference)
        for index, event in enumerate(status.parameter or [])
        if event.name == "notification-event"
        for part in event.part or []
        if part.name == "focus" and part.valueReference and part.valueReference.reference
    ]
    if not focuses:
        return Ignored("an empty notification names no Appointment: send id-only or full-resource")
    wanted = [(i, ref, _literal(ref)) for i, ref in focuses]
    appointments = [(i, ref, lit) for i, ref, lit in wanted if lit and lit.kind == "Appointment"]
    if not appointments:
        named = ", ".join(ref for _, ref in focuses)
        return Ignored(f"the notification is about {named}, not an Appointment")
    if len(appointments) > 1:
        element = "Bundle.entry[0].resource.parameter"
        raise InvalidEvent([(element, "one Appointment event per notification, please")])
    index, reference, literal = appointments[0]
    assert literal is not None
    element = f"Bundle.entry[0].resource.parameter[{index}].part.valueReference"
    payload = _fetched(sources, reference, literal, element)
    appointment = _validated(Appointment, lenient(payload))
    return _Document(appointment, {**resources, **_contained(appointment)})


def _fetched(sources: Sources, reference: str, literal: _Literal, element: str) -> dict[str, Any]:
    """The resource a reference names, read from the clinic's FHIR server."""
    server = sources.server
    if server is None:
        unread = f"{reference!r} is not in the message, and NOTIFIER_FHIR_BASE_URL is not set"
        raise InvalidEvent([(element, f"{unread} to read it")])
    if "://" in literal.url and not server.owns(literal.url):
        raise InvalidEvent(
            [(element, f"{reference!r} is on another server than NOTIFIER_FHIR_BASE_URL: not read")]
        )
    try:
        return server.read(literal.kind, literal.id)
    except FhirReadError as exc:
        if exc.status == 422:
            raise InvalidEvent([(element, exc.reason)]) from None
        raise


def _times(appointment: Appointment) -> tuple[datetime, datetime]:
    start: datetime | None = appointment.start
    if start is None:
        raise InvalidEvent([("Appointment.start", "required: a reminder needs the visit's time")])
    problem = implausible_year(start)
    if problem:  # before the arithmetic below, which would run off the calendar
        raise InvalidEvent([("Appointment.start", problem)])
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
    literal = _literal(reference.reference)
    keys = _keys(None, literal.id if literal else None)
    keys += _identifier_keys([reference.identifier] if reference.identifier else [])
    keys += _identifier_keys(location.identifier or []) if isinstance(location, Location) else []
    for key in keys:
        if key in config.locations:
            return config.locations[key]
    named = (
        reference.reference
        or reference.display
        or _identifier_keys([reference.identifier] if reference.identifier else [])
    )
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


def _patient(document: _Document, config: FhirConfig, sources: Sources) -> dict[str, Any]:
    found = document.participant(Patient) or document.dangling()
    if found is None:
        raise InvalidEvent([("Appointment.participant", "no Patient participant")])
    patient = found.resource or _read_patient(found, sources)
    if not isinstance(patient, Patient):
        raise InvalidEvent([(found.element, "refers to something else than a Patient")])
    first_name, last_name = _name(patient)
    email = _email(patient)
    phone = _phone(patient, config.default_region, has_email=email is not None)
    if phone is None and email is None:
        # The contract's own rule, said here so that it is listed with the other problems.
        raise InvalidEvent([("Patient.telecom", "a phone number or an email address is needed")])
    given = {
        "id": _patient_id(patient, found.reference.reference or ""),
        "first_name": first_name,
        "last_name": last_name,
        "phone": phone,
        "email": email,
        "consent": config.consent.model_dump(),
    }
    language = _language(patient)
    return given if language is None else {**given, "language": language}


def _read_patient(found: _Actor, sources: Sources) -> Resource:
    """A Patient the message only refers to: read from the clinic's FHIR server, or refused
    with the reason it cannot be."""
    reference = found.reference
    if reference.reference is None:
        keys = _identifier_keys([reference.identifier] if reference.identifier else [])
        identifier = keys[0] if keys else reference.display
        raise InvalidEvent(
            [
                (
                    found.element,
                    f"the identifier {identifier!r} matches no Patient in the message; "
                    "send the Patient, or refer to it as Patient/<id>",
                )
            ]
        )
    if reference.reference.startswith("#"):
        raise InvalidEvent(
            [(found.element, f"no contained resource has the id {reference.reference[1:]!r}")]
        )
    literal = _literal(reference.reference)
    if literal is None:
        missing = f"{reference.reference!r} is neither in the Bundle nor contained"
        raise InvalidEvent([(found.element, missing)])
    if sources.server is None:
        missing = (
            f"{reference.reference!r} is neither in the Bundle nor contained "
            "(and NOTIFIER_FHIR_BASE_URL is not set to read it)"
        )
        raise InvalidEvent([(found.element, missing)])
    payload = _fetched(sources, reference.reference, literal, found.element)
    return _validated(Patient, lenient(payload))


def _patient_id(patient: Patient, reference: str) -> str:
    if not reference.startswith("#"):
        literal = _literal(reference)
        return patient.id or (literal.id if literal else reference)
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
