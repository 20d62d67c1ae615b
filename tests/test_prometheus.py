"""/metrics as Prometheus reads it, the alert rules and the dashboard, checked with Debian's
promtool (scripts/ensure-test-tools installs it; without it these tests fail, never skip)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from notifier.cli import parser
from notifier.runtime import Runtime
from notifier.web import create_app
from tests.fakes import FakeTwilio, SMTPSink, free_port, stop, wait_until
from tests.test_eventlog import busy_morning
from tests.test_operations import samples

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "notifier.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("no promtool: run scripts/ensure-test-tools (Debian's prometheus package)")
    return found


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def run(promtool: str, *args: str, given: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, input=given, capture_output=True, text=True
    )


def test_a_scrape_after_sending_failing_and_replying_passes_promtool(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink, promtool: str
) -> None:
    busy_morning(client, rt, fake_twilio, smtp)
    scrape = client.get("/metrics").text
    checked = run(promtool, "check", "metrics", given=scrape)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    got = samples(scrape)

    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted(labels.items()))), 0.0)

    sms_confirmation = {"kind": "confirmation", "channel": "sms"}
    assert value("notifier_messages_total", **sms_confirmation, outcome="failed") == 1
    assert value("notifier_messages_total", **sms_confirmation, outcome="sent") == 1
    assert value("notifier_messages_total", **sms_confirmation, outcome="delivered") == 1
    assert value("notifier_messages_total", kind="manual", channel="sms", outcome="suppressed") == 1
    assert (
        value("notifier_messages_total", kind="reminder", channel="sms", outcome="cancelled") == 2
    )
    for intent in ("confirm", "other", "stop", "start"):
        assert value("notifier_replies_total", intent=intent) == 1, intent
    booked = "appointment.booked"
    assert value("notifier_events_total", type=booked, outcome="applied") == 2
    assert value("notifier_events_total", type=booked, outcome="duplicate") == 1
    assert value("notifier_events_total", type="appointment.rescheduled", outcome="stale") == 1
    assert value("notifier_webhook_signature_failures_total", path="/twilio/status") == 1
    sent = sum(
        v
        for (name, labels), v in got.items()
        if name == "notifier_messages_total" and ("outcome", "sent") in labels
    )
    for histogram in ("notifier_lateness_seconds", "notifier_send_latency_seconds"):
        assert value(f"{histogram}_count") == sent
        assert value(f"{histogram}_bucket", le="+Inf") == sent
        assert f"# TYPE {histogram} histogram" in scrape
    assert value("notifier_send_latency_seconds_bucket", le="1") == sent  # a loopback call
    [version] = [dict(labels)["version"] for name, labels in got if name == "notifier_build_info"]
    assert version and value("notifier_build_info", version=version, process="web") == 1
    assert value("notifier_due_queue_depth") == 0


def test_the_counters_only_grow_between_scrapes(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    first = samples(client.get("/metrics").text)
    busy_morning(client, rt, fake_twilio, smtp)
    second = samples(client.get("/metrics").text)
    for key, before in first.items():
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert second[key] >= before, key


def test_the_alert_rules_are_valid(promtool: str) -> None:
    checked = run(promtool, "check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_rule_passes_its_unit_tests(promtool: str) -> None:
    tested = run(promtool, "test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    covered = {t["alertname"] for case in cases for t in case["alert_rule_test"]}
    assert alerts == covered, "each alert needs a case in alerts_test.yml"
    for case in cases:  # a case that never expects an alert could not fail
        assert (
            any(t["exp_alerts"] for t in case["alert_rule_test"])
            or len(case["alert_rule_test"]) == 1
        )


def test_the_prometheus_config_scrapes_what_the_alerts_watch(promtool: str) -> None:
    checked = run(promtool, "check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    watched = set(re.findall(r'job="([^"]+)"', (PROMETHEUS / "alerts.yml").read_text()))
    assert watched <= jobs
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for job in config["scrape_configs"]:
        names = [t.split(":")[0] for c in job.get("static_configs", []) for t in c["targets"]]
        names += [n for c in job.get("dns_sd_configs", []) for n in c["names"]]
        for name in names:
            assert name in compose, name
            argv = compose[name]["command"]
            if "--metrics-port" in argv:
                port = parser().parse_args(argv).metrics_port
                assert all(c["port"] == port for c in job["dns_sd_configs"])
    mounted = compose["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounted


def test_the_dashboard_graphs_only_metrics_the_service_exposes(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    busy_morning(client, rt, fake_twilio, smtp)
    exposed = {name for name, _ in samples(client.get("/metrics").text)}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bnotifier_\w+", expr)}
    assert used and used <= exposed, used - exposed
    rules = (PROMETHEUS / "alerts.yml").read_text()
    assert set(re.findall(r"\bnotifier_\w+", rules)) <= exposed


def test_every_web_process_answers_the_whole_services_counts(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    """What workers elsewhere did is in the database: a second web process, which sent and
    received nothing itself, answers the same counters as the first."""
    busy_morning(client, rt, fake_twilio, smtp)
    other = Runtime.build(rt.settings, clock=rt.clock)
    try:
        with TestClient(create_app(other)) as elsewhere:
            theirs = samples(elsewhere.get("/metrics").text)
    finally:
        other.engine.dispose()
    ours = samples(client.get("/metrics").text)
    counted = {k: v for k, v in ours.items() if k[0].endswith(("_total", "_bucket", "_count"))}
    assert counted and all(theirs[k] == v for k, v in counted.items())


def test_a_clock_started_with_metrics_port_answers_prometheus(
    tmp_path: Path, promtool: str
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    env |= {
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path}/clock.db",
        "NOTIFIER_BROKER_URL": "redis://127.0.0.1:6379/0",
        "NOTIFIER_QUEUE": f"notifier-liveness-{port}",
        "NOTIFIER_SECRET_KEY": "liveness-test",
    }
    notifier = str(Path(sys.executable).parent / "notifier")
    subprocess.run([notifier, "db", "upgrade"], env=env, check=True, capture_output=True)
    clock = subprocess.Popen(
        [notifier, "scheduler", "--metrics-port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: _scraped(port) is not None, timeout=20)
        scrape = _scraped(port) or ""
    finally:
        stop([clock], timeout=10)
    checked = run(promtool, "check", "metrics", given=scrape)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r'notifier_build_info\{process="scheduler",version="[^"]+"\} 1\.0', scrape)
    assert "process_start_time_seconds" in scrape


def _scraped(port: int) -> str | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
    except httpx.HTTPError:
        return None
    return answer.text if answer.status_code == 200 else None
