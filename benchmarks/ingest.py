"""Booking events per second into `notifier web` on PostgreSQL, and their latency.

`POST /v1/events` (appointment.booked, a distinct appointment and patient each, planning 7
notifications) from 8 concurrent keep-alive clients (asyncio tasks on raw sockets, requests
serialized ahead) against `notifier web --workers N` (default 2: on a 2-core box two processes
beat one). Baseline in the same run: `GET /healthz` at the same concurrency.

    .venv/bin/python benchmarks/ingest.py [--quick] [--events N] [--clients 8] [--web-workers 2]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    CpuMeter,
    Figure,
    Processes,
    arguments,
    background_busy,
    bench_clinic,
    descendants,
    free_port,
    median,
    notifier_env,
    percentile,
    phone,
    postgres_database,
    profiled,
    report,
    say,
    wait_until,
    workdir,
)

NAME = "ingest"
KEY = "bench-key"
TARGET_PER_SECOND = 500.0
TARGET_P99_MS = 50.0
NEW_YORK = ZoneInfo("America/New_York")


def booking(i: int, now: datetime) -> dict[str, Any]:
    start = (now + timedelta(days=3)).astimezone(NEW_YORK).replace(hour=10, minute=0, second=0)
    return {
        "id": f"evt-{i}",
        "type": "appointment.booked",
        "occurred_at": now.isoformat(),
        "appointment": {
            "id": f"apt-{i}",
            "location": "forest-hills",
            "treatment": "botox-cosmetic",
            "provider": "Dr. E. Jacob Simhaee",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
        },
        "patient": {
            "id": f"pat-{i}",
            "first_name": "Ana",
            "last_name": "Ruiz",
            "phone": phone(i),
            "email": f"patient{i}@example.org",
            "language": "en",
            "consent": {"sms": True, "email": True, "marketing": False},
        },
    }


class Answer(NamedTuple):
    status: int
    body: bytes


def request_bytes(method: str, path: str, port: int, body: Any = None) -> bytes:
    """One HTTP/1.1 keep-alive request, serialized ahead of the run so that the clients spend
    their CPU on sending and reading, not on building requests."""
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _client(
    port: int, requests: Iterator[bytes], latencies: list[float], answers: list[Answer]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            body = await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            answers.append(Answer(int(head[9:12]), body))
    finally:
        writer.close()


def load(port: int, clients: int, requests: list[bytes]) -> dict[str, Any]:
    """Sends `requests` over `clients` keep-alive connections, each sending its next request
    when the last is answered (a closed loop, as 8 booking systems would). The clients are
    asyncio tasks on raw sockets: a load generator as lean as wrk's, so that the two cores go
    to the server under test rather than to the clients."""
    shared = iter(requests)
    latencies: list[float] = []
    answers: list[Answer] = []

    async def run() -> None:
        await asyncio.gather(*(_client(port, shared, latencies, answers) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - started
    planned = [len(json.loads(a.body)["notifications"]) for a in answers if a.status == 202]
    return {
        "requests": len(requests),
        "seconds": seconds,
        "per_second": len(requests) / seconds,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "statuses": dict(Counter(a.status for a in answers)),
        "notifications_per_event": median(planned) if planned else 0,
    }


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        events={"type": int, "default": None, "help": "events (default 8000, quick 1600)"},
        clients={"type": int, "default": 8, "help": "concurrent clients (default 8)"},
        web_workers={"type": int, "default": 2, "help": "notifier web processes (default 2)"},
    )
    n = args.events or (1600 if args.quick else 8000)
    clients = args.clients
    workers = args.web_workers
    processes = f"{workers} web process{'es' if workers > 1 else ''}"
    background = background_busy()
    logs = workdir(NAME)
    say(f"{n} events from {clients} clients, {processes}; logs in {logs}")
    clinic = bench_clinic(logs)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with postgres_database(clinic) as url:
        # The load is one key far past any booking system's pace: no per-key limit here.
        env = notifier_env(url, None, None, clinic, NOTIFIER_API_KEYS=KEY, NOTIFIER_API_RATE="1e9")
        with Processes(env, logs) as procs:
            web = procs.notifier("web", "--port", str(port), "--workers", str(workers))
            if not wait_until(lambda: _ready(base_url), timeout=30):
                raise RuntimeError(f"notifier web did not come up; logs in {logs}")
            now = datetime.now(UTC)
            post = [request_bytes("POST", "/v1/events", port, booking(i, now)) for i in range(n)]
            # Warm-up events (their own ids) fill caches and the connection pool first.
            warm = [
                request_bytes("POST", "/v1/events", port, booking(-1 - i, now))
                for i in range(n // 20)
            ]
            load(port, clients, warm)
            cpu = CpuMeter(
                {
                    "notifier web": lambda: descendants(web.pid),
                    "this process (clients)": lambda: [os.getpid()],
                }
            )
            cpu.start()
            with profiled(web.pid, args.profile, logs / "web.pyspy", subprocesses=True):
                events = load(port, clients, post)
            events["cpu_seconds"] = cpu.stop()
            # Steadier than events/s on a shared machine: what each event cost, wherever it ran.
            events["cpu_ms_per_event"] = {
                name: round(1000 * seconds / n, 2)
                for name, seconds in events["cpu_seconds"].items()
                if not name.startswith("machine")
            }
            say(f"events: {events['per_second']:.0f}/s, p99 {events['p99_ms']:.1f} ms")
            say(f"CPU ms per event: {events['cpu_ms_per_event']}")
            health = load(port, clients, [request_bytes("GET", "/healthz", port)] * n)
            say(f"healthz: {health['per_second']:.0f}/s, p99 {health['p99_ms']:.1f} ms")
    figures = [
        Figure(
            f"ingest POST /v1/events ({clients} clients, {n} events, {processes})",
            events["per_second"],
            "req/s",
            target=TARGET_PER_SECOND,
            baseline=health["per_second"],
            baseline_label="GET /healthz, same concurrency",
        ),
        Figure(
            "ingest POST /v1/events p99 latency",
            events["p99_ms"],
            "ms",
            target=TARGET_P99_MS,
            higher_is_better=False,
            baseline=health["p99_ms"],
            baseline_label="GET /healthz p99",
        ),
        Figure(
            "ingest POST /v1/events p50 latency",
            events["p50_ms"],
            "ms",
            higher_is_better=False,
            baseline=health["p50_ms"],
            baseline_label="GET /healthz p50",
        ),
        Figure(
            "ingest notifications planned per event (median)",
            events["notifications_per_event"],
            "rows",
        ),
    ]
    report(
        NAME,
        figures,
        {"events": events, "healthz": health, "web_workers": workers, "logs": str(logs)},
        args.quick,
        background,
    )


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
