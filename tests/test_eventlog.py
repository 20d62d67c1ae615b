"""The event log: a clinic's busy morning leaves one INFO line per thing that happened, with the
ids an operator looks up, and no patient's number, address, name, text or link anywhere in
the logs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from notifier import logs
from notifier.ingest import apply_event
from notifier.remind import remind
from notifier.runtime import Runtime
from notifier.simulate import run_until
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink
from tests.test_track import receipt, reply, signed_post

VISIT = new_york(2026, 12, 3, 10, 0)
ANA = {"phone": "+1 718 555 0134", "email": "ana.ruiz@example.org"}
BEA = {"phone": "+1 718 555 0177", "email": "bea.stone@example.org", "patient_id": "pat-2"}
SECRETS_OF_PATIENTS = [
    "+17185550134", "7185550134", "718 555 0134", "ana.ruiz@example.org", "Ruiz",
    "+17185550177", "7185550177", "718 555 0177", "bea.stone@example.org",
    "where can I park", "Ana",
]  # fmt: skip
ISO_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Day:
    """What the busy morning sent, for the tests to look for in the logs and the metrics."""

    bodies: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def ingest(rt: Runtime, payload: dict[str, Any]) -> None:
    with rt.sessions() as session:
        apply_event(session, rt.clinic, payload, rt.clock())


def busy_morning(client: TestClient, rt: Runtime, twilio: FakeTwilio, smtp: SMTPSink) -> Day:
    """Two bookings (one replayed, one overtaken by a stale event), their confirmations sent,
    one delivered and one refused by Twilio, replies of every kind, a STOP and a START, a
    staff reminder whose number opts out before it goes, a cancellation, a forged webhook."""
    now = rt.clock()
    booked = event("booked", VISIT, occurred_at=now, **ANA)  # type: ignore[arg-type]
    ingest(rt, booked)
    ingest(rt, booked)  # the booking system sends it again
    later = event("rescheduled", VISIT, occurred_at=now - timedelta(hours=1), **ANA)  # type: ignore[arg-type]
    ingest(rt, later)  # older than the booking: stale
    twilio.fail_next(code=21211)  # Ana's confirmation text is refused
    run_until(rt, rt.clock())
    ingest(rt, event("booked", VISIT, occurred_at=now, appointment_id="apt-2", **BEA))  # type: ignore[arg-type]
    run_until(rt, rt.clock())
    sids = [m["sid"] for m in twilio.messages]
    receipt(client, rt, sids[-1], "delivered")
    with rt.sessions() as session:  # an email with links to confirm or reschedule
        remind(session, rt.clinic, "apt-1", ["email"], "front.desk@clinic.example", rt.clock())
    run_until(rt, rt.clock())
    reply(client, rt, "C", sender="+17185550134")
    reply(client, rt, "where can I park?", sender="+17185550134")
    with rt.sessions() as session:  # asked for while the number still takes texts
        remind(session, rt.clinic, "apt-2", ["sms"], "front.desk@clinic.example", rt.clock())
    reply(client, rt, "STOP", sender="+17185550177")
    run_until(rt, rt.clock())  # the reminder meets the STOP at send time: suppressed
    reply(client, rt, "START", sender="+17185550177")
    ingest(rt, event("cancelled", VISIT, occurred_at=rt.clock(), appointment_id="apt-2", **BEA))  # type: ignore[arg-type]
    run_until(rt, rt.clock())
    forged = {"MessageSid": sids[-1], "MessageStatus": "delivered"}
    refused = signed_post(client, rt, "/twilio/status", forged, signed_url="https://evil.example/")
    assert refused.status_code == 403  # type: ignore[attr-defined]
    bodies = [m["body"] for m in twilio.messages] + [
        m.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        for m in smtp.messages
    ]
    tokens = re.findall(r"/links/([^\s\"'<>?]+)", "\n".join(bodies))
    for token in tokens:
        assert client.get(f"/links/{token}").status_code == 200
    return Day(bodies=bodies, tokens=tokens)


def lines(records: list[logging.LogRecord]) -> list[str]:
    """Each record as the service writes it, in text and in JSON, masking and all."""
    text, structured, masking = (
        logs.TextFormatter(logs.TEXT_FORMAT),
        logs.JSONFormatter(),
        logs.MaskingFilter(),
    )
    out = []
    for record in records:
        masking.filter(record)
        out += [text.format(record), structured.format(record)]
    return out


def test_a_busy_morning_logs_each_event_once_with_ids_and_no_personal_data(
    client: TestClient,
    rt: Runtime,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    day = busy_morning(client, rt, fake_twilio, smtp)
    events = [r for r in caplog.records if r.name == "notifier.events"]
    seen = [(r.event, r.fields) for r in events]  # type: ignore[attr-defined]

    def having(what: str, **wanted: Any) -> list[dict[str, Any]]:
        return [f for e, f in seen if e == what and wanted.items() <= f.items()]

    outcomes = sorted(
        (f["booking_event"].split("-")[0], f["appointment"], f["outcome"])
        for f in having("event ingested")
    )
    assert [o[1:] for o in outcomes] == [
        ("apt-1", "applied"), ("apt-1", "duplicate"), ("apt-1", "stale"),
        ("apt-2", "applied"), ("apt-2", "applied"),
    ]  # fmt: skip
    assert all(f["location"] == "forest-hills" for f in having("event ingested"))
    [failed] = having("message failed", appointment="apt-1", channel="sms")
    assert (failed["code"], failed["meaning"], failed["status"]) == (
        "21211",
        "invalid_number",
        "failed",
    )
    assert having("message sent", appointment="apt-1", channel="email", kind="confirmation")
    assert having("message sent", appointment="apt-2", channel="sms", kind="confirmation")
    [delivered] = having("message delivered")
    assert delivered["appointment"] == "apt-2" and delivered["location"] == "forest-hills"
    assert {(f["intent"], f["did"]) for f in having("reply received")} == {
        ("confirm", "confirmed"),
        ("other", "staff_inbox"),
        ("stop", "opted_out"),
        ("start", "opted_in"),
    }
    assert having("reply received", intent="confirm", appointment="apt-1", location="forest-hills")
    assert having("sms opt-out", source="keyword:STOP", appointment="apt-2")
    assert having("sms opt-in", appointment="apt-2")
    [staff] = having("staff reminder", appointment="apt-2")
    assert (staff["appointment"], staff["channels"], staff["by"]) == (
        "apt-2",
        "sms",
        "f•••@clinic.example",
    )
    [suppressed] = having("message suppressed", kind="manual")
    assert (suppressed["reason"], suppressed["notification"]) == (
        "opted_out",
        int(staff["notifications"]),
    )
    withdrawn = having("message withdrawn", appointment="apt-2")
    assert withdrawn and {f["kind"] for f in withdrawn} >= {"reminder"}
    assert all(
        {"notification", "appointment", "location"} <= f.keys()
        for e, f in seen
        if e.startswith("message ")
    )

    written = lines(caplog.records)
    assert day.tokens and day.bodies
    for line in written:
        for secret in [*SECRETS_OF_PATIENTS, *day.tokens, *day.bodies]:
            assert not re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", line), (secret, line)
    for line in written[1::2]:
        assert ISO_UTC_MS.match(json.loads(line)["time"])


def test_an_event_line_in_json_carries_its_fields() -> None:
    record = logging.LogRecord(
        "notifier.events", logging.INFO, __file__, 1, "%s: %s", ("sms opt-in", "x=1"), None
    )
    record.event, record.fields = "sms opt-in", {"appointment": "apt-9", "by": "ana@example.org"}  # type: ignore[attr-defined]
    line = json.loads(logs.JSONFormatter().format(record))
    assert (line["event"], line["appointment"], line["by"]) == (
        "sms opt-in",
        "apt-9",
        "a•••@example.org",
    )
    assert ISO_UTC_MS.match(line["time"])


def test_a_link_in_an_access_line_is_masked() -> None:
    assert (
        logs.mask('"GET /links/eyJhIjoiYXB0LTEifQ.abc HTTP/1.1" 200')
        == '"GET /links/••• HTTP/1.1" 200'
    )


def test_a_send_whose_answer_was_lost_logs_unknown_then_sent_when_found(
    rt: Runtime, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_faults import book, confirmation, send_due

    caplog.set_level(logging.INFO, logger="notifier.events")
    book(rt)
    fake_twilio.drop_next()
    send_due(rt)
    run_until(rt, rt.clock() + timedelta(seconds=rt.settings.sending_lease_seconds + 1))
    n = confirmation(rt)
    said = [(r.event, r.fields) for r in caplog.records if r.name == "notifier.events"]  # type: ignore[attr-defined]
    mine = [(e, f) for e, f in said if f.get("notification") == n.id]
    assert [e for e, _ in mine] == ["message failed", "message sent"]
    assert (mine[0][1]["status"], mine[0][1]["meaning"]) == ("unknown", "unknown")
    assert mine[1][1]["reconciled"] == "yes" and "call_seconds" not in mine[1][1]
