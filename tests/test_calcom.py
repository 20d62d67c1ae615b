"""POST /v1/integrations/calcom: Cal.com's signed booking webhooks plan, move and cancel the
reminders; anything unsigned or tampered with is refused and leaves no trace."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from notifier.models import Patient
from notifier.runtime import Runtime
from tests.test_fhir import integrations_app, stored

FIXTURES = Path(__file__).parent / "fixtures" / "calcom"
SECRET = "whsec-test-secret"
ORIGINAL_UID = "bFJeNb2uX8ANpT3JL5EfXw"
NOTHING = {"appointments": 0, "patients": 0, "notifications": 0, "booking_events": 0}


def webhook(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def signature(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(integrations_app(rt, calcom_secret=SECRET)) as test_client:
        yield test_client


def as_sent(payload: dict[str, Any]) -> bytes:
    """The body as Cal.com's JSON.stringify writes it: no spaces, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def deliver(client: TestClient, payload: dict[str, Any]) -> Any:
    """As Cal.com does: the JSON body, signed, and no API key."""
    body = as_sent(payload)
    headers = {"Content-Type": "application/json", "X-Cal-Signature-256": signature(body)}
    return client.post("/v1/integrations/calcom", content=body, headers=headers)


def scheduled(answer: Any) -> list[tuple[str, str, str]]:
    return sorted(
        (n["kind"], n["channel"], n["due_at"])
        for n in answer.json()["notifications"]
        if n["status"] == "scheduled"
    )


def test_booking_created_plans_the_confirmation_and_reminders(
    client: TestClient, rt: Runtime
) -> None:
    answer = deliver(client, webhook("booking-created.json"))
    assert answer.status_code == 202, answer.text
    appointment = answer.json()["appointment"]
    assert (appointment["id"], appointment["location"], appointment["treatment"]) == (
        ORIGINAL_UID,
        "forest-hills",
        "botox-cosmetic",
    )
    assert scheduled(answer) == [
        ("aftercare", "email", "2026-12-03T16:30:00Z"),
        ("aftercare", "sms", "2026-12-03T16:30:00Z"),
        ("confirmation", "email", "2026-11-30T13:55:00Z"),
        ("confirmation", "sms", "2026-11-30T13:55:00Z"),
        ("reminder", "email", "2026-12-01T15:00:00Z"),
        ("reminder", "sms", "2026-12-01T15:00:00Z"),
        ("reminder", "sms", "2026-12-03T13:00:00Z"),
    ]


def test_booking_rescheduled_moves_the_reminders(client: TestClient) -> None:
    deliver(client, webhook("booking-created.json"))
    answer = deliver(client, webhook("booking-rescheduled.json"))
    assert answer.status_code == 202, answer.text
    # Cal.com gave the booking a new uid; it is still the same appointment, moved.
    assert answer.json()["appointment"]["id"] == ORIGINAL_UID
    assert answer.json()["appointment"]["start"] == "2026-12-04T16:00:00Z"
    reminders = [(kind, due) for kind, channel, due in scheduled(answer) if kind == "reminder"]
    assert reminders == [
        ("reminder", "2026-12-02T16:00:00Z"),
        ("reminder", "2026-12-02T16:00:00Z"),
        ("reminder", "2026-12-04T14:00:00Z"),
    ]
    old = [n for n in answer.json()["notifications"] if n["due_at"] == "2026-12-01T15:00:00Z"]
    assert {n["status"] for n in old} == {"cancelled"}


def test_booking_cancelled_cancels_the_pending_reminders(client: TestClient) -> None:
    deliver(client, webhook("booking-created.json"))
    deliver(client, webhook("booking-rescheduled.json"))
    answer = deliver(client, webhook("booking-cancelled.json"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["id"] == ORIGINAL_UID  # the rescheduled uid found it
    assert answer.json()["appointment"]["status"] == "cancelled"
    # By text, and by email with the calendar file that takes the visit out of the calendar.
    assert [kind for kind, _, _ in scheduled(answer)] == ["cancellation", "cancellation"]


def test_a_cancelled_booking_never_rescheduled_is_cancelled_too(client: TestClient) -> None:
    deliver(client, webhook("booking-created.json"))
    cancelled = webhook("booking-cancelled.json")
    cancelled["payload"]["uid"] = ORIGINAL_UID
    answer = deliver(client, cancelled)
    assert answer.json()["appointment"]["status"] == "cancelled"


def test_a_redelivered_webhook_is_a_duplicate(client: TestClient, rt: Runtime) -> None:
    first = deliver(client, webhook("booking-created.json"))
    again = deliver(client, webhook("booking-created.json"))
    assert (first.status_code, again.status_code) == (202, 200)
    assert stored(rt)["notifications"] == 7


def test_the_patient_comes_from_the_attendee_and_the_booking_form(
    client: TestClient, rt: Runtime
) -> None:
    created = webhook("booking-created.json")
    created["payload"]["attendees"][0]["language"] = {"locale": "es"}
    deliver(client, created)
    with rt.sessions() as session:
        patient = session.scalars(select(Patient)).one()
    assert (patient.first_name, patient.last_name) == ("Ana", "Ruiz")
    assert (patient.phone, patient.email) == ("+17185550134", "ana@example.org")
    assert (patient.language, patient.time_zone) == ("es", "America/New_York")
    assert (patient.consent_sms, patient.consent_email, patient.consent_marketing) == (
        True,
        True,
        False,
    )
    assert "ana" not in patient.id  # the email is digested, not spelled out


def test_the_location_can_come_from_the_booking_address(client: TestClient) -> None:
    created = webhook("booking-created.json")
    created["payload"] |= {"type": "botox-spasm", "location": "1 Plandome Rd, Manhasset, NY 11030"}
    answer = deliver(client, created)
    assert answer.status_code == 202, answer.text
    appointment = answer.json()["appointment"]
    assert (appointment["location"], appointment["treatment"]) == ("manhasset", "botox-spasm")


def test_an_unknown_address_for_an_event_type_without_location_is_422(
    client: TestClient, rt: Runtime
) -> None:
    created = webhook("booking-created.json")
    created["payload"] |= {"type": "botox-spasm", "location": "Zoom"}
    answer = deliver(client, created)
    assert (answer.status_code, answer.json()["field"]) == (422, "payload.location")
    assert stored(rt) == NOTHING


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w.update(triggerEvent="MEETING_ENDED"),
        lambda w: w["payload"].update(type="phone-consult", eventTypeId=1299),
    ],
)
def test_what_is_not_a_mapped_booking_change_is_ignored(
    client: TestClient, rt: Runtime, change: Any
) -> None:
    payload = webhook("booking-created.json")
    change(payload)
    answer = deliver(client, payload)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored")
    assert stored(rt) == NOTHING


def test_cal_com_s_ping_is_answered_200(client: TestClient) -> None:
    assert deliver(client, webhook("ping.json")).status_code == 200


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("startTime", "2026-12-03T15:00:00", "payload.startTime"),
        ("attendees", [], "payload.attendees"),
        ("uid", None, "payload.uid"),
    ],
)
def test_a_malformed_booking_is_422_naming_the_field(
    client: TestClient, rt: Runtime, path: str, value: Any, field: str
) -> None:
    payload = webhook("booking-created.json")
    payload["payload"][path] = value
    answer = deliver(client, payload)
    assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
    assert answer.json()["error"] == "invalid_webhook"
    assert stored(rt) == NOTHING


def _unsigned(body: bytes) -> dict[str, str]:
    return {}


def _wrong_secret(body: bytes) -> dict[str, str]:
    return {"X-Cal-Signature-256": signature(body, "another-secret")}


def _tampered(body: bytes) -> dict[str, str]:
    # Signed as sent by Cal.com, then the visit moved by someone on the way.
    original = body.replace(b"2026-12-04T16:00:00Z", b"2026-12-03T15:00:00Z")
    return {"X-Cal-Signature-256": signature(original)}


@pytest.mark.parametrize("headers", [_unsigned, _wrong_secret, _tampered])
def test_an_unsigned_or_tampered_webhook_is_403_and_nothing_is_stored(
    client: TestClient, rt: Runtime, headers: Any
) -> None:
    body = json.dumps(webhook("booking-rescheduled.json")).encode()
    answer = client.post("/v1/integrations/calcom", content=body, headers=headers(body))
    assert answer.status_code == 403
    assert stored(rt) == NOTHING


def test_without_a_configured_secret_nothing_is_taken(rt: Runtime) -> None:
    with TestClient(integrations_app(rt)) as client:
        assert deliver(client, webhook("booking-created.json")).status_code == 503
    assert stored(rt) == NOTHING


def test_a_phone_only_booking_s_made_up_address_is_never_mailed(
    client: TestClient, rt: Runtime
) -> None:
    # Booked with a phone number only, Cal.com fills the email in as <digits>@sms.cal.com.
    answer = deliver(client, webhook("booking-created-phone-only.json"))
    assert answer.status_code == 202, answer.text
    assert {channel for _, channel, _ in scheduled(answer)} == {"sms"}
    with rt.sessions() as session:
        patient = session.scalars(select(Patient)).one()
    assert (patient.phone, patient.email) == ("+17185550134", None)


def test_the_patient_id_of_a_phone_only_booking_comes_from_the_phone(
    client: TestClient, rt: Runtime
) -> None:
    shouting = webhook("booking-created-phone-only.json")
    shouting["payload"]["attendees"][0]["email"] = " 17185550134@SMS.Cal.com"
    deliver(client, shouting)
    with rt.sessions() as session:
        patient = session.scalars(select(Patient)).one()
    digest = hashlib.sha256(b"+17185550134").hexdigest()[:16]
    assert (patient.id, patient.email) == (f"calcom:{digest}", None)


def test_a_form_answer_left_empty_is_no_phone(client: TestClient, rt: Runtime) -> None:
    # Cal.com writes "N/A" for a question not answered; the attendee's own number still counts.
    created = webhook("booking-created.json")
    created["payload"]["responses"]["attendeePhoneNumber"]["value"] = "N/A"
    assert deliver(client, created).status_code == 202
    with rt.sessions() as session:
        assert session.scalars(select(Patient.phone)).one() == "+17185550134"


def test_a_reschedule_request_stops_the_reminders_without_a_cancellation_text(
    client: TestClient, rt: Runtime
) -> None:
    deliver(client, webhook("booking-created.json"))
    answer = deliver(client, webhook("booking-cancelled-request-reschedule.json"))
    assert answer.status_code == 202, answer.text
    appointment = answer.json()["appointment"]
    assert (appointment["status"], appointment["confirmation"]) == ("cancelled", "wants_reschedule")
    assert scheduled(answer) == []  # no reminder for the given-up time, and no "cancelled" text
    assert {n["status"] for n in answer.json()["notifications"]} == {"cancelled"}


def test_the_new_time_picked_after_a_reschedule_request_books_the_visit_again(
    client: TestClient,
) -> None:
    deliver(client, webhook("booking-created.json"))
    deliver(client, webhook("booking-cancelled-request-reschedule.json"))
    # Cal.com books the new time under a new uid, with rescheduleUid naming the first.
    answer = deliver(client, webhook("booking-rescheduled.json"))
    appointment = answer.json()["appointment"]
    assert (appointment["id"], appointment["status"]) == (ORIGINAL_UID, "booked")
    assert appointment["confirmation"] == "unconfirmed"
    assert ("confirmation", "sms", "2026-11-30T13:57:00Z") in scheduled(answer)


def test_a_plain_cancel_still_tells_the_patient(client: TestClient) -> None:
    deliver(client, webhook("booking-created.json"))
    cancelled = webhook("booking-cancelled.json")
    cancelled["payload"]["uid"] = ORIGINAL_UID
    assert cancelled["payload"]["requestReschedule"] is False
    answer = deliver(client, cancelled)
    assert answer.json()["appointment"]["confirmation"] == "unconfirmed"
    # By text, and by email with the calendar file that takes the visit out of the calendar.
    assert [kind for kind, _, _ in scheduled(answer)] == ["cancellation", "cancellation"]


def test_a_ping_from_a_webhook_without_a_secret_is_refused_saying_why(
    client: TestClient, rt: Runtime
) -> None:
    body = as_sent(webhook("ping.json"))
    headers = {"Content-Type": "application/json", "X-Cal-Signature-256": "no-secret-provided"}
    answer = client.post("/v1/integrations/calcom", content=body, headers=headers)
    assert answer.status_code == 403
    assert "NOTIFIER_CALCOM_SECRET" in answer.json()["reason"]
    assert stored(rt) == NOTHING


def test_a_signed_ping_is_answered_ignored(client: TestClient, rt: Runtime) -> None:
    answer = deliver(client, webhook("ping.json"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored")
    assert stored(rt) == NOTHING


@pytest.mark.parametrize(
    "where, key, value",
    [
        ("payload", "startTime", "9999-12-31T23:00:00Z"),
        ("payload", "endTime", "9999-12-31T23:30:00-05:00"),
        ("payload", "startTime", "0001-01-01T00:00:00+05:00"),
        ("body", "createdAt", "0001-01-01T00:00:00Z"),
        ("body", "createdAt", "9999-12-31T23:59:59.999Z"),
    ],
)
def test_a_time_at_the_end_of_the_calendar_is_422_not_a_crash(
    client: TestClient, rt: Runtime, where: str, key: str, value: str
) -> None:
    payload = webhook("booking-created.json")
    (payload["payload"] if where == "payload" else payload)[key] = value
    answer = deliver(client, payload)
    field = f"payload.{key}" if where == "payload" else key
    assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
    assert "outside 1970-2199" in answer.json()["reason"]
    assert stored(rt) == NOTHING
