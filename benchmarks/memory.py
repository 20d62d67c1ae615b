"""A worker's memory does not grow with the schedule, unlike the tutorial's ETA tasks.

Ours: `notifier worker --concurrency C` and `notifier scheduler`, fresh each time, send a few
due SMS and settle; their RSS (VmRSS of the worker and its pool children) is read with no
pending future notifications and then with 1M (`--quick`: 200k) in PostgreSQL.

Side by side, the public-tutorial approach (`benchmarks/tutorial_app.py`): one Celery task
per reminder with an ETA months ahead, 100k of them (`--quick`: 10k): the RSS of a worker that
has taken them, and Redis' used_memory, as ratios against ours.

    .venv/bin/python benchmarks/memory.py [--quick] [--pending N] [--eta-tasks N]
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    Figure,
    Processes,
    arguments,
    background_busy,
    connect,
    daytime_zone,
    full_stack,
    phone,
    plant_future,
    plant_manual_sms,
    plant_patients,
    report,
    rss_tree_kib,
    say,
    wait_until,
    workdir,
    worker_ready,
)

NAME = "memory"
FEW = 200  # due SMS each of our workers sends before its RSS is read
SETTLE_SECONDS = 3.0
TOLERANCE = 1.10
# What a tutorial's reminder task carries: the phone number (above) and the text.
TUTORIAL_TEXT = (
    "North Shore Skin & Neurology: time to book your next visit at Forest Hills."
    " Call +1 718 555 0117 or reply C to confirm. Reply STOP to opt out."
)


def ours(
    env: dict[str, str], logs: Path, conn: Any, broker: redis.Redis, first: int, c: int
) -> dict[str, Any]:
    """Starts a worker and a clock, has them send FEW messages, and reads their memory."""
    with Processes(env, logs) as procs:
        worker = procs.notifier("worker", "--concurrency", str(c))
        worker_ready(procs, worker)
        clock = procs.notifier("scheduler")
        procs.wait_for_log(clock, "clock started", timeout=30)
        now = datetime.now(UTC)
        plant_manual_sms(conn, [(i, now) for i in range(first, first + FEW)], now)
        peak = 0

        def all_sent() -> bool:
            nonlocal peak
            peak = max(peak, sum(rss_tree_kib(worker.pid).values()))
            row = conn.execute("SELECT count(*) FROM notifications WHERE status = 'sent'")
            return int(row.fetchone()[0]) >= first + FEW

        if not wait_until(all_sent, timeout=120, interval=0.2):
            raise RuntimeError(f"the worker did not send {FEW} messages; logs in {logs}")
        time.sleep(SETTLE_SECONDS)
        worker_rss = rss_tree_kib(worker.pid)
        clock_rss = rss_tree_kib(clock.pid)
        return {
            "worker_rss_kib": sum(worker_rss.values()),
            "worker_rss_by_pid_kib": worker_rss,
            "worker_peak_rss_kib": max(peak, sum(worker_rss.values())),
            "scheduler_rss_kib": sum(clock_rss.values()),
            "redis_used_memory": int(broker.info("memory")["used_memory"]),
        }


def tutorial(env: dict[str, str], logs: Path, broker: redis.Redis, n: int, c: int) -> dict:
    """The tutorial's worker, idle and then holding n ETA tasks; Redis' memory likewise."""
    queue = f"reminders-{os.getpid()}"
    os.environ["NOTIFIER_BROKER_URL"] = env["NOTIFIER_BROKER_URL"]
    os.environ["BENCH_TUTORIAL_QUEUE"] = queue
    app_module = importlib.import_module("benchmarks.tutorial_app")
    broker.flushdb()
    with Processes(env | {"BENCH_TUTORIAL_QUEUE": queue}, logs) as procs:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.tutorial_app",
            "worker",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            f"--concurrency={c}",
        ]
        worker = procs.start(argv, "tutorial-worker")
        worker_ready(procs, worker)
        time.sleep(SETTLE_SECONDS)
        idle_rss = sum(rss_tree_kib(worker.pid).values())
        idle_used = int(broker.info("memory")["used_memory"])
        now = datetime.now(UTC)
        started = time.monotonic()
        with app_module.app.producer_or_acquire() as producer:
            for i in range(n):
                app_module.send_reminder.apply_async(
                    args=[phone(i), TUTORIAL_TEXT],
                    eta=now + timedelta(days=1 + i % 120),
                    producer=producer,
                )
        say(f"enqueued {n:,} ETA tasks in {time.monotonic() - started:.0f} s")

        def all_taken() -> bool:
            return broker.llen(queue) == 0 and broker.hlen("unacked") >= n

        taken = wait_until(all_taken, timeout=120 + n / 200, interval=0.5)
        time.sleep(SETTLE_SECONDS)
        rss = rss_tree_kib(worker.pid)
        used = int(broker.info("memory")["used_memory"])
        held = int(broker.hlen("unacked"))
        # On a warm shutdown the worker would hand its reserved tasks back one by one.
        worker.kill()
        worker.wait()
    return {
        "eta_tasks": n,
        "all_taken_by_worker": taken,
        "unacked_in_redis": held,
        "worker_rss_kib": sum(rss.values()),
        "worker_rss_by_pid_kib": rss,
        "worker_rss_idle_kib": idle_rss,
        "worker_rss_growth_per_task_bytes": (sum(rss.values()) - idle_rss) * 1024 / n,
        "redis_used_memory": used,
        "redis_used_memory_idle": idle_used,
        "redis_growth_per_task_bytes": (used - idle_used) / n,
    }


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        pending={"type": int, "default": None, "help": "future rows (default 1M, quick 200k)"},
        eta_tasks={"type": int, "default": None, "help": "ETA tasks (default 100k, quick 10k)"},
        concurrency={"type": int, "default": 2, "help": "worker processes (default 2)"},
    )
    pending = args.pending or (200_000 if args.quick else 1_000_000)
    eta_tasks = args.eta_tasks or (10_000 if args.quick else 100_000)
    c = args.concurrency
    background = background_busy()
    logs = workdir(NAME)
    say(f"logs in {logs}")
    with full_stack(logs) as (url, server, _, env), connect(url) as conn:
        broker = redis.Redis.from_url(server.url)
        now = datetime.now(UTC)
        plant_patients(conn, 2 * FEW, now, daytime_zone(now))
        empty = ours(env, logs, conn, broker, 0, c)
        say(f"no pending: worker RSS {empty['worker_rss_kib'] / 1024:.1f} MiB")
        started = time.monotonic()
        plant_future(conn, pending)
        conn.execute("VACUUM ANALYZE notifications")
        say(f"{pending:,} future rows planted in {time.monotonic() - started:.0f} s")
        full = ours(env, logs, conn, broker, FEW, c)
        say(f"{pending:,} pending: worker RSS {full['worker_rss_kib'] / 1024:.1f} MiB")
        eta = tutorial(env, logs, broker, eta_tasks, c)
        say(
            f"tutorial, {eta_tasks:,} ETA tasks: worker RSS {eta['worker_rss_kib'] / 1024:.1f}"
            f" MiB (idle {eta['worker_rss_idle_kib'] / 1024:.1f} MiB)"
        )
    mib = 1024
    figures = [
        Figure(
            f"memory: our worker RSS ({c} procs), {pending:,} pending",
            full["worker_rss_kib"] / mib,
            "MiB",
            higher_is_better=False,
            baseline=empty["worker_rss_kib"] / mib,
            baseline_label="none pending",
            ratio_target=TOLERANCE,
        ),
        Figure(
            f"memory: our scheduler RSS, {pending:,} pending",
            full["scheduler_rss_kib"] / mib,
            "MiB",
            higher_is_better=False,
            baseline=empty["scheduler_rss_kib"] / mib,
            baseline_label="none pending",
            ratio_target=TOLERANCE,
        ),
        Figure(
            f"memory: tutorial worker RSS, {eta_tasks:,} ETA tasks",
            eta["worker_rss_kib"] / mib,
            "MiB",
            higher_is_better=False,
            baseline=full["worker_rss_kib"] / mib,
            baseline_label=f"ours, {pending:,} pending",
        ),
        Figure(
            f"memory: tutorial Redis used_memory, {eta_tasks:,} ETA tasks",
            eta["redis_used_memory"] / 2**20,
            "MiB",
            higher_is_better=False,
            baseline=full["redis_used_memory"] / 2**20,
            baseline_label=f"ours, {pending:,} pending",
        ),
    ]
    details = {"ours_none_pending": empty, "ours_pending": full, "tutorial": eta}
    report(NAME, figures, details | {"pending": pending, "logs": str(logs)}, args.quick, background)


if __name__ == "__main__":
    main()
