"""`notifier web --workers 2`: several processes on one port, each with its own database
connections, and answers as quick as one process gives them."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink, free_port, wait_until
from tests.test_processes import AUTH, NOTIFIER, _healthy, stack_env


def test_two_web_processes_share_the_port_and_keep_answers_quick(
    postgres_url: str, fake_twilio: FakeTwilio, smtp: SMTPSink, tmp_path: Path
) -> None:
    env = stack_env(postgres_url, fake_twilio, smtp, tmp_path)  # migrated and emptied
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            [*NOTIFIER, "web", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def both_started() -> bool:
            return log.read_text().count("Application startup complete") == 2

        assert wait_until(both_started, timeout=30), log.read_text()
        assert _healthy(url), log.read_text()
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
            visit = new_york(2030, 12, 3, 10, 0)
            booked = event("booked", visit, occurred_at=new_york(2030, 11, 30, 8, 55))
            answer = http.post("/v1/events", json=booked)
            assert answer.status_code == 202, answer.text
            assert answer.json()["notifications"]
            assert http.get(f"/v1/appointments/{booked['appointment']['id']}").status_code == 200
            # Keep-alive requests one after the other: without TCP_NODELAY on the shared
            # socket each would wait ~40 ms for the client's delayed ACK.
            took = []
            for _ in range(30):
                started = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                took.append(time.perf_counter() - started)
        assert statistics.median(took) < 0.02, took
    finally:
        web.terminate()
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:
            web.kill()
            pytest.fail(f"notifier web --workers 2 did not stop on SIGTERM\n{log.read_text()}")
