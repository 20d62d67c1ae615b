"""What operators use: /metrics, `notifier doctor`, `notifier templates check`, JSON logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from notifier import logs
from notifier.cli import main
from notifier.doctor import run
from notifier.ingest import apply_event
from notifier.runtime import Runtime
from notifier.settings import EXAMPLE_CLINIC
from notifier.simulate import run_until
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_messages_by_state_and_time_the_sends(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    with rt.sessions() as session:
        apply_event(
            session,
            rt.clinic,
            event("booked", new_york(2026, 12, 3, 10), occurred_at=rt.clock()),
            rt.clock(),
        )
    rt.clock.now += timedelta(seconds=3)  # type: ignore[attr-defined]
    before = samples(client.get("/metrics").text)
    assert before[("notifier_due_queue_depth", ())] == 2
    assert before[("notifier_oldest_due_seconds", ())] == 3
    run_until(rt, rt.clock())
    after = samples(client.get("/metrics").text)
    sent = (
        "notifier_notifications",
        (("channel", "sms"), ("kind", "confirmation"), ("state", "sent")),
    )
    assert after[sent] == 1
    assert (
        after[
            (
                "notifier_notifications",
                (("channel", "sms"), ("kind", "reminder"), ("state", "scheduled")),
            )
        ]
        == 2
    )
    assert after[("notifier_due_queue_depth", ())] == 0
    assert after[("notifier_lateness_seconds_count", ())] == 2
    assert after[("notifier_lateness_seconds_bucket", (("le", "5"),))] == 2  # 3 s late


def test_readiness_fails_with_the_database_down(rt: Runtime, tmp_path: object) -> None:
    import dataclasses

    from notifier import db

    down = dataclasses.replace(rt, engine=db.make_engine("postgresql://nobody@127.0.0.1:9/none"))
    with TestClient(create_app(down, broker_ping=lambda: None)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"].startswith("error")
    assert answer.json()["checks"]["broker"] == "ok"


def test_doctor_passes_on_a_good_setup_and_says_what_is_wrong(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    out = io.StringIO()
    assert run(rt, None, out)
    assert "ok    twilio: credentials accepted" in out.getvalue()
    assert "ok    smtp: 127.0.0.1:" in out.getvalue()
    import dataclasses

    from notifier.runtime import sms_channel

    wrong = dataclasses.replace(rt.settings, twilio_auth_token="wrong")
    broken = dataclasses.replace(rt, sms=sms_channel(wrong, rt.clinic))
    out = io.StringIO()
    assert not run(broken, lambda: (_ for _ in ()).throw(ConnectionError("refused")), out)
    assert "FAIL  twilio:" in out.getvalue() and "20003" in out.getvalue()


def test_templates_check_lists_every_sms_template_in_one_segment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["templates", "check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # A header, then each notification kind as a first text and a later one, and the replies.
    rows = [line for line in lines if line.split()[1:2] in (["en"], ["es"])]
    assert len(rows) == 9 * 2 * 2 + 8 * 2
    assert lines[-1].startswith("ok: all 52 texts fit one GSM-7 segment")


def test_json_logs_are_one_masked_object_a_line() -> None:
    record = logging.LogRecord(
        "notifier.send", logging.WARNING, __file__, 1, "to %s failed", ("+17185550134",), None
    )
    logs.MaskingFilter().filter(record)
    line = json.loads(logs.JSONFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "notifier.send",
        "to +1718•••0134 failed",
    )


@pytest.mark.parametrize("command", ["web", "worker", "scheduler"])
def test_processes_that_work_together_need_a_shared_secret_key(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTIFIER_SECRET_KEY", raising=False)
    monkeypatch.setenv("NOTIFIER_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert main([command]) == 2
    assert "needs NOTIFIER_SECRET_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, value, complaint",
    [
        ("NOTIFIER_PROVIDER_TIMEOUT", "ten", "must be a number of seconds, not 'ten'"),
        ("NOTIFIER_SEND_CONCURRENCY", "0", "must be a whole number of at least 1, not '0'"),
        ("NOTIFIER_SEND_CONCURRENCY", "2.5", "must be a whole number of at least 1, not '2.5'"),
    ],
)
def test_a_bad_number_in_the_environment_is_named(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    complaint: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["templates", "check"]) == 2
    assert f"{name} {complaint}" in capsys.readouterr().err


def test_the_demo_plays_the_clinic_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clinic = tmp_path / "clinic.toml"
    clinic.write_text(
        EXAMPLE_CLINIC.read_text().replace("North Shore Skin & Neurology", "Bayside Skin")
    )
    monkeypatch.setenv("NOTIFIER_CONFIG", str(clinic))
    assert main(["demo", "--date", "2026-12-01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("notifier demo: Bayside Skin, clinic day Tuesday 2026-12-01")
    assert "Bayside Skin: Ana, you're booked Tue, Dec 1 10:00 AM" in out


def test_templates_check_fails_without_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_TEMPLATES", str(tmp_path))
    assert main(["templates", "check"]) == 1
    assert "no SMS templates" in capsys.readouterr().err
