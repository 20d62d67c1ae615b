"""How late messages leave under a steady stream of due SMS.

Rows due at 200 a second for 60 s (`--quick`: 15 s) are planted ahead of time with their
`due_at` spread evenly over the window; `notifier scheduler` and `notifier worker
--concurrency C` send them to the fake Twilio. Lateness is the fake's `received_at` minus the
row's `due_at`. The baseline is the floor the clock itself sets: a row that falls due just after
a tick waits for the next one (`dispatch.TICK_SECONDS`).

    .venv/bin/python benchmarks/timeliness.py [--quick] [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import sys
import time
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
    daytime_zone,
    descendants,
    full_stack,
    percentile,
    phone,
    plant_manual_sms,
    plant_patients,
    profiled,
    report,
    say,
    wait_until,
    workdir,
    worker_ready,
)
from notifier.dispatch import TICK_SECONDS  # noqa: E402

NAME = "timeliness"
TARGET_P99_SECONDS = 2.0
LEAD_SECONDS = 3.0  # the first row falls due this long after the rows are planted


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        rate={"type": float, "default": 200.0, "help": "due messages a second (default 200)"},
        seconds={"type": float, "default": None, "help": "stream length (default 60, quick 15)"},
        concurrency={"type": int, "default": 2, "help": "worker processes (default 2)"},
    )
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    n = int(args.rate * seconds)
    background = background_busy()
    logs = workdir(NAME)
    say(f"{n} SMS due at {args.rate:.0f}/s over {seconds:.0f} s; logs in {logs}")
    with full_stack(logs) as (url, broker, fake, env), connect(url) as conn:
        now = datetime.now(UTC)
        plant_patients(conn, n, now, daytime_zone(now + timedelta(seconds=seconds)))
        with Processes(env, logs) as procs:
            worker = procs.notifier("worker", "--concurrency", str(args.concurrency))
            worker_ready(procs, worker)
            clock = procs.notifier("scheduler")
            procs.wait_for_log(clock, "clock started", timeout=30)
            first_due = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
            due = {i: first_due + timedelta(seconds=i / args.rate) for i in range(n)}
            plant_manual_sms(conn, list(due.items()), datetime.now(UTC))
            cpu = CpuMeter(
                {
                    "worker (main + pool)": lambda: descendants(worker.pid),
                    "scheduler": lambda: [clock.pid],
                    "redis-server": lambda: [broker.pid],
                }
            )
            cpu.start()
            with profiled(worker.pid, args.profile, logs / "worker.pyspy", subprocesses=True):
                done = wait_until(
                    lambda: len(fake.messages) >= n, timeout=LEAD_SECONDS + seconds + 120
                )
            cpu_used = cpu.stop()
        time.sleep(1.0)
        by_phone = {phone(i): i for i in range(n)}
        lateness = [m["received_at"] - due[by_phone[m["to"]]].timestamp() for m in fake.messages]
        statuses = dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY 1"))
        # Where the lateness comes from: the way to a worker (the clock's tick, the claim,
        # Redis), then the worker's own part (render, rate limit, the provider call).
        taken = {
            int(slot.removeprefix("bench:")): at.replace(tzinfo=UTC).timestamp()
            for slot, at in conn.execute(
                "SELECT n.slot, min(e.at) FROM notification_events e"
                " JOIN notifications n ON n.id = e.notification_id"
                " WHERE e.status = 'sending' GROUP BY n.slot"
            )
        }
        to_worker = [taken[i] - at.timestamp() for i, at in due.items() if i in taken]
        to_provider = [
            m["received_at"] - taken[by_phone[m["to"]]]
            for m in fake.messages
            if by_phone[m["to"]] in taken
        ]
    stats: dict[str, Any] = {
        "messages": n,
        "received": len(lateness),
        "complete": done,
        "p50_s": percentile(lateness, 50),
        "p95_s": percentile(lateness, 95),
        "p99_s": percentile(lateness, 99),
        "max_s": max(lateness),
        "early": sum(x < 0 for x in lateness),
        "due_to_worker_p50_p99_max_s": _spread(to_worker),
        "worker_to_provider_p50_p99_max_s": _spread(to_provider),
        "statuses": statuses,
        "cpu_seconds": cpu_used,
    }
    say(f"due → taken by a worker p50/p99/max: {stats['due_to_worker_p50_p99_max_s']} s")
    say(f"taken → provider p50/p99/max: {stats['worker_to_provider_p50_p99_max_s']} s")
    say(
        f"lateness p50 {stats['p50_s']:.2f} s, p95 {stats['p95_s']:.2f} s,"
        f" p99 {stats['p99_s']:.2f} s, max {stats['max_s']:.2f} s"
    )
    floor = TICK_SECONDS * 0.99
    label = f"{TICK_SECONDS:g} s clock tick"
    figures = [
        Figure(
            f"timeliness p99 lateness ({args.rate:.0f}/s for {seconds:.0f} s)",
            stats["p99_s"],
            "s",
            target=TARGET_P99_SECONDS,
            higher_is_better=False,
            baseline=floor,
            baseline_label=f"p99 floor of the {label}",
        ),
        Figure(
            "timeliness p50 lateness",
            stats["p50_s"],
            "s",
            higher_is_better=False,
            baseline=TICK_SECONDS / 2,
            baseline_label=f"p50 floor of the {label}",
        ),
        Figure("timeliness p95 lateness", stats["p95_s"], "s", higher_is_better=False),
        Figure("timeliness max lateness", stats["max_s"], "s", higher_is_better=False),
        Figure(
            "timeliness messages not received",
            n - stats["received"],
            "messages",
            target=0,
            higher_is_better=False,
        ),
    ]
    report(NAME, figures, {"stream": stats, "logs": str(logs)}, args.quick, background)


def _spread(values: list[float]) -> list[float]:
    return [
        round(percentile(values, 50), 3),
        round(percentile(values, 99), 3),
        round(max(values), 3),
    ]


if __name__ == "__main__":
    main()
