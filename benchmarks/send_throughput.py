"""Due SMS per second through the whole production path, against a Celery no-op.

Ours: N due manual SMS rows → `notifier scheduler` (claim, enqueue ids) → Redis → `notifier
worker --concurrency C` (re-check, render, twilio SDK) → the fake Twilio → `sent`. Timed from
the first batch a worker took (its `sending` history row) to the last `sent_at`, both stamped
by the processes.

Baseline, same run, same broker, same worker settings and pool size: one Celery no-op task per
message (`benchmarks/noop_app.py`), N tasks enqueued before the worker starts, timed from the
first task run to the last.

    .venv/bin/python benchmarks/send_throughput.py [--quick] [--messages N] [--concurrency C]
        [--send-concurrency T] [--provider-latency SECONDS] [--profile [wall|cpu]]
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    CpuMeter,
    Figure,
    Processes,
    arguments,
    background_busy,
    connect,
    cpu_seconds,
    daytime_zone,
    descendants,
    full_stack,
    plant_manual_sms,
    plant_patients,
    profiled,
    report,
    say,
    wait_until,
    workdir,
    worker_ready,
)
from tests.fakes.twilio import FakeTwilio  # noqa: E402

NAME = "send_throughput"
TARGET_PER_SECOND = 1000.0


def ours(
    url: str,
    env: dict[str, str],
    fake: FakeTwilio,
    logs: Path,
    n: int,
    c: int,
    redis_pid: int,
    profile: str | None = None,
    latency: float = 0.0,
) -> dict:
    with Processes(env, logs) as procs, connect(url) as conn:
        worker = procs.notifier("worker", "--concurrency", str(c))
        worker_ready(procs, worker)
        clock = procs.notifier("scheduler")
        procs.wait_for_log(clock, "clock started", timeout=30)
        now = datetime.now(UTC)
        with conn.transaction():  # the clock sees all rows at once
            plant_patients(conn, n, now, daytime_zone(now))
            plant_manual_sms(conn, [(i, now - timedelta(seconds=1)) for i in range(n)], now)
        say(f"planted {n} due SMS; waiting for them to be sent")
        cpu = CpuMeter(
            {
                "worker (main + pool)": lambda: descendants(worker.pid),
                "scheduler": lambda: [clock.pid],
                "redis-server": lambda: [redis_pid],
                "this process (fake Twilio, polling)": lambda: [os.getpid()],
            }
        )
        cpu.start()
        started = time.monotonic()

        def sent() -> int:
            return int(_one(conn, "SELECT count(*) FROM notifications WHERE status = 'sent'"))

        patience = 60 + n / 50 + n * latency / c
        with profiled(worker.pid, profile, logs / "worker.pyspy", subprocesses=True):
            done = wait_until(lambda: sent() >= n, timeout=patience, interval=0.2)
        wall = time.monotonic() - started
        cpu_used = cpu.stop()
        time.sleep(1.5)  # let any duplicate reach the fake before counting
        first_claim = _one(conn, "SELECT min(at) FROM notification_events WHERE status = 'sending'")
        last_sent = _one(conn, "SELECT max(sent_at) FROM notifications")
        statuses = dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY 1"))
    seconds = (last_sent - first_claim).total_seconds() if done else wall
    to = Counter(m["to"] for m in fake.messages)
    return {
        "complete": done,
        "messages": n,
        "seconds": seconds,
        "wall_seconds_polled": wall,
        "per_second": (statuses.get("sent", 0)) / seconds,
        "statuses": statuses,
        "accepted_by_fake": len(fake.messages),
        "distinct_to": len(to),
        "duplicate_to": sum(k - 1 for k in to.values() if k > 1),
        "cpu_seconds": cpu_used,
    }


def _one(conn: Any, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


def baseline(env: dict[str, str], logs: Path, n: int, c: int) -> dict:
    # celeryconfig reads the environment when imported: make it this run's broker and queue.
    os.environ["NOTIFIER_BROKER_URL"] = env["NOTIFIER_BROKER_URL"]
    os.environ["NOTIFIER_QUEUE"] = env["NOTIFIER_QUEUE"] + "-noop"
    import celeryconfig

    importlib.reload(celeryconfig)
    noop_app = importlib.import_module("benchmarks.noop_app")
    counter = noop_app.counter()
    counter.delete(noop_app.COUNTER, noop_app.COUNTER + ":first", noop_app.COUNTER + ":last")
    enqueue_started = time.monotonic()
    with noop_app.app.producer_or_acquire() as producer:
        for i in range(n):
            noop_app.noop.apply_async(args=[i], producer=producer)
    enqueue_seconds = time.monotonic() - enqueue_started
    say(f"enqueued {n} no-op tasks in {enqueue_seconds:.1f} s; starting the no-op worker")
    worker_env = env | {
        "NOTIFIER_QUEUE": os.environ["NOTIFIER_QUEUE"],
        "BENCH_NOOP_TOTAL": str(n),
    }
    with Processes(worker_env, logs) as procs:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.noop_app",
            "worker",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            f"--concurrency={c}",
        ]
        worker = procs.start(argv, "noop-worker")
        done = wait_until(
            lambda: int(counter.get(noop_app.COUNTER) or 0) >= n,
            timeout=60 + n / 50,
            interval=0.2,
        )
        cpu = cpu_seconds(descendants(worker.pid))
    executed = int(counter.get(noop_app.COUNTER) or 0)
    first = float(counter.get(noop_app.COUNTER + ":first") or 0)
    last = float(counter.get(noop_app.COUNTER + ":last") or 0)
    seconds = last - first if done else float("nan")
    return {
        "complete": done,
        "executed": executed,
        "seconds": seconds,
        "per_second": executed / seconds if done else 0.0,
        "enqueue_seconds": enqueue_seconds,
        "worker_cpu_seconds_incl_startup": cpu,
    }


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        messages={"type": int, "default": None, "help": "messages (default 20000, quick 2000)"},
        concurrency={"type": int, "default": 2, "help": "worker processes (default 2)"},
        send_concurrency={
            "type": int,
            "default": None,
            "help": "NOTIFIER_SEND_CONCURRENCY: provider calls in flight per worker process"
            " (default: notifier's own)",
        },
        provider_latency={
            "type": float,
            "default": 0.0,
            "help": "seconds the fake Twilio takes to answer each message (default 0; the real"
            " API takes 0.1-0.3 s); use with a small --messages",
        },
    )
    n = args.messages or (2000 if args.quick else 20000)
    c = args.concurrency
    latency = args.provider_latency
    background = background_busy()
    logs = workdir(NAME)
    say(f"{n} messages, worker concurrency {c}; logs in {logs}")
    with full_stack(logs) as (url, broker, fake, env):
        if args.send_concurrency:
            env["NOTIFIER_SEND_CONCURRENCY"] = str(args.send_concurrency)
        if latency:
            # Every create waits this long, then succeeds: the fake's "hang" fault.
            fake.chaos(error_rate=0, hang_rate=1.0, drop_rate=0, hang_seconds=latency)
        mine = ours(url, env, fake, logs, n, c, broker.pid, args.profile, latency)
        say(f"notifier: {mine['per_second']:.0f} msg/s ({mine['statuses']})")
        base = baseline(env, logs, n, c)
        say(f"no-op Celery: {base['per_second']:.0f} msg/s")
    problems = abs(mine["accepted_by_fake"] - n) + mine["duplicate_to"]
    figures = [
        Figure(
            f"send_throughput ({n} SMS, {c} worker procs"
            + (f", provider latency {latency:g} s)" if latency else ")"),
            mine["per_second"],
            "msg/s",
            target=TARGET_PER_SECOND,
            baseline=base["per_second"],
            baseline_label="Celery no-op task per message",
            ratio_target=1.0,
        ),
        Figure(
            "send_throughput exactly-once (missing + duplicate at the fake)",
            problems,
            "messages",
            target=0,
            higher_is_better=False,
            note=f"accepted {mine['accepted_by_fake']}, distinct to {mine['distinct_to']}",
        ),
    ]
    report(
        NAME, figures, {"ours": mine, "baseline": base, "logs": str(logs)}, args.quick, background
    )


if __name__ == "__main__":
    main()
