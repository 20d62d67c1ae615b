"""POST /v1/fhir/Appointment: FHIR R4 Appointments (bare, or in a Bundle) become booking events
that plan exactly what the contract's JSON event plans; bad resources are named in FHIRPath."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from notifier.integrations.config import IntegrationsConfig
from notifier.models import Appointment, BookingEvent, Notification, Patient
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
AUTH = {"Authorization": "Bearer test-key"}
SERVICE = "https://northshore.example/fhir/CodeSystem/service"
# The example clinic's [integrations] sections, as docs/integrations.md gives them in TOML.
INTEGRATIONS: dict[str, Any] = {
    "fhir": {
        "locations": {
            "manhasset": "manhasset",
            "forest-hills": "forest-hills",
            "https://northshore.example/fhir/location|MH": "manhasset",
            "https://northshore.example/fhir/location|FH": "forest-hills",
        },
        "treatments": {
            f"{SERVICE}|botox-cosmetic": "botox-cosmetic",
            f"{SERVICE}|botox-spasm": "botox-spasm",
            "http://www.ama-assn.org/go/cpt|64612": "botox-spasm",
            "http://www.ama-assn.org/go/cpt|64616": "botox-spasm",
        },
    },
    "calcom": {
        "event_types": {
            "botox-cosmetic-forest-hills": {
                "treatment": "botox-cosmetic",
                "location": "forest-hills",
            },
            "botox-cosmetic-manhasset": {"treatment": "botox-cosmetic", "location": "manhasset"},
            "botox-spasm": {"treatment": "botox-spasm"},
        },
        "locations": {
            "108-20 Queens Blvd, Forest Hills, NY 11375": "forest-hills",
            "1 Plandome Rd, Manhasset, NY 11030": "manhasset",
        },
    },
}


def integrations_app(rt: Runtime, calcom_secret: str | None = None) -> FastAPI:
    """The app with the integrations configured as in INTEGRATIONS (the example clinic's)."""
    integrations = IntegrationsConfig.model_validate(INTEGRATIONS)
    rt = replace(
        rt,
        clinic=rt.clinic.model_copy(update={"integrations": integrations}),
        settings=replace(rt.settings, calcom_secret=calcom_secret),
    )
    return create_app(rt)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def stored(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Appointment, Patient, Notification, BookingEvent)
        }


def patient_row(rt: Runtime) -> dict[str, Any]:
    with rt.sessions() as session:
        patient = session.get_one(Patient, "pat-1")
        return {c.name: getattr(patient, c.name) for c in Patient.__table__.columns}


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(integrations_app(rt)) as test_client:
        yield test_client


def post(client: TestClient, resource: Any) -> Any:
    return client.post("/v1/fhir/Appointment", json=resource, headers=AUTH)


@pytest.mark.parametrize("name", ["appointment-booked.json", "bundle-booked.json"])
def test_a_booked_appointment_plans_what_the_contract_event_plans(
    client: TestClient, rt: Runtime, name: str
) -> None:
    answer = post(client, fixture(name))
    assert answer.status_code == 202, answer.text
    patient = patient_row(rt)
    assert patient["phone"] == "+17185550134"  # the mobile, not the home number before it
    contract = event(
        "booked", new_york(2026, 12, 3, 10, 0), occurred_at=new_york(2026, 11, 30, 8, 55)
    )
    same = client.post("/v1/events", json=contract, headers=AUTH)
    # Applied after the FHIR event, the contract event changes nothing: same appointment, same
    # notifications (same rows, none cancelled), same patient.
    assert same.status_code == 202, same.text
    assert same.json()["appointment"] == answer.json()["appointment"]
    assert same.json()["notifications"] == answer.json()["notifications"]
    assert patient_row(rt) | {"updated_at": None} == patient | {"updated_at": None}
    kinds = sorted((n["kind"], n["channel"]) for n in answer.json()["notifications"])
    assert ("confirmation", "sms") in kinds and len(kinds) == 7


def test_the_same_resource_again_is_a_duplicate(client: TestClient, rt: Runtime) -> None:
    first = post(client, fixture("bundle-booked.json"))
    again = post(client, fixture("bundle-booked.json"))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["event"]["duplicate"] is True
    assert stored(rt)["booking_events"] == 1


def test_a_cancelled_appointment_cancels_the_pending_reminders(client: TestClient) -> None:
    post(client, fixture("bundle-booked.json"))
    answer = post(client, fixture("appointment-cancelled.json"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["status"] == "cancelled"
    left = {(n["kind"], n["channel"]) for n in answer.json()["notifications"]}
    scheduled = {
        (n["kind"], n["channel"])
        for n in answer.json()["notifications"]
        if n["status"] == "scheduled"
    }
    assert ("reminder", "sms") in left
    assert scheduled == {("cancellation", "sms"), ("cancellation", "email")}


def test_a_no_show_is_recorded(client: TestClient, clock: SimulatedClock) -> None:
    post(client, fixture("appointment-booked.json"))
    clock.now = new_york(2026, 12, 3, 11, 5)
    answer = post(client, fixture("bundle-noshow.json"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["status"] == "no_show"
    assert answer.json()["appointment"]["end"] == "2026-12-03T15:30:00Z"  # from minutesDuration


def test_a_timeless_proposal_and_a_handshake_are_ignored(client: TestClient, rt: Runtime) -> None:
    proposed = fixture("appointment-booked.json") | {"status": "proposed"}
    del proposed["start"], proposed["end"]
    for resource in (proposed, fixture("bundle-handshake.json")):
        answer = post(client, resource)
        assert answer.status_code == 200, answer.text
        assert answer.json()["issue"][0]["severity"] == "information"
    assert stored(rt)["booking_events"] == 0


def test_an_entered_in_error_appointment_is_cancelled(client: TestClient) -> None:
    post(client, fixture("appointment-booked.json"))
    fixed = fixture("appointment-cancelled.json") | {"status": "entered-in-error"}
    assert post(client, fixed).json()["appointment"]["status"] == "cancelled"


def test_the_api_key_is_required(client: TestClient) -> None:
    answer = client.post("/v1/fhir/Appointment", json=fixture("appointment-booked.json"))
    assert answer.status_code == 401


def _booked_with(change: Any) -> Any:
    resource = fixture("appointment-booked.json")
    change(resource)
    return resource


def _patient(resource: Any) -> Any:
    return resource["contained"][0]


def _bundle_with_bad_start() -> Any:
    bundle = fixture("bundle-booked.json")
    bundle["entry"][1]["resource"]["start"] = "2026-12-03T10:00:00"
    return bundle


def _bundle_without_patient() -> Any:
    bundle = fixture("bundle-booked.json")
    del bundle["entry"][2]
    return bundle


@pytest.mark.parametrize(
    "resource, field, reason",
    [
        (
            _booked_with(lambda r: r["participant"][0].update(actor={"reference": 7})),
            "Appointment.participant[0].actor.reference",
            "string",
        ),
        (
            _booked_with(lambda r: r["participant"][0]["actor"].update(reference="Patient/p9")),
            "Appointment.participant[0].actor",
            "neither in the Bundle nor contained",
        ),
        (
            _bundle_without_patient(),
            "Appointment.participant[0].actor",
            "neither in the Bundle nor contained",
        ),
        (_bundle_with_bad_start(), "Bundle.entry[1].resource.start", ""),
        (_booked_with(lambda r: r.pop("status")), "Appointment.status", "required"),
        (_booked_with(lambda r: r.update(status="booked-ish")), "Appointment.status", "unknown"),
        (_booked_with(lambda r: r.pop("start")), "Appointment.start", "required"),
        (
            _booked_with(
                lambda r: (
                    r.update(start="9999-12-31T23:30:00-05:00", minutesDuration=60) or r.pop("end")
                )
            ),
            "Appointment.start",
            "year 9999",
        ),
        (
            _booked_with(lambda r: r.update(end="2026-12-03T09:00:00-05:00")),
            "Appointment.end",
            "not after start",
        ),
        (
            _booked_with(lambda r: r["participant"][2]["actor"].update(reference="Location/x")),
            "Appointment.participant[2].actor",
            "integrations.fhir.locations",
        ),
        (
            _booked_with(lambda r: r["serviceType"][0]["coding"][0].update(code="filler")),
            "Appointment.serviceType",
            "integrations.fhir.treatments",
        ),
        (
            _booked_with(
                lambda r: _patient(r).update(
                    telecom=[{"system": "phone", "value": "+44 20 7946 0958", "use": "mobile"}]
                )
            ),
            "Patient.telecom",
            "not a mobile number",
        ),
        (
            _booked_with(lambda r: _patient(r).update(telecom=[])),
            "Patient.telecom",
            "a phone number or an email address is needed",
        ),
        (_booked_with(lambda r: _patient(r).pop("identifier")), "Patient.identifier", "needs"),
        (_booked_with(lambda r: _patient(r).update(resourceType="Nope")), "Appointment", ""),
        ({"resourceType": "Patient", "id": "pat-1"}, "resourceType", "Appointment"),
    ],
)
def test_an_invalid_resource_is_422_naming_the_element_and_nothing_is_stored(
    client: TestClient, rt: Runtime, resource: Any, field: str, reason: str
) -> None:
    answer = post(client, resource)
    assert answer.status_code == 422, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    first = answer.json()["issue"][0]
    assert (first.get("expression", [""])[0], reason in first["diagnostics"]) == (field, True)
    assert stored(rt) == {"appointments": 0, "patients": 0, "notifications": 0, "booking_events": 0}


def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    answer = client.post("/v1/fhir/Appointment", content=b"<Appointment/>", headers=AUTH)
    assert (answer.status_code, answer.json()["issue"][0]["code"]) == (400, "structure")


def test_an_oversized_body_is_413(client: TestClient) -> None:
    resource = fixture("appointment-booked.json") | {"comment": "x" * 100_000}
    assert post(client, resource).status_code == 413
