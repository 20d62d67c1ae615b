"""The audit log (HIPAA §164.312(b)): a scripted session at the dashboard and through the API
leaves one entry per sign-in, patient page, action and API call, in order, with who, when,
where from and what; the database refuses to change or delete an entry; admins read it and
export it as CSV, and it never holds a message body or a patient's contact details."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from notifier import api_keys, audit
from notifier.models import AuditEntry
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock
from notifier.web import create_app
from tests.conftest import new_york
from tests.test_roles import BEN, signed_in, two_accounts
from tests.test_staff_web import (
    AMY,
    PASSWORD,
    TODAY_3PM,
    a_reply,
    book,
    csrf,
    fail_confirmation_sms,
)

PATIENT_DATA = ("+17185550134", "718", "555-0134", "ana@example.org", "Ana", "Ruiz")


def entries(rt: Runtime) -> list[tuple[str, str, str | None, str]]:
    with rt.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(e.actor, e.action, e.subject, e.outcome) for e in rows]


def test_an_entry_cannot_be_changed_or_deleted_in_the_database(rt: Runtime) -> None:
    with rt.sessions() as session:
        audit.record(session, rt.clock(), f"staff:{AMY}", "appointment.view", "appointment:a")
    for statement in (
        update(AuditEntry).values(actor="staff:someone-else"),
        delete(AuditEntry),
        text("UPDATE audit_log SET outcome = 'refused'"),
        text("DELETE FROM audit_log WHERE id > 0"),
    ):
        with rt.sessions() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(statement)
            session.commit()
    assert entries(rt) == [(f"staff:{AMY}", "appointment.view", "appointment:a", "ok")]


def test_no_code_updates_or_deletes_the_audit_log() -> None:
    """The database refuses it anyway; the code does not even try."""
    package = Path(__file__).resolve().parent.parent / "notifier"
    for source in package.rglob("*.py"):
        if "migrations" in source.parts:
            continue
        code = source.read_text()
        assert not re.search(r"(update|delete)\(AuditEntry", code), source
        assert not re.search(r"(UPDATE|DELETE FROM)\s+audit_log", code), source


def test_a_scripted_session_leaves_each_step_in_the_log(rt: Runtime, clock: SimulatedClock) -> None:
    two_accounts(rt)
    key = api_keys.issue(rt, "booking-system", ["events", "read", "remind"])
    api = {"Authorization": f"Bearer {key}"}
    book(rt, "apt-1", TODAY_3PM)
    reply_id = a_reply(rt, "Is parking free? My number is 718 555 0134", clock())
    failed_id = fail_confirmation_sms(rt)
    app = create_app(rt)
    with TestClient(app) as stranger:
        form = stranger.get("/staff/login")
        wrong = {"email": AMY, "password": "wrong horse battery", "csrf": csrf(form)}
        assert stranger.post("/staff/login", data=wrong).status_code == 401
        form = stranger.get("/staff/login")  # each answer sets a new login token
        nobody = {"email": "mallory@evil.example", "password": PASSWORD, "csrf": csrf(form)}
        assert stranger.post("/staff/login", data=nobody).status_code == 401
    amy = signed_in(app, AMY)
    page = amy.get("/staff/appointments/apt-1")
    token = csrf(page)
    # Each button answers with a redirect to a page; not followed here, so the log shows the
    # buttons alone (a followed one adds the view of the page it lands on).
    for path, data in (
        ("/staff/appointments/apt-1/remind", {"channel": "sms"}),
        ("/staff/appointments/apt-1/remind", {"channel": "sms"}),
    ):
        amy.post(path, data={"csrf": token, **data}, follow_redirects=False)
    amy.get("/staff/worklist")
    for path in (f"/staff/inbox/{reply_id}/handled", f"/staff/failed/{failed_id}/retry"):
        amy.post(path, data={"csrf": token}, follow_redirects=False)
    ben = signed_in(app, BEN)
    assert ben.get("/staff/admin/audit").status_code == 403
    event = {
        "id": "evt-audit-1", "type": "appointment.booked",
        "occurred_at": clock().isoformat(),
        "appointment": {"id": "apt-2", "location": "forest-hills", "treatment": "botox-cosmetic",
                        "start": (TODAY_3PM + timedelta(days=1)).isoformat(),
                        "end": (TODAY_3PM + timedelta(days=1, minutes=30)).isoformat()},
        "patient": {"id": "pat-2", "first_name": "Ana", "last_name": "Ruiz",
                    "phone": "+1 718 555 0134", "email": "ana@example.org",
                    "consent": {"sms": True, "email": True, "marketing": False}},
    }  # fmt: skip
    assert amy.post("/v1/events", json=event, headers=api).status_code == 202
    assert amy.get("/v1/appointments/apt-2", headers=api).status_code == 200
    clock.now += timedelta(minutes=11)
    reminded = amy.post(
        "/v1/appointments/apt-1/remind", json={"staff": "Dr. Who", "force": True}, headers=api
    )
    assert reminded.status_code == 202, reminded.text
    amy.get("/v1/appointments/apt-1", headers={"Authorization": "Bearer wrong"})  # 401: no entry

    assert entries(rt) == [
        (f"staff:{AMY}", "signin", None, "refused"),
        ("unknown:mallory@evil.example", "signin", None, "refused"),
        (f"staff:{AMY}", "signin", None, "ok"),
        (f"staff:{AMY}", "appointment.view", "appointment:apt-1", "ok"),
        (f"staff:{AMY}", "reminder", "appointment:apt-1", "ok"),
        (f"staff:{AMY}", "reminder", "appointment:apt-1", "error"),
        (f"staff:{AMY}", "worklist.view", None, "ok"),
        (f"staff:{AMY}", "reply.handled", f"reply:{reply_id}", "ok"),
        (f"staff:{AMY}", "retry", f"notification:{failed_id}", "ok"),
        (f"staff:{BEN}", "signin", None, "ok"),
        (f"staff:{BEN}", "admin.denied", None, "ok"),
        ("api:booking-system", "POST /v1/events", "appointment:apt-2", "202"),
        ("api:booking-system", "GET /v1/appointments/{appointment_id}", "appointment:apt-2", "200"),
        (
            "api:booking-system",
            "POST /v1/appointments/{appointment_id}/remind",
            "appointment:apt-1",
            "202",
        ),
    ]
    with rt.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert {e.address for e in rows} == {"testclient"}
        assert rows[0].at == new_york(2026, 11, 30, 9, 0)
        assert rows[-1].detail == "channels: sms; forced; stated staff: 'Dr. Who'"
        assert rows[5].detail == (f"sms: Not sent again: {AMY} sent an SMS reminder just now.")

    listed = amy.get("/staff/admin/audit?actor=api:")
    assert listed.text.count("api:booking-system") == 3
    assert "staff:ben" not in listed.text
    exported = amy.get("/staff/admin/audit.csv")
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"] == 'attachment; filename="audit-2026-11-30.csv"'
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["action"] for row in table][:3] == ["signin", "signin", "signin"]
    assert len(table) == 15 and table[-1]["action"] == "audit.export"  # recorded first
    for secret in (*PATIENT_DATA, "parking", "reminder of your visit", PASSWORD, key):
        assert secret not in exported.text
    assert entries(rt)[-1] == (f"staff:{AMY}", "audit.export", None, "ok")


def test_a_csv_cell_is_never_a_formula(rt: Runtime) -> None:
    with rt.sessions() as session:
        audit.record(session, rt.clock(), "unknown:=HYPERLINK(1)", "signin", outcome="refused")
        lines = "".join(audit.csv_lines(session, audit.AuditFilter()))
    row = next(csv.DictReader(io.StringIO(lines)))
    assert row["actor"] == "unknown:=HYPERLINK(1)"  # starts with "unknown:", not "="
    with rt.sessions() as session:
        audit.record(session, rt.clock(), "=cmd|' /C calc'!A0", "signin", outcome="refused")
        lines = "".join(audit.csv_lines(session, audit.AuditFilter(action="signin")))
    assert list(csv.DictReader(io.StringIO(lines)))[-1]["actor"] == "'=cmd|' /C calc'!A0"


def test_filters_narrow_by_who_what_about_and_day(rt: Runtime, clock: SimulatedClock) -> None:
    with rt.sessions() as session:
        for actor, action, subject, days in (
            (f"staff:{AMY}", "appointment.view", "appointment:apt-1", 0),
            (f"staff:{BEN}", "appointment.view", "appointment:apt-10", 1),
            ("api:booking", "GET /v1/appointments/{appointment_id}", "appointment:apt-1", 2),
        ):
            audit.record(session, clock() + timedelta(days=days), actor, action, subject)
        chosen = audit.newest(session, audit.AuditFilter(subject="appointment:apt-1"))
        assert [e.actor for e in chosen] == ["api:booking", f"staff:{BEN}", f"staff:{AMY}"]
        one_day = audit.AuditFilter(
            since=new_york(2026, 12, 1), until=new_york(2026, 12, 2), actor="staff:"
        )
        assert [e.actor for e in audit.newest(session, one_day)] == [f"staff:{BEN}"]
        percent = audit.newest(session, audit.AuditFilter(subject="appointment:%"))
        assert percent == []  # a typed % is a character, not a wildcard
