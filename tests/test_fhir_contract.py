"""The FHIR door as FHIR servers speak: OperationOutcome errors, references of every form, the
REST-hook update and the Subscriptions Backport `id-only` and `full-resource` notifications,
read back from a FHIR server of our own on loopback serving the official HL7 R4 examples; and
the Appointments Oracle Health (Cerner) Millennium and Epic publish as their R4 examples."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from notifier.integrations.config import IntegrationsConfig
from notifier.models import Patient
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock
from notifier.web import create_app
from tests.conftest import new_york
from tests.fakes.fhir_server import FakeFhirServer
from tests.test_fhir import AUTH, INTEGRATIONS, fixture, stored

FHIR_JSON = "application/fhir+json"
# The official examples name Location/1 and service type 52; this clinic maps them.
EXAMPLE_MAPPINGS = {
    "locations": {"1": "forest-hills", "B1-S.F2": "manhasset"},
    "treatments": {"52": "botox-cosmetic"},
}
US_MOBILE = "(718) 555-0134"
# The vendors' examples name their own Locations and code systems; a practice on Millennium or
# Epic maps them as it would its own.
CERNER_SERVICE = "https://fhir.cerner.com/ec2458f2-1e24-41c8-b71b-0e701af7583d/codeSet/14249"
EPIC_SERVICE = "urn:oid:1.2.840.114350.1.13.5325.1.7.2.808267"
VENDOR_MAPPINGS = {
    "locations": {"32216049": "manhasset", "ezECB8TyTDQJuuly5Byn.lQ3": "forest-hills"},
    "treatments": {
        f"{CERNER_SERVICE}|4047611": "botox-spasm",
        f"{EPIC_SERVICE}|6": "botox-cosmetic",
    },
}
Mappings = dict[str, dict[str, str]]


def _app(
    rt: Runtime,
    server: FakeFhirServer | None,
    token: str | None = None,
    mappings: Mappings = EXAMPLE_MAPPINGS,
) -> Any:
    fhir = INTEGRATIONS["fhir"]
    integrations = IntegrationsConfig.model_validate(
        {
            **INTEGRATIONS,
            "fhir": {
                **fhir,
                "locations": {**fhir["locations"], **mappings["locations"]},
                "treatments": {**fhir["treatments"], **mappings["treatments"]},
            },
        }
    )
    settings = replace(
        rt.settings,
        fhir_base_url=server.url if server else None,
        fhir_token=token or (server.token if server else None),
    )
    clinic = rt.clinic.model_copy(update={"integrations": integrations})
    return create_app(replace(rt, clinic=clinic, settings=settings))


@pytest.fixture(scope="session")
def fhir_server_running() -> Iterator[FakeFhirServer]:
    with FakeFhirServer() as server:
        yield server


@pytest.fixture
def fhir_server(fhir_server_running: FakeFhirServer) -> FakeFhirServer:
    fhir_server_running.reset()
    return fhir_server_running


@pytest.fixture
def before_the_example(clock: SimulatedClock) -> SimulatedClock:
    clock.now = new_york(2013, 12, 1, 9, 0)  # the official Appointment is on 10 December 2013
    return clock


@pytest.fixture
def client(
    rt: Runtime, fhir_server: FakeFhirServer, before_the_example: SimulatedClock
) -> Iterator[TestClient]:
    with TestClient(_app(rt, fhir_server)) as test_client:
        yield test_client


def reachable_patient() -> dict[str, Any]:
    """The official Patient, with the mobile a US clinic would hold (the example's is an
    Australian landline number: see the test that keeps it)."""
    patient = fixture("patient-example.json")
    patient["telecom"][2]["value"] = US_MOBILE
    return patient


def id_only_notification(focus: str) -> dict[str, Any]:
    bundle = fixture("subscription-notification-id-only.json")
    event = bundle["entry"][0]["resource"]["parameter"][5]
    event["part"][2]["valueReference"]["reference"] = focus
    return bundle


def issues(answer: Any) -> list[dict[str, Any]]:
    assert answer.headers["content-type"].startswith(FHIR_JSON), answer.headers
    assert answer.json()["resourceType"] == "OperationOutcome"
    return list(answer.json()["issue"])


def expressions(answer: Any) -> list[str]:
    return [i.get("expression", [""])[0] for i in issues(answer)]


def kinds(answer: Any) -> set[tuple[str, str]]:
    return {(n["kind"], n["status"]) for n in answer.json()["notifications"]}


# -- The REST-hook update, and a Patient read back from the clinic's server ------------------


def test_a_rest_hook_put_of_the_official_appointment_reads_its_patient_with_the_token(
    client: TestClient, fhir_server: FakeFhirServer
) -> None:
    fhir_server.put(reachable_patient())
    answer = client.put(
        "/v1/fhir/Appointment/example",
        json=fixture("appointment-example.json"),
        headers={**AUTH, "Content-Type": f"{FHIR_JSON}; charset=utf-8"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["location"] == "forest-hills"
    assert ("confirmation", "scheduled") in kinds(answer)
    assert fhir_server.reads == [("/fhir/Patient/example", f"Bearer {fhir_server.token}")]


def test_a_put_whose_body_is_another_appointment_is_400(client: TestClient) -> None:
    answer = client.put(
        "/v1/fhir/Appointment/other", json=fixture("appointment-example.json"), headers=AUTH
    )
    assert answer.status_code == 400
    assert expressions(answer) == ["Appointment.id"]


def test_the_official_patient_has_no_number_to_text_and_is_refused_precisely(
    client: TestClient, rt: Runtime, fhir_server: FakeFhirServer
) -> None:
    fhir_server.put(fixture("patient-example.json"))
    answer = client.put(
        "/v1/fhir/Appointment/example", json=fixture("appointment-example.json"), headers=AUTH
    )
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["Patient.telecom"]
    assert "(03) 3410 5613" in issues(answer)[0]["diagnostics"]
    assert stored(rt)["appointments"] == 0


# -- Subscriptions Backport: id-only notifications ---------------------------------------------


def test_an_id_only_notification_reads_the_appointment_and_its_patient(
    client: TestClient, fhir_server: FakeFhirServer
) -> None:
    fhir_server.put(fixture("appointment-example.json"), reachable_patient())
    bundle = id_only_notification(f"{fhir_server.url}/Appointment/example")
    answer = client.post("/v1/fhir", json=bundle, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["id"] == "example"
    assert [path for path, _ in fhir_server.reads] == [
        "/fhir/Appointment/example",
        "/fhir/Patient/example",
    ]


def test_the_official_id_only_example_is_about_an_encounter_and_is_ignored(
    client: TestClient, rt: Runtime, fhir_server: FakeFhirServer
) -> None:
    answer = client.post(
        "/v1/fhir/Appointment", json=fixture("subscription-notification-id-only.json"), headers=AUTH
    )
    assert answer.status_code == 200
    assert issues(answer)[0]["severity"] == "information"
    assert "Encounter" in issues(answer)[0]["diagnostics"]
    assert fhir_server.reads == [] and stored(rt)["booking_events"] == 0


@pytest.mark.parametrize(
    "fault, status, code",
    [("token", 502, "exception"), ("unavailable", 503, "transient"), ("gone", 422, "not-found")],
)
def test_a_read_that_fails_answers_what_the_sender_should_do(
    rt: Runtime,
    fhir_server: FakeFhirServer,
    before_the_example: SimulatedClock,
    fault: str,
    status: int,
    code: str,
) -> None:
    fhir_server.put(fixture("appointment-example.json"), reachable_patient())
    if fault == "unavailable":
        fhir_server.fail_with = 503
    if fault == "gone":
        fhir_server.resources.clear()
    token = "wrong-token" if fault == "token" else None
    with TestClient(_app(rt, fhir_server, token)) as client:
        bundle = id_only_notification("Appointment/example")
        answer = client.post("/v1/fhir", json=bundle, headers=AUTH)
    assert (answer.status_code, issues(answer)[0]["code"]) == (status, code), answer.text
    assert stored(rt)["booking_events"] == 0


def test_an_id_only_notification_without_a_server_to_read_says_so(
    rt: Runtime, before_the_example: SimulatedClock
) -> None:
    with TestClient(_app(rt, None)) as client:
        answer = client.post(
            "/v1/fhir", json=id_only_notification("Appointment/example"), headers=AUTH
        )
    assert answer.status_code == 422
    assert "NOTIFIER_FHIR_BASE_URL" in issues(answer)[0]["diagnostics"]


def test_a_reference_to_another_server_is_not_followed_with_our_token(
    client: TestClient, fhir_server: FakeFhirServer
) -> None:
    bundle = id_only_notification("https://elsewhere.example/fhir/Appointment/example")
    answer = client.post("/v1/fhir", json=bundle, headers=AUTH)
    assert answer.status_code == 422
    assert "another server" in issues(answer)[0]["diagnostics"]
    assert fhir_server.reads == []


# -- References ----------------------------------------------------------------------------


def _bundle_with_patient_reference(actor: dict[str, Any]) -> dict[str, Any]:
    bundle = fixture("bundle-booked.json")
    bundle["entry"][1]["resource"]["participant"][0]["actor"] = actor
    bundle["entry"][2]["resource"]["identifier"] = [
        {"system": "https://northshore.example/fhir/mrn", "value": "pat-1"}
    ]
    return bundle


@pytest.mark.parametrize(
    "actor",
    [
        {"reference": "Patient/pat-1/_history/1"},
        {"reference": "https://ehr.northshore.example/fhir/Patient/pat-1"},
        {"reference": "https://ehr.northshore.example/fhir/Patient/pat-1/_history/4"},
        {
            "type": "Patient",
            "identifier": {"system": "https://northshore.example/fhir/mrn", "value": "pat-1"},
        },
    ],
)
def test_a_patient_referred_to_in_any_fhir_form_is_found_in_the_bundle(
    client: TestClient, actor: dict[str, Any]
) -> None:
    answer = client.post(
        "/v1/fhir/Appointment", json=_bundle_with_patient_reference(actor), headers=AUTH
    )
    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize(
    "actor, reason",
    [
        ({"reference": "#nobody"}, "no contained resource has the id 'nobody'"),
        (
            {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "404"}},
            "'urn:mrn|404' matches no Patient",
        ),
    ],
)
def test_a_reference_that_leads_nowhere_is_named_with_the_reason(
    client: TestClient, actor: dict[str, Any], reason: str
) -> None:
    answer = client.post(
        "/v1/fhir/Appointment", json=_bundle_with_patient_reference(actor), headers=AUTH
    )
    assert answer.status_code == 422
    assert expressions(answer) == ["Appointment.participant[0].actor"]
    assert reason in issues(answer)[0]["diagnostics"]


# -- OperationOutcome: every problem, the right status ----------------------------------------


def test_every_problem_is_an_issue_of_its_own(client: TestClient, rt: Runtime) -> None:
    resource = fixture("appointment-booked.json")
    resource["participant"][2]["actor"]["reference"] = "Location/nowhere"
    resource["serviceType"][0]["coding"][0]["code"] = "filler"
    resource["contained"][0]["telecom"] = []
    answer = client.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
    assert answer.status_code == 422
    assert set(expressions(answer)) == {
        "Appointment.participant[2].actor",
        "Appointment.serviceType",
        "Patient.telecom",
    }
    assert stored(rt)["booking_events"] == 0


def test_every_invalid_element_is_an_issue_of_its_own(client: TestClient) -> None:
    resource = fixture("appointment-booked.json") | {"start": "soon", "minutesDuration": -5}
    answer = client.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
    assert answer.status_code == 422
    assert {"Appointment.start", "Appointment.minutesDuration"} <= set(expressions(answer))


@pytest.mark.parametrize(
    "content_type", ["application/fhir+xml", "text/plain", "application/x-www-form-urlencoded"]
)
def test_a_body_that_is_not_json_by_its_content_type_is_415(
    client: TestClient, content_type: str
) -> None:
    answer = client.post(
        "/v1/fhir/Appointment",
        content=b"<Appointment/>",
        headers={**AUTH, "Content-Type": content_type},
    )
    assert answer.status_code == 415
    assert issues(answer)[0]["code"] == "not-supported"


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b"\xff\xfe", b'"Appointment"'])
def test_an_unparseable_body_is_400(client: TestClient, body: bytes) -> None:
    answer = client.post(
        "/v1/fhir/Appointment", content=body, headers={**AUTH, "Content-Type": FHIR_JSON}
    )
    assert answer.status_code == 400
    assert issues(answer)[0]["code"] == "structure"


# -- Cancels, unbooked statuses, vendor extensions -----------------------------------------


def _cancel_without(*elements: str) -> dict[str, Any]:
    resource = fixture("appointment-cancelled.json")
    for element in elements:
        resource.pop(element)
    resource["participant"] = [p for p in resource["participant"] if "#" not in str(p)]
    return resource


@pytest.mark.parametrize(
    "resource",
    [_cancel_without("contained"), _cancel_without("contained", "start", "end", "serviceType")],
)
def test_a_cancel_of_a_known_appointment_without_its_patient_stops_the_reminders(
    rt: Runtime, resource: dict[str, Any]
) -> None:
    with TestClient(_app(rt, None)) as client:
        client.post("/v1/fhir/Appointment", json=fixture("appointment-booked.json"), headers=AUTH)
        answer = client.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["status"] == "cancelled"
    scheduled = {k for k, status in kinds(answer) if status == "scheduled"}
    assert scheduled == {"cancellation"}


def test_a_cancel_of_an_appointment_never_seen_without_its_patient_is_ignored(
    rt: Runtime,
) -> None:
    with TestClient(_app(rt, None)) as client:
        answer = client.post(
            "/v1/fhir/Appointment", json=_cancel_without("contained"), headers=AUTH
        )
    assert answer.status_code == 200
    assert "not known here" in issues(answer)[0]["diagnostics"]
    assert stored(rt)["booking_events"] == 0


@pytest.mark.parametrize("status", ["proposed", "pending"])
def test_an_appointment_not_yet_booked_sends_no_confirmation(rt: Runtime, status: str) -> None:
    with TestClient(_app(rt, None)) as client:
        resource = fixture("appointment-booked.json") | {"status": status}
        answer = client.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
    assert answer.status_code == 200
    assert "not booked yet" in issues(answer)[0]["diagnostics"]
    assert stored(rt) == {"appointments": 0, "patients": 0, "notifications": 0, "booking_events": 0}


def test_an_empty_string_in_a_vendor_extension_does_not_drop_the_booking(rt: Runtime) -> None:
    resource = fixture("appointment-booked.json")
    vendor = [{"url": "https://ehr.example/fhir/StructureDefinition/room", "valueString": ""}]
    resource["extension"] = vendor
    resource["contained"][0]["name"][0]["extension"] = copy.deepcopy(vendor)
    resource["_start"] = {"extension": copy.deepcopy(vendor)}
    resource["comment"] = ""
    with TestClient(_app(rt, None)) as client:
        answer = client.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
    assert answer.status_code == 202, answer.text


def test_a_bundle_of_the_official_examples_maps_the_location_by_its_identifier(
    rt: Runtime, before_the_example: SimulatedClock
) -> None:
    appointment = fixture("appointment-example.json")
    appointment["participant"][2]["actor"]["reference"] = "Location/south-wing"
    location = fixture("location-example.json") | {"id": "south-wing"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (appointment, reachable_patient(), location)],
    }
    with TestClient(_app(rt, None)) as client:
        answer = client.post("/v1/fhir/Appointment", json=bundle, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["location"] == "manhasset"  # by identifier B1-S.F2


# -- Subscriptions Backport: full-resource notifications ---------------------------------------

IG_PATIENT = "https://example.org/fhir/Patient/1599eb66-431a-447c-a3de-6897fe9ae9a1"


def full_resource_notification(mobile: str | None = None) -> dict[str, Any]:
    """The IG's multi-resource notification, its Encounter replaced by the official Appointment
    for the IG's Patient: the shape a FHIR server sends for an Appointment topic."""
    bundle = fixture("subscription-notification-multi-resource.json")
    appointment = fixture("appointment-example.json")
    appointment["participant"][0]["actor"] = {"reference": IG_PATIENT, "display": "Example Patient"}
    url = "https://example.org/fhir/Appointment/example"
    bundle["entry"][1] = {
        "fullUrl": url,
        "resource": appointment,
        "request": {"method": "PUT", "url": "Appointment/example"},
        "response": {"status": "200"},
    }
    event = bundle["entry"][0]["resource"]["parameter"][5]
    event["part"][2]["valueReference"]["reference"] = url
    if mobile is not None:
        bundle["entry"][2]["resource"]["telecom"] = [
            {"system": "phone", "value": mobile, "use": "mobile"}
        ]
    return bundle


def test_the_official_full_resource_example_is_about_an_encounter_and_is_ignored(
    client: TestClient, rt: Runtime, fhir_server: FakeFhirServer
) -> None:
    bundle = fixture("subscription-notification-multi-resource.json")
    answer = client.post("/v1/fhir", json=bundle, headers=AUTH)
    assert answer.status_code == 200
    assert issues(answer)[0]["severity"] == "information"
    assert "Encounter/86009987-eabe-42bf-8c02-b112b18cb616" in issues(answer)[0]["diagnostics"]
    assert fhir_server.reads == [] and stored(rt)["booking_events"] == 0


def test_a_full_resource_notification_is_applied_without_reading_the_server(
    client: TestClient, rt: Runtime, fhir_server: FakeFhirServer
) -> None:
    answer = client.post("/v1/fhir", json=full_resource_notification(US_MOBILE), headers=AUTH)
    assert answer.status_code == 202, answer.text
    booked = answer.json()["appointment"]
    assert (booked["id"], booked["location"], booked["treatment"]) == (
        "example",
        "forest-hills",
        "botox-cosmetic",
    )
    assert (booked["start"], booked["end"]) == ("2013-12-10T09:00:00Z", "2013-12-10T11:00:00Z")
    assert ("confirmation", "scheduled") in kinds(answer)
    with rt.sessions() as session:
        patient = session.get_one(Patient, "1599eb66-431a-447c-a3de-6897fe9ae9a1")
        assert (patient.first_name, patient.phone) == ("Example", "+17185550134")
    assert fhir_server.reads == []


def test_the_full_resource_example_patient_has_no_number_and_is_refused_without_a_read(
    client: TestClient, rt: Runtime, fhir_server: FakeFhirServer
) -> None:
    answer = client.post("/v1/fhir", json=full_resource_notification(), headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert expressions(answer) == ["Patient.telecom"]
    assert fhir_server.reads == [] and stored(rt)["booking_events"] == 0


# -- The vendors' published examples: Oracle Health (Cerner) Millennium and Epic ---------------


@pytest.fixture
def before_the_vendor_examples(clock: SimulatedClock) -> SimulatedClock:
    clock.now = new_york(2020, 1, 10, 9, 0)  # Cerner's is on 23 January 2020, Epic's in 2022
    return clock


def vendor_app(
    rt: Runtime, fhir_server: FakeFhirServer, patient_id: str, mappings: Mappings = VENDOR_MAPPINGS
) -> Any:
    """The clinic's app reading from its FHIR server the Patient the example refers to."""
    fhir_server.put(reachable_patient() | {"id": patient_id})
    return _app(rt, fhir_server, mappings=mappings)


def booked(resource: dict[str, Any]) -> dict[str, Any]:
    """The appointment as it was when booked: Cerner's example is read after a cancel, and
    Millennium books by `PATCH` `status: booked` (its "Update Status to Booked" example)."""
    return {k: v for k, v in resource.items() if k != "cancelationReason"} | {"status": "booked"}


def test_the_cerner_example_booked_then_cancelled_as_published(
    rt: Runtime, fhir_server: FakeFhirServer, before_the_vendor_examples: SimulatedClock
) -> None:
    cerner = fixture("appointment-cerner-r4.json")
    with TestClient(vendor_app(rt, fhir_server, "12724066")) as client:
        answer = client.post("/v1/fhir/Appointment", json=booked(cerner), headers=AUTH)
        assert answer.status_code == 202, answer.text
        appointment = answer.json()["appointment"]
        assert (appointment["id"], appointment["location"], appointment["treatment"]) == (
            "4822366",
            "manhasset",  # Location/32216049, "Endoscopy"
            "botox-spasm",  # codeSet/14249 code 4047611, "Surgery Rapid"
        )
        assert (appointment["start"], appointment["end"]) == (
            "2020-01-23T22:10:00Z",
            "2020-01-23T23:10:00Z",
        )
        assert ("confirmation", "scheduled") in kinds(answer)
        cancelled = client.post("/v1/fhir/Appointment", json=cerner, headers=AUTH)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["appointment"]["status"] == "cancelled"
    # Every reminder stops. The cancel is stamped (meta.lastUpdated) 2021-04-22, after the visit:
    # a notice of it would come too late, so none is planned.
    assert {status for _, status in kinds(cancelled)} == {"cancelled"}
    assert [path for path, _ in fhir_server.reads] == ["/fhir/Patient/12724066"] * 2


def test_the_cerner_example_unmapped_names_its_location_and_service(
    rt: Runtime, fhir_server: FakeFhirServer, before_the_vendor_examples: SimulatedClock
) -> None:
    cerner = booked(fixture("appointment-cerner-r4.json"))
    with TestClient(vendor_app(rt, fhir_server, "12724066", EXAMPLE_MAPPINGS)) as client:
        answer = client.post("/v1/fhir/Appointment", json=cerner, headers=AUTH)
    assert answer.status_code == 422
    diagnostics = {i["expression"][0]: i["diagnostics"] for i in issues(answer)}
    assert diagnostics == {
        "Appointment.participant[0].actor": (
            "Location 'Location/32216049' is not in integrations.fhir.locations"
        ),
        "Appointment.serviceType": "no code maps to a treatment in integrations.fhir.treatments",
    }
    assert stored(rt)["booking_events"] == 0


def test_the_epic_example_is_booked_with_its_times_patient_and_provider(
    rt: Runtime, fhir_server: FakeFhirServer, before_the_vendor_examples: SimulatedClock
) -> None:
    with TestClient(vendor_app(rt, fhir_server, "eNO3wqOfAltfnWMfWBQ1WmQ3")) as client:
        answer = client.post(
            "/v1/fhir/Appointment", json=fixture("appointment-epic-r4.json"), headers=AUTH
        )
    assert answer.status_code == 202, answer.text
    appointment = answer.json()["appointment"]
    assert appointment == appointment | {
        "id": "elmPBHPxEEEvVLKSSR6xGfQaaeOxoGVxtCt9FlmcwgQ03",
        "location": "forest-hills",  # Location/ezECB8TyTDQJuuly5Byn.lQ3, "West Clinic"
        "treatment": "botox-cosmetic",  # Epic's visit type 6, "Office Visit"
        "provider": "Amy Smith, MD",
        "start": "2022-04-20T20:00:00Z",
        "end": "2022-04-20T20:15:00Z",
    }
    assert ("confirmation", "scheduled") in kinds(answer)
    with rt.sessions() as session:
        assert session.get_one(Patient, "eNO3wqOfAltfnWMfWBQ1WmQ3").phone == "+17185550134"
    assert [path for path, _ in fhir_server.reads] == ["/fhir/Patient/eNO3wqOfAltfnWMfWBQ1WmQ3"]


def test_the_epic_example_with_its_visit_type_unmapped_is_refused_precisely(
    rt: Runtime, fhir_server: FakeFhirServer, before_the_vendor_examples: SimulatedClock
) -> None:
    mappings = {**VENDOR_MAPPINGS, "treatments": {}}
    with TestClient(vendor_app(rt, fhir_server, "eNO3wqOfAltfnWMfWBQ1WmQ3", mappings)) as client:
        answer = client.post(
            "/v1/fhir/Appointment", json=fixture("appointment-epic-r4.json"), headers=AUTH
        )
    assert answer.status_code == 422
    assert expressions(answer) == ["Appointment.serviceType"]
    assert stored(rt)["booking_events"] == 0
