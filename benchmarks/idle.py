"""What an idle stack costs: CPU and memory with nothing due.

Two stacks side by side over the same window: `notifier serve` (one process, SQLite, the
clock in-process) in a fresh directory, and the full stack on PostgreSQL and Redis (`notifier
web`, `notifier worker --concurrency 2`, `notifier scheduler`). Each process's CPU is read
from /proc at the start and the end of the window; PostgreSQL's is that of the backends
connected to the stack's own database. The target: under 1% of one core for each stack.

    .venv/bin/python benchmarks/idle.py [--seconds 60]   # --seconds 600: the issue's 10 minutes
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    NOTIFIER,
    Figure,
    Processes,
    arguments,
    background_busy,
    connect,
    cpu_seconds,
    descendants,
    free_port,
    full_stack,
    report,
    rss_tree_kib,
    say,
    wait_until,
    workdir,
    worker_ready,
)

NAME = "idle"
TARGET_PERCENT = 1.0
SETTLE_SECONDS = 10.0  # after start: migrations, first ticks, Celery's first heartbeats


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _backends(conn: Any) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    return [int(r[0]) for r in rows]


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        seconds={"type": float, "default": None, "help": "window (default 60, quick 20)"},
    )
    window = args.seconds or (20.0 if args.quick else 60.0)
    background = background_busy()
    logs = workdir(NAME)
    say(f"idle for {window:.0f} s after {SETTLE_SECONDS:.0f} s to settle; logs in {logs}")
    serve_dir = Path(tempfile.mkdtemp(prefix="notifier-bench-idle-serve-"))
    serve_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    port = free_port()
    with (
        full_stack(logs) as (url, broker, _fake, env),
        connect(url) as conn,
        Processes(env, logs) as procs,
    ):
        serve_log = (logs / "serve.log").open("wb")
        serve = subprocess.Popen(
            [*NOTIFIER, "serve", "--port", str(port)],
            env=serve_env,
            cwd=serve_dir,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
        )
        procs.running.append(serve)
        web = procs.notifier("web", "--port", str(free_port()))
        worker = procs.notifier("worker", "--concurrency", "2")
        worker_ready(procs, worker)
        clock = procs.notifier("scheduler")
        procs.wait_for_log(clock, "clock started", timeout=30)
        if not wait_until(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), timeout=60):
            raise RuntimeError("notifier serve did not get ready")
        time.sleep(SETTLE_SECONDS)
        groups = {
            "serve": lambda: descendants(serve.pid),
            "web": lambda: descendants(web.pid),
            "worker (main + pool)": lambda: descendants(worker.pid),
            "scheduler": lambda: [clock.pid],
            "postgresql (the stack's backends)": lambda: _backends(conn),
            "redis-server": lambda: [broker.pid],
        }
        load = Path("/proc/loadavg").read_text().split()[:3]
        pids = {name: list(pids()) for name, pids in groups.items()}
        before = {name: cpu_seconds(p) for name, p in pids.items()}
        started = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - started
        after = {name: cpu_seconds(p) for name, p in pids.items()}
        rss = {
            name: round(sum(rss_tree_kib(p[0]).values()) / 1024, 1) if p else 0.0
            for name, p in pids.items()
            if not name.startswith("postgresql")
        }
        serve_log.close()
    percent = {name: round(100 * (after[n] - before[n]) / elapsed, 3) for n, name in
               zip(groups, groups, strict=True)}  # fmt: skip
    stack = ("web", "worker (main + pool)", "scheduler", "postgresql (the stack's backends)",
             "redis-server")  # fmt: skip
    full = sum(percent[n] for n in stack)
    for name, value in percent.items():
        say(f"{name}: {value:.2f}% of a core, {rss.get(name, '-')} MiB")
    figures = [
        Figure(
            f"idle notifier serve CPU ({window:.0f} s)",
            percent["serve"],
            "% of a core",
            target=TARGET_PERCENT,
            higher_is_better=False,
        ),
        Figure("idle notifier serve RSS", rss["serve"], "MiB", higher_is_better=False),
        Figure(
            "idle full stack CPU (web, worker, scheduler, PostgreSQL, Redis)",
            full,
            "% of a core",
            target=TARGET_PERCENT,
            higher_is_better=False,
        ),
    ]
    figures += [
        Figure(f"idle {name} CPU", percent[name], "% of a core", higher_is_better=False)
        for name in stack
    ]
    details = {"percent_of_a_core": percent, "rss_mib": rss, "window_s": elapsed,
               "loadavg_before": load, "logs": str(logs)}  # fmt: skip
    report(NAME, figures, details, args.quick, background)


if __name__ == "__main__":
    main()
