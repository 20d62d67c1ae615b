"""Hostile input at every door: each answers 4xx with the reason, stores nothing half-done and
logs no personal data. Never a 500. On SQLite and PostgreSQL where storage is involved."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from notifier.ingest import apply_event
from notifier.models import Appointment, BookingEvent, Notification, Patient
from notifier.runtime import Runtime
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event
from tests.test_staff_web import csrf, log_in, new_staff

AUTH = {"Authorization": "Bearer test-key"}
VISIT = new_york(2026, 12, 3, 10, 0)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    new_staff(rt)
    with TestClient(create_app(rt), raise_server_exceptions=False) as test_client:
        yield test_client


def booked(**overrides: Any) -> dict[str, Any]:
    return event("booked", VISIT, occurred_at=new_york(2026, 11, 30, 8, 55), **overrides)


def nothing_stored(rt: Runtime) -> bool:
    with rt.sessions() as session:
        return not any(
            session.scalar(select(func.count()).select_from(model))
            for model in (Appointment, Patient, Notification, BookingEvent)
        )


def refused(answer: Any, field: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.text


def post_event(client: TestClient, payload: dict[str, Any]) -> Any:
    return client.post("/v1/events", json=payload, headers=AUTH)


# --- keys, tokens and cookies --------------------------------------------------------------


@pytest.mark.parametrize("key", ["kéy".encode(), "kéy".encode("latin-1"), b"test-key\xff"])
def test_a_bearer_key_with_a_non_ascii_byte_is_a_wrong_key(client: TestClient, key: bytes) -> None:
    headers = [(b"authorization", b"Bearer " + key)]
    answer = client.get("/v1/appointments/apt-1", headers=headers)  # type: ignore[arg-type]
    assert answer.status_code == 401, answer.text


def test_a_staff_form_with_a_non_ascii_csrf_token_is_out_of_date(
    rt: Runtime, client: TestClient
) -> None:
    client.get("/staff/login")
    data = {"email": "amy@clinic.example", "password": "x", "csrf": "tökén"}
    assert client.post("/staff/login", data=data).status_code == 403
    assert log_in(client).status_code == 303
    board = client.get("/staff")
    assert csrf(board)
    answer = client.post("/staff/logout", data={"csrf": "tökén"}, follow_redirects=False)
    assert answer.status_code == 403


@pytest.mark.parametrize("cookie", ["kéy".encode(), "kéy".encode("latin-1"), b"\xff\xfe"])
def test_a_session_cookie_with_a_non_ascii_byte_is_no_session(
    client: TestClient, cookie: bytes
) -> None:
    headers = [(b"cookie", b"notifier_staff=" + cookie), (b"cookie", b"notifier_login=" + cookie)]
    answer = client.get("/staff", headers=headers, follow_redirects=False)  # type: ignore[arg-type]
    assert answer.status_code == 303
    form = {"email": "amy@clinic.example", "password": "x", "csrf": "kéy"}
    posted = client.post("/staff/login", data=form, headers=headers)  # type: ignore[arg-type]
    assert posted.status_code == 403


# --- times at the ends of the calendar -----------------------------------------------------


@pytest.mark.parametrize(
    "field, moment",
    [
        ("appointment.start", "9999-12-31T23:00:00-05:00"),
        ("appointment.start", "9999-12-30T10:00:00Z"),
        ("appointment.start", "0001-01-01T00:00:00+01:00"),
        ("appointment.start", "0001-01-02T10:00:00Z"),
        ("appointment.end", "9999-12-31T23:59:59-12:00"),
        ("occurred_at", "9999-12-31T23:59:59-05:00"),
        ("occurred_at", "0001-01-01T00:00:00+14:00"),
    ],
)
def test_a_time_at_the_ends_of_the_calendar_is_refused(
    rt: Runtime, client: TestClient, field: str, moment: str
) -> None:
    payload = booked()
    if field == "occurred_at":
        payload["occurred_at"] = moment
    else:
        payload["appointment"][field.split(".")[1]] = moment
    refused(post_event(client, payload), field)
    assert nothing_stored(rt)


def test_apply_event_itself_keeps_to_the_calendar_bounds(rt: Runtime) -> None:
    """Every door ends in apply_event; the CSV and Cal.com doors hand it the times as given."""
    from notifier.ingest import InvalidEvent

    payload = booked()
    payload["appointment"]["start"] = "9999-12-31T10:00:00-05:00"
    payload["appointment"]["end"] = "9999-12-31T10:30:00-05:00"
    with rt.sessions() as session, pytest.raises(InvalidEvent) as raised:
        apply_event(session, rt.clinic, payload, rt.clock())
    assert raised.value.errors[0][0] == "appointment.start"
    assert nothing_stored(rt)


# --- bodies a parser chokes on --------------------------------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000
HUGE_NUMBER = b'{"id": ' + b"9" * 5_000 + b"}"


@pytest.mark.parametrize("body", [DEEP, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, HUGE_NUMBER])
@pytest.mark.parametrize(
    "path", ["/v1/events", "/v1/appointments/apt-1/remind", "/v1/fhir/Appointment"]
)
def test_a_body_too_deep_or_a_number_too_long_is_refused(
    rt: Runtime, client: TestClient, body: bytes, path: str
) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code in (400, 422), answer.text
    if path.startswith("/v1/fhir"):  # FHIR's own answer: an OperationOutcome
        assert answer.json()["issue"][0]["code"] == "structure", answer.text
    else:
        assert answer.json()["field"] == "body", answer.text
    assert nothing_stored(rt)


# --- NUL bytes, over-long text, address lists ------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "id",
        "appointment.provider",
        "patient.first_name",
        "patient.last_name",
        "patient.email",
        "patient.time_zone",
        "appointment.location",
    ],
)
def test_a_nul_byte_in_a_text_field_is_refused_by_name(
    rt: Runtime, client: TestClient, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload = booked()
    *parents, name = field.split(".")
    target = payload
    for parent in parents:
        target = target[parent]
    target[name] = f"{target.get(name) or 'x'}\x00"
    with caplog.at_level(logging.DEBUG):
        answer = post_event(client, payload)
    refused(answer, field)
    assert "NUL" in answer.json()["reason"]
    assert nothing_stored(rt)
    assert "Ruiz" not in caplog.text


def test_a_nul_byte_in_a_remind_or_a_path_is_refused(rt: Runtime, client: TestClient) -> None:
    assert post_event(client, booked()).status_code == 202
    answer = client.post("/v1/appointments/apt-1/remind", json={"staff": "Amy\x00"}, headers=AUTH)
    refused(answer, "staff")
    assert client.get("/v1/appointments/apt-1%00", headers=AUTH).status_code in (404, 422)
    assert client.post("/v1/appointments/a%00/remind", headers=AUTH).status_code in (404, 422)


def test_the_database_logs_no_statement_parameters(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing statement's message names no patient: SQLAlchemy keeps the parameters out."""
    assert rt.engine.hide_parameters
    with rt.sessions() as session:
        apply_event(session, rt.clinic, booked(), rt.clock())
        session.add(Patient(id="pat-1", first_name="Zuleika", updated_at=rt.clock()))
        with pytest.raises(Exception) as raised:
            session.flush()
    assert "Zuleika" not in str(raised.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("appointment.provider", "Dr. " + "X" * 300),
        ("patient.first_name", "A" * 201),
        ("patient.last_name", "R" * 201),
        ("appointment.location", "x" * 65),
        ("appointment.treatment", "x" * 65),
        ("patient.time_zone", "America/" + "X" * 300),
        ("patient.phone", "+1" + "7" * 50),
        ("id", "e" * 129),
    ],
)
def test_an_over_long_text_field_is_refused_by_name(
    rt: Runtime, client: TestClient, field: str, value: str
) -> None:
    payload = booked()
    *parents, name = field.split(".")
    target = payload
    for parent in parents:
        target = target[parent]
    target[name] = value
    refused(post_event(client, payload), field)
    assert nothing_stored(rt)


def test_an_over_long_staff_name_on_a_reminder_is_refused(rt: Runtime, client: TestClient) -> None:
    assert post_event(client, booked()).status_code == 202
    answer = client.post("/v1/appointments/apt-1/remind", json={"staff": "A" * 201}, headers=AUTH)
    refused(answer, "staff")
    with rt.sessions() as session:
        assert session.scalar(select(Notification).where(Notification.kind == "manual")) is None


@pytest.mark.parametrize(
    "email",
    [
        "a@x.org,b@y.org",
        "a@x.org, b@y.org",
        "a@x.org;b@y.org",
        "a@x.org,b",
        "Ana <a@x.org>",
        "<a@x.org>",
        '"a@x.org"@y.org',
        "a@x.org\r\nBcc: b@y.org",
    ],
)
def test_an_email_field_holds_one_address(rt: Runtime, client: TestClient, email: str) -> None:
    refused(post_event(client, booked(email=email)), "patient.email")
    assert nothing_stored(rt)


# --- ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "appointment_id",
    ["a/b", "../apt", ".", "..", "apt 1", "apt?1", "apt#1", "apt%2F1", "apt\\1", "apt<1>", "-x"],
)
def test_an_appointment_id_outside_the_alphabet_is_refused(
    rt: Runtime, client: TestClient, appointment_id: str
) -> None:
    answer = post_event(client, booked(appointment_id=appointment_id))
    refused(answer, "appointment.id")
    assert "letters, digits" in answer.json()["reason"]
    assert nothing_stored(rt)


def test_a_patient_id_outside_the_alphabet_is_refused(rt: Runtime, client: TestClient) -> None:
    refused(post_event(client, booked(patient_id="pat/1")), "patient.id")
    assert nothing_stored(rt)


@pytest.mark.parametrize("appointment_id", ["APT-1", "fhir.id-7", "cal_9x:2", "pat@north~1"])
def test_ids_from_booking_systems_are_taken_and_shown(
    rt: Runtime, client: TestClient, appointment_id: str
) -> None:
    assert post_event(client, booked(appointment_id=appointment_id)).status_code == 202
    assert client.get(f"/v1/appointments/{appointment_id}", headers=AUTH).status_code == 200
    assert log_in(client).status_code == 303
    board = client.get("/staff")
    assert board.status_code == 200
    page = client.get(f"/staff/appointments/{appointment_id}")
    assert page.status_code == 200


def test_ids_in_the_api_paths_are_checked_against_the_alphabet(client: TestClient) -> None:
    answer = client.get("/v1/appointments/a b", headers=AUTH)
    assert answer.status_code == 422
    assert client.get("/v1/appointments/" + "a" * 129, headers=AUTH).status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/staff/inbox/99999999999999999999/handled",
        "/staff/failed/99999999999999999999/retry",
        "/staff/failed/99999999999999999999/settle",
    ],
)
def test_an_id_past_the_integer_range_in_a_staff_url_is_not_found(
    rt: Runtime, client: TestClient, path: str
) -> None:
    assert log_in(client).status_code == 303
    token = csrf(client.get("/staff"))
    for number in ("99999999999999999999", str(2**63), "-99999999999999999999", "0"):
        answer = client.post(
            path.replace("99999999999999999999", number),
            data={"csrf": token},
            follow_redirects=False,
        )
        assert answer.status_code in (303, 404, 422), (number, answer.text)


def test_a_days_or_weeks_number_past_any_range_is_refused_or_bounded(client: TestClient) -> None:
    assert client.get("/v1/stats?weeks=99999999999999999999", headers=AUTH).status_code == 422
    assert log_in(client).status_code == 303
    assert client.get("/staff?days=99999999999999999999").status_code == 200
    assert client.get("/staff?days=-5").status_code == 200


def test_an_old_event_replayed_after_the_bounds_still_answers(
    rt: Runtime, client: TestClient
) -> None:
    first = post_event(client, booked(event_id="evt-1"))
    assert first.status_code == 202
    rt.clock.now += timedelta(days=1)  # type: ignore[attr-defined]
    assert post_event(client, booked(event_id="evt-1")).status_code == 200


def test_an_id_stored_before_the_alphabet_does_not_break_the_board(
    rt: Runtime, client: TestClient
) -> None:
    """Rows written before ids kept to their alphabet may hold any character: the dashboard
    still lists them, with the id escaped in the link."""
    now = rt.clock()
    with rt.sessions() as session:
        patient = Patient(id="old/pat", first_name="Olga", updated_at=now)
        session.add(patient)
        session.add(
            Appointment(
                id="old/1 #2", patient=patient, location_id="forest-hills",
                treatment_id="botox-cosmetic", start_at=now + timedelta(hours=6),
                end_at=now + timedelta(hours=7), status="booked", booked_at=now,
                last_event_at=now, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        session.commit()
    assert log_in(client).status_code == 303
    board = client.get("/staff")
    assert board.status_code == 200
    assert "/staff/appointments/old%2F1%20%232" in board.text
