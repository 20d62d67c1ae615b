"""POST /v1/events and GET /v1/appointments/{id}, as the contract says, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as event_module
from sqlalchemy import func, select

from notifier.ingest import EventOutcome, apply_event
from notifier.models import Appointment, BookingEvent, Notification, Patient
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event

AUTH = {"Authorization": "Bearer test-key"}
VISIT = new_york(2026, 12, 3, 10, 0)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def booked(**overrides: Any) -> dict[str, Any]:
    return event("booked", VISIT, occurred_at=new_york(2026, 11, 30, 8, 55), **overrides)


def stored(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Appointment, Patient, Notification, BookingEvent)
        }


def test_the_contract_example_is_accepted_and_planned(client: TestClient) -> None:
    answer = client.post("/v1/events", json=booked(event_id="evt-001"), headers=AUTH)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["appointment"]["id"] == "apt-1"
    assert body["appointment"]["start"] == "2026-12-03T15:00:00Z"
    planned = sorted((n["kind"], n["channel"], n["due_at"]) for n in body["notifications"])
    assert planned == [
        ("aftercare", "email", "2026-12-03T16:30:00Z"),
        ("aftercare", "sms", "2026-12-03T16:30:00Z"),
        ("confirmation", "email", "2026-11-30T13:55:00Z"),
        ("confirmation", "sms", "2026-11-30T13:55:00Z"),
        ("reminder", "email", "2026-12-01T15:00:00Z"),
        ("reminder", "sms", "2026-12-01T15:00:00Z"),
        ("reminder", "sms", "2026-12-03T13:00:00Z"),
    ]
    assert {n["status"] for n in body["notifications"]} == {"scheduled"}
    assert set(body["notifications"][0]) == {"id", "kind", "channel", "due_at", "status"}


def test_the_same_event_again_answers_200_with_the_same_outcome(
    client: TestClient, rt: Runtime
) -> None:
    first = client.post("/v1/events", json=booked(event_id="evt-001"), headers=AUTH)
    again = client.post("/v1/events", json=booked(event_id="evt-001"), headers=AUTH)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["notifications"] == first.json()["notifications"]
    assert stored(rt)["notifications"] == 7


def test_a_new_bookings_answer_is_what_is_stored(client: TestClient) -> None:
    answer = client.post("/v1/events", json=booked(), headers=AUTH).json()
    shown = client.get("/v1/appointments/apt-1", headers=AUTH).json()
    fields = ("id", "kind", "channel", "due_at", "status")
    assert [{f: n[f] for f in fields} for n in shown["notifications"]] == answer["notifications"]
    assert {k: shown[k] for k in answer["appointment"]} == answer["appointment"]
    assert [h["detail"] for n in shown["notifications"] for h in n["history"]] == ["planned"] * 7


def apply_at_once(rt: Runtime, *payloads: dict[str, Any]) -> list[EventOutcome]:
    """Applies each payload in a thread of its own, all released at the same moment."""
    start = threading.Barrier(len(payloads))

    def apply(payload: dict[str, Any]) -> EventOutcome:
        with rt.sessions() as session:
            start.wait()
            return apply_event(session, rt.clinic, payload, rt.clock())

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(apply, payloads))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_first_booking_on_postgresql_is_one_statement(rt: Runtime) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event_module.listen(rt.engine, "before_cursor_execute", count)
    try:
        with rt.sessions() as session:
            outcome = apply_event(session, rt.clinic, booked(), rt.clock())
    finally:
        event_module.remove(rt.engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements
    assert outcome.notifications is not None and len(outcome.notifications) == 7
    assert stored(rt) == {"appointments": 1, "patients": 1, "notifications": 7, "booking_events": 1}


def test_a_booking_sent_again_with_a_new_time_moves_the_plan(client: TestClient) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    later = VISIT + timedelta(days=2)
    again = event("booked", later, occurred_at=new_york(2026, 11, 30, 9, 30))
    answer = client.post("/v1/events", json=again, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert answer.json()["appointment"]["start"] == "2026-12-05T15:00:00Z"
    shown = client.get("/v1/appointments/apt-1", headers=AUTH).json()["notifications"]
    reminders = sorted(
        (n["channel"], n["slot"], n["due_at"])
        for n in shown
        if n["kind"] == "reminder" and n["status"] == "scheduled"
    )
    assert reminders == [
        ("email", "48h", "2026-12-03T15:00:00Z"),
        ("sms", "2h", "2026-12-05T13:00:00Z"),
        ("sms", "48h", "2026-12-03T15:00:00Z"),
    ]


RACES = 6  # each race can go either way: run several


def test_the_same_new_booking_twice_at_once_is_applied_once(rt: Runtime) -> None:
    for k in range(RACES):
        # Days apart: one patient's visits on the same day share their reminders.
        start = VISIT + timedelta(days=2 * k)
        at = new_york(2026, 11, 30, 8, 55)
        new = event("booked", start, occurred_at=at, event_id=f"evt-{k}", appointment_id=f"apt-{k}")
        twice = [new] * 2
        outcomes = apply_at_once(rt, *twice)
        assert sorted(o.duplicate for o in outcomes) == [False, True]
    assert stored(rt) == {
        "appointments": RACES,
        "patients": 1,
        "notifications": 7 * RACES,
        "booking_events": RACES,
    }


def test_a_booking_and_its_move_at_once_leave_one_plan_for_the_new_time(rt: Runtime) -> None:
    later = VISIT + timedelta(days=1)
    for k in range(RACES):
        ids: dict[str, Any] = {"appointment_id": f"apt-{k}", "patient_id": f"pat-{k}"}
        moved = event("rescheduled", later, occurred_at=new_york(2026, 11, 30, 9, 0), **ids)
        outcomes = apply_at_once(rt, booked(**ids), moved)
        assert {o.outcome for o in outcomes} <= {"applied", "ignored_stale"}
        with rt.sessions() as session:
            appointment = session.get_one(Appointment, f"apt-{k}")
            pending = session.scalars(
                select(Notification).where(
                    Notification.appointment_id == f"apt-{k}",
                    Notification.status == "scheduled",
                    Notification.kind == "reminder",
                )
            ).all()
        assert appointment.start_at == later
        assert sorted((n.channel, n.slot, n.due_at) for n in pending) == [
            ("email", "48h", later - timedelta(hours=48)),
            ("sms", "2h", later - timedelta(hours=2)),
            ("sms", "48h", later - timedelta(hours=48)),
        ]
    assert stored(rt)["booking_events"] == 2 * RACES


def test_an_event_id_reused_for_another_event_is_a_conflict(client: TestClient) -> None:
    client.post("/v1/events", json=booked(event_id="evt-001"), headers=AUTH)
    other = booked(event_id="evt-001", appointment_id="apt-9")
    assert client.post("/v1/events", json=other, headers=AUTH).status_code == 409


def test_an_older_event_is_recorded_and_ignored(client: TestClient, rt: Runtime) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    stale = event("cancelled", VISIT, occurred_at=new_york(2026, 11, 30, 8, 0))
    answer = client.post("/v1/events", json=stale, headers=AUTH)
    assert answer.status_code == 202
    assert answer.json()["event"]["outcome"] == "ignored_stale"
    assert answer.json()["appointment"]["status"] == "booked"
    assert stored(rt)["booking_events"] == 2


def test_get_appointment_shows_each_notification_with_its_history(client: TestClient) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    answer = client.get("/v1/appointments/apt-1", headers=AUTH)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["confirmation"]) == ("booked", "unconfirmed")
    assert body["notifications"][0]["history"][0]["status"] == "scheduled"
    assert client.get("/v1/appointments/nope", headers=AUTH).status_code == 404


def test_phone_numbers_are_stored_in_e164(client: TestClient, rt: Runtime) -> None:
    client.post("/v1/events", json=booked(phone="(718) 555-0134"), headers=AUTH)
    with rt.sessions() as session:
        assert session.get_one(Patient, "pat-1").phone == "+17185550134"


def _with(path: str, value: Any) -> dict[str, Any]:
    payload = booked()
    *parents, leaf = path.split(".")
    target = payload
    for part in parents:
        target = target[part]
    if value is _DROP:
        del target[leaf]
    else:
        target[leaf] = value
    return payload


_DROP = object()


@pytest.mark.parametrize(
    "path, value, field, reason",
    [
        ("patient.phone", "not a phone", "patient.phone", "unparseable"),
        ("patient.phone", "+1 555 0134", "patient.phone", "phone number"),
        ("patient.phone", "+44 20 7946 0958", "patient.phone", "not a mobile"),
        ("appointment.start", "2026-12-03T10:00:00", "appointment.start", "without offset"),
        ("appointment.end", "2026-12-03T09:00:00-05:00", "appointment.end", "not after start"),
        ("appointment.location", "brooklyn", "appointment.location", "unknown location"),
        ("appointment.treatment", "filler", "appointment.treatment", "unknown treatment"),
        ("type", "appointment.moved", "type", ""),
        ("occurred_at", _DROP, "occurred_at", "required"),
        ("patient.email", "not-an-email", "patient.email", ""),
    ],
)
def test_bad_input_is_422_with_field_and_reason_and_nothing_stored(
    client: TestClient, rt: Runtime, path: str, value: Any, field: str, reason: str
) -> None:
    answer = client.post("/v1/events", json=_with(path, value), headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert reason in answer.json()["reason"]
    assert stored(rt) == {"appointments": 0, "patients": 0, "notifications": 0, "booking_events": 0}


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    answer = client.post("/v1/events", content=b"{nope", headers=AUTH)
    assert (answer.status_code, answer.json()["field"]) == (422, "body")


def test_an_oversized_body_is_413(client: TestClient, rt: Runtime) -> None:
    payload = booked()
    payload["padding"] = "x" * 100_000
    assert client.post("/v1/events", json=payload, headers=AUTH).status_code == 413
    assert stored(rt)["booking_events"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "test-key"},
        {"Authorization": "Basic dGVzdC1rZXk="},
    ],
)
def test_a_missing_or_wrong_api_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    assert client.post("/v1/events", json=booked(), headers=headers).status_code == 401
    assert client.get("/v1/appointments/apt-1", headers=headers).status_code == 401


def test_keys_created_with_the_cli_are_accepted(client: TestClient, rt: Runtime) -> None:
    import hashlib

    from notifier.models import ApiKey

    with rt.sessions() as session:
        digest = hashlib.sha256(b"ntf_created").hexdigest()
        session.add(ApiKey(name="booking system", key_sha256=digest, created_at=rt.clock()))
        session.commit()
    headers = {"Authorization": "Bearer ntf_created"}
    assert client.post("/v1/events", json=booked(), headers=headers).status_code == 202


def test_manual_reminder_is_planned_now_and_refused_without_consent(client: TestClient) -> None:
    consent = {"sms": True, "email": False, "marketing": False}
    client.post("/v1/events", json=booked(consent=consent), headers=AUTH)
    answer = client.post(
        "/v1/appointments/apt-1/remind", json={"channels": ["sms", "email"]}, headers=AUTH
    )
    assert answer.status_code == 202
    assert [(n["kind"], n["channel"]) for n in answer.json()["notifications"]] == [
        ("manual", "sms")
    ]
    assert "email" in answer.json()["refused"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_an_event_from_a_clock_running_ahead_is_confirmed_now(
    client: TestClient, rt: Runtime
) -> None:
    payload = event("booked", VISIT, occurred_at=rt.clock() + timedelta(days=1))
    answer = client.post("/v1/events", json=payload, headers=AUTH)
    assert answer.status_code == 202
    due = {n["due_at"] for n in answer.json()["notifications"] if n["kind"] == "confirmation"}
    assert due == {"2026-11-30T14:00:00Z"}  # now, not a day later


def test_remind_without_a_body_texts_and_an_unknown_appointment_is_404(client: TestClient) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    answer = client.post("/v1/appointments/apt-1/remind", headers=AUTH)
    assert answer.status_code == 202
    assert [n["channel"] for n in answer.json()["notifications"]] == ["sms"]
    assert client.post("/v1/appointments/nope/remind", headers=AUTH).status_code == 404


def test_a_second_reminder_within_10_minutes_is_refused_as_a_double_click(
    client: TestClient, clock: SimulatedClock
) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    first = client.post("/v1/appointments/apt-1/remind", json={"staff": "amy"}, headers=AUTH)
    assert first.status_code == 202
    clock.now += timedelta(minutes=9)
    again = client.post(
        "/v1/appointments/apt-1/remind", json={"channels": ["email", "sms"]}, headers=AUTH
    )
    assert again.status_code == 409 and again.headers["retry-after"] == "60"
    assert again.json() == {
        "detail": "not sent again: api:env-62af8704764f sent an SMS reminder 9 min ago",
        "error": "reminded_recently",
        "channel": "sms",
        "by": "api:env-62af8704764f",
        "at": "2026-11-30T14:00:00Z",
        "retry_after": 60,
        "hint": 'nothing was sent; {"force": true} sends another now',
    }
    email = client.post("/v1/appointments/apt-1/remind", json={"channels": ["email"]}, headers=AUTH)
    assert email.status_code == 202  # the guard is per channel
    clock.now += timedelta(minutes=1, seconds=1)
    later = client.post("/v1/appointments/apt-1/remind", headers=AUTH)
    assert [n["channel"] for n in later.json()["notifications"]] == ["sms"]


def test_remind_with_a_bad_channel_says_which_and_why(client: TestClient) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    answer = client.post("/v1/appointments/apt-1/remind", json={"channels": ["fax"]}, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["field"] == "channels.0" and "sms" in answer.json()["reason"]


def test_remind_for_a_cancelled_appointment_is_refused_with_the_reason(client: TestClient) -> None:
    client.post("/v1/events", json=booked(), headers=AUTH)
    cancelled = event("cancelled", VISIT, occurred_at=new_york(2026, 11, 30, 8, 58))
    client.post("/v1/events", json=cancelled, headers=AUTH)
    answer = client.post("/v1/appointments/apt-1/remind", headers=AUTH)
    assert answer.status_code == 409 and "cancelled" in answer.text
