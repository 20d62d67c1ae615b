"""`notifier web --workers 2`: several processes on one port, each with its own database
connections and its own share of the connections, answers as quick as one process gives them,
and a process that dies is replaced."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink, free_port, wait_until
from tests.test_processes import AUTH, NOTIFIER, _healthy, stack_env

assert sys.platform == "linux", "these tests read /proc"  # as SO_REUSEPORT's spreading needs


class Web:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def children(self) -> list[int]:
        """The web processes (not multiprocessing's resource tracker)."""
        found = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [
            int(pid)
            for pid in found.split()
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    def started(self) -> int:
        return self.log.read_text().count("Application startup complete")


@pytest.fixture
def web(
    postgres_url: str, fake_twilio: FakeTwilio, smtp: SMTPSink, tmp_path: Path
) -> Iterator[Web]:
    env = stack_env(postgres_url, fake_twilio, smtp, tmp_path)  # migrated and emptied
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*NOTIFIER, "web", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Web(process, port, log)
    try:
        assert wait_until(lambda: running.started() == 2, timeout=30), log.read_text()
        assert _healthy(running.url), log.read_text()
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"notifier web --workers 2 did not stop on SIGTERM\n{log.read_text()}")


def test_two_web_processes_share_the_port_and_keep_answers_quick(web: Web) -> None:
    with httpx.Client(base_url=web.url, headers=AUTH, timeout=10) as http:
        visit = new_york(2030, 12, 3, 10, 0)
        booked = event("booked", visit, occurred_at=new_york(2030, 11, 30, 8, 55))
        answer = http.post("/v1/events", json=booked)
        assert answer.status_code == 202, answer.text
        assert answer.json()["notifications"]
        assert http.get(f"/v1/appointments/{booked['appointment']['id']}").status_code == 200
        # Keep-alive requests one after the other: without TCP_NODELAY on the listening
        # socket each would wait ~40 ms for the client's delayed ACK.
        took = []
        for _ in range(30):
            started = time.perf_counter()
            assert http.get("/healthz").status_code == 200
            took.append(time.perf_counter() - started)
    assert statistics.median(took) < 0.02, took


def test_connections_opened_at_once_are_spread_over_the_processes(web: Web) -> None:
    # Sixteen clients connecting together, as booking systems after a network blip: with one
    # shared listening socket the first process to wake accepted them all.
    clients = [httpx.Client(base_url=web.url, timeout=10) for _ in range(16)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        held = {pid: _established(pid, web.port) for pid in web.children()}
    finally:
        for client in clients:
            client.close()
    assert len(held) == 2 and sum(held.values()) == 16, held
    assert min(held.values()) >= 2, held


def test_a_web_process_that_dies_is_replaced(web: Web) -> None:
    first, second = web.children()
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: web.started() == 3, timeout=30), web.log.read_text()
    assert second in web.children() and first not in web.children()
    assert "died (exit -9); starting another" in web.log.read_text()
    assert _healthy(web.url)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path}/n.db"}
        env["NOTIFIER_SECRET_KEY"] = "test-secret"
        subprocess.run([*NOTIFIER, "db", "upgrade"], env=env, check=True, timeout=60)
        run = subprocess.run(
            [*NOTIFIER, "web", "--port", str(port), "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    assert f"notifier web: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        run.stderr
    )


def _established(pid: int, port: int) -> int:
    """How many established connections to `port` the process holds."""
    inodes = {
        target.removeprefix("socket:[").removesuffix("]")
        for fd in Path(f"/proc/{pid}/fd").iterdir()
        if (target := os.readlink(fd)).startswith("socket:")
    }
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rpartition(":")[2], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count
