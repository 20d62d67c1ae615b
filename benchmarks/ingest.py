"""Booking events per second into `notifier web` on PostgreSQL, and their latency.

`POST /v1/events` (appointment.booked, a distinct appointment and patient each, planning 7
notifications) from 8 concurrent clients (threads, one httpx client each) against `notifier web
--workers N` (default 2: on a 2-core box two processes beat one). Baseline in the same run:
`GET /healthz` at the same concurrency.

    .venv/bin/python benchmarks/ingest.py [--quick] [--events N] [--clients 8] [--web-workers 2]
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
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


def load(
    base_url: str,
    clients: int,
    count: int,
    request: Callable[[httpx.Client, int], httpx.Response],
) -> dict[str, Any]:
    """`count` requests from `clients` threads; each thread takes the next number when free."""
    numbers = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    planned: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
            while True:
                with lock:
                    i = next(numbers)
                if i >= count:
                    return
                started = time.perf_counter()
                answer = request(http, i)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed * 1000)
                    statuses[answer.status_code] += 1
                    if answer.status_code == 202:
                        planned.append(len(answer.json()["notifications"]))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {
        "requests": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "statuses": dict(statuses),
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
        env = notifier_env(url, None, None, clinic, NOTIFIER_API_KEYS=KEY)
        with Processes(env, logs) as procs:
            web = procs.notifier("web", "--port", str(port), "--workers", str(workers))
            if not wait_until(lambda: _ready(base_url), timeout=30):
                raise RuntimeError(f"notifier web did not come up; logs in {logs}")
            now = datetime.now(UTC)
            warm = n // 20
            # Warm-up events (their own ids) fill caches and the connection pool first.
            load(
                base_url,
                clients,
                warm,
                lambda h, i: h.post("/v1/events", json=booking(-1 - i, now)),
            )
            cpu = CpuMeter(
                {
                    "notifier web": lambda: descendants(web.pid),
                    "this process (clients)": lambda: [os.getpid()],
                }
            )
            cpu.start()
            with profiled(web.pid, args.profile, logs / "web.pyspy", subprocesses=True):
                events = load(
                    base_url, clients, n, lambda h, i: h.post("/v1/events", json=booking(i, now))
                )
            events["cpu_seconds"] = cpu.stop()
            # Steadier than events/s on a shared machine: what each event cost, wherever it ran.
            events["cpu_ms_per_event"] = {
                name: round(1000 * seconds / n, 2)
                for name, seconds in events["cpu_seconds"].items()
                if not name.startswith("machine")
            }
            say(f"events: {events['per_second']:.0f}/s, p99 {events['p99_ms']:.1f} ms")
            say(f"CPU ms per event: {events['cpu_ms_per_event']}")
            health = load(base_url, clients, n, lambda h, i: h.get("/healthz"))
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
