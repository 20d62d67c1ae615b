"""API keys with names and scopes (`notifier apikey create|list|revoke`), a rate per key shared
through Redis, and the manual-reminder guard in the one path the API, CLI and dashboard share."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from notifier import api_keys, cli
from notifier.models import ApiKey, AuditEntry, Notification
from notifier.remind import RemindedRecently, remind
from notifier.runtime import Runtime
from notifier.web import create_app
from tests.conftest import REDIS_URL
from tests.test_staff_web import TODAY_3PM, book

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def notifier(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """`notifier …` against the test database: (exit code, stdout, stderr)."""
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("NOTIFIER_CONFIG", str(rt.settings.config_path))

    def run(*argv: str) -> tuple[int, str, str]:
        args = cli.parser().parse_args(argv)
        code = args.run(args)
        out, err = capsys.readouterr()
        return int(code or 0), out, err

    return run


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def test_create_list_and_revoke_from_the_command_line(
    rt: Runtime, notifier: Run, client: TestClient
) -> None:
    assert notifier("apikey", "list") == (
        0, "", "no keys issued (keys in NOTIFIER_API_KEYS are not listed)\n",
    )  # fmt: skip
    code, out, err = notifier("apikey", "create", "booking", "--scope", "events", "--scope", "read")
    key = out.strip()
    assert (code, err) == (0, "") and key.startswith("ntf_") and len(key) > 40
    with rt.sessions() as session:
        row = session.scalars(select(ApiKey)).one()
        assert (row.name, row.scopes) == ("booking", "events,read")
        assert row.key_sha256 == hashlib.sha256(key.encode()).hexdigest()  # the hash, not the key
    assert client.get("/v1/appointments/apt-1", headers=bearer(key)).status_code == 404
    code, out, _ = notifier("apikey", "list")
    assert out.startswith("booking ") and "events,read" in out and out.rstrip().endswith("live")
    assert notifier("apikey", "create", "booking")[2] == (
        "notifier: a key named 'booking' exists: revoke it first, or name this one otherwise\n"
    )
    assert notifier("apikey", "revoke", "booking") == (0, "revoked: booking\n", "")
    assert client.get("/v1/appointments/apt-1", headers=bearer(key)).status_code == 401
    assert "  revoked 20" in notifier("apikey", "list")[1]  # the command runs on the real clock
    assert notifier("apikey", "revoke", "booking")[0] == 1
    assert notifier("apikey", "create", "booking")[0] == 0  # the name is free again
    with rt.sessions() as session:
        logged = (
            session.execute(
                select(AuditEntry.actor, AuditEntry.action).where(
                    AuditEntry.action.like("apikey.%")
                )
            )
            .tuples()
            .all()
        )
    assert [action for _, action in logged] == ["apikey.create", "apikey.revoke", "apikey.create"]
    assert all(actor.startswith("cli:") for actor, _ in logged)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["env-abc"], "not a key name: 'env-abc'"),
        (["a/b"], "not a key name: 'a/b'"),
    ],
)
def test_a_bad_key_name_is_refused(notifier: Run, argv: list[str], error: str) -> None:
    code, out, err = notifier("apikey", "create", *argv)
    assert code == 1 and out == "" and err.startswith(f"notifier: {error}")


def test_an_unknown_scope_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parser().parse_args(["apikey", "create", "x", "--scope", "write"])
    assert exited.value.code == 2


def test_each_route_asks_for_its_scope(rt: Runtime, client: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    events_only = bearer(api_keys.issue(rt, "booking", ["events"]))
    reader = bearer(api_keys.issue(rt, "reporting", ["read"]))
    for method, path, key, allowed in (
        ("GET", "/v1/appointments/apt-1", events_only, False),
        ("GET", "/v1/stats", events_only, False),
        ("POST", "/v1/appointments/apt-1/remind", events_only, False),
        ("POST", "/v1/appointments/apt-1/remind", reader, False),
        ("POST", "/v1/events", reader, False),
        ("POST", "/v1/fhir/Appointment", reader, False),
        ("GET", "/v1/appointments/apt-1", reader, True),
        ("GET", "/v1/stats", reader, True),
    ):
        answer = client.request(method, path, headers=key, json={})
        if allowed:
            assert answer.status_code == 200, (method, path)
        else:
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["detail"].startswith("this API key may not ")
    with rt.sessions() as session:
        assert session.scalar(select(Notification).where(Notification.kind == "manual")) is None


def test_a_key_from_the_environment_may_do_everything(rt: Runtime, client: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    key = bearer("test-key")  # NOTIFIER_API_KEYS in the test settings
    assert client.get("/v1/appointments/apt-1", headers=key).status_code == 200
    assert client.post("/v1/appointments/apt-1/remind", headers=key).status_code == 202


def test_the_key_not_the_staff_field_is_who_reminded(rt: Runtime, client: TestClient) -> None:
    book(rt, "apt-1", TODAY_3PM)
    key = bearer(api_keys.issue(rt, "front-desk", ["remind"]))
    answer = client.post(
        "/v1/appointments/apt-1/remind", json={"staff": "Dr. Simhaee"}, headers=key
    )
    assert answer.status_code == 202
    again = client.post("/v1/appointments/apt-1/remind", headers=key)
    assert again.status_code == 409 and again.headers["retry-after"] == "600"
    assert again.json()["by"] == "api:front-desk" and again.json()["error"] == "reminded_recently"
    forced = client.post("/v1/appointments/apt-1/remind", json={"force": True}, headers=key)
    assert forced.status_code == 202
    with rt.sessions() as session:
        staff = session.scalars(select(Notification.staff).where(Notification.kind == "manual"))
        assert staff.all() == ["api:front-desk", "api:front-desk"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_reminders_asked_at_once_send_one(rt: Runtime) -> None:
    """Eight requests for one appointment at the same moment (the API, the CLI and the
    dashboard all call `remind`): one reminder, seven told it was just sent."""
    book(rt, "apt-1", TODAY_3PM)
    start = threading.Barrier(8)

    def ask(n: int) -> str:
        with rt.sessions() as session:
            start.wait()
            try:
                remind(session, rt.clinic, "apt-1", ["sms"], f"staff-{n}", rt.clock())
            except RemindedRecently:
                return "refused"
            return "sent"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(ask, range(8)))
    assert outcomes == ["refused"] * 7 + ["sent"]
    with rt.sessions() as session:
        manual = session.scalars(select(Notification).where(Notification.kind == "manual"))
        assert len(manual.all()) == 1


def limited_app(rt: Runtime, broker_url: str | None, rate: float) -> TestClient:
    settings = replace(rt.settings, broker_url=broker_url, api_rate=rate)
    return TestClient(create_app(Runtime.build(settings, clock=rt.clock)))


def test_a_key_past_its_rate_gets_429_across_processes_through_redis(rt: Runtime) -> None:
    """Two web apps (as two processes would) share one key's rate in Redis: 1 a second with a
    burst of two seconds' worth lets three calls through, the fourth waits."""
    name = f"rate-{uuid.uuid4().hex[:8]}"  # Redis is shared by every test run on the machine
    key = bearer(api_keys.issue(rt, name, ["read"]))
    one, two = limited_app(rt, REDIS_URL, 1.0), limited_app(rt, REDIS_URL, 1.0)
    codes = [app.get("/v1/stats", headers=key).status_code for app in (one, two, one, two)]
    assert codes == [200, 200, 200, 429]
    throttled = two.get("/v1/stats", headers=key)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert throttled.json() == {"detail": "too many requests with this key: try again in 1 s"}
    other = bearer(api_keys.issue(rt, f"{name}-b", ["read"]))
    assert one.get("/v1/stats", headers=other).status_code == 200  # each key its own rate
    time.sleep(1.1)
    assert one.get("/v1/stats", headers=key).status_code == 200
    with rt.sessions() as session:
        outcomes = session.scalars(
            select(AuditEntry.outcome).where(AuditEntry.actor == f"api:{name}")
        ).all()
    assert "429" not in outcomes  # a refused call read nothing: not logged


def test_without_redis_each_process_counts_for_itself(rt: Runtime) -> None:
    key = bearer(api_keys.issue(rt, "local", ["read"]))
    local = limited_app(rt, None, 1.0)
    codes = [local.get("/v1/stats", headers=key).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_a_redis_that_does_not_answer_lets_calls_through(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    key = bearer(api_keys.issue(rt, "no-redis", ["read"]))
    unreachable = limited_app(rt, "redis://127.0.0.1:1/0", 1.0)
    codes = [unreachable.get("/v1/stats", headers=key).status_code for _ in range(4)]
    assert codes == [200] * 4
    assert "API rate limit not checked" in caplog.text


def test_the_settings_read_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifier.settings import Settings

    assert Settings.from_env({"NOTIFIER_API_RATE": "5"}).api_rate == 5.0
    for bad in ("0", "-1", "fast", "inf", "nan"):
        with pytest.raises(ValueError, match="NOTIFIER_API_RATE must be a number"):
            Settings.from_env({"NOTIFIER_API_RATE": bad})


def test_the_cli_reminder_goes_through_the_guard_and_the_log(rt: Runtime, notifier: Run) -> None:
    book(rt, "apt-1", datetime.now(UTC) + timedelta(days=30))  # the command's clock is real
    assert notifier("remind", "apt-1", "--staff", "amy")[0] == 0
    code, _, err = notifier("remind", "apt-1")
    assert code == 1 and "(--force sends another)" in err
    with rt.sessions() as session:
        logged = session.execute(
            select(AuditEntry.action, AuditEntry.subject, AuditEntry.outcome, AuditEntry.detail)
        ).tuples()
        assert logged.all() == [
            ("reminder", "appointment:apt-1", "ok", "channels: sms; --staff 'amy'"),
            ("reminder", "appointment:apt-1", "refused", "channels: sms; --staff 'cli'"),
        ]
