"""The clock's claim of 1,000 due rows does not slow down as the future schedule grows.

`notifier.dispatch.claim_due` (limit 1,000) on PostgreSQL with 10k and then 1M pending future
notifications (`--long` adds 10M; `--quick` uses 10k and 200k). Median of several runs; between
runs the claimed rows go back to `scheduled`, their history rows are deleted and the table is
vacuumed, so each run finds the same rows in the same state.

    .venv/bin/python benchmarks/claim_scale.py [--quick] [--long] [--runs 11]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    Figure,
    arguments,
    background_busy,
    bench_clinic,
    connect,
    daytime_zone,
    median,
    plant_future,
    plant_patients,
    postgres_database,
    report,
    say,
    workdir,
)
from notifier import db  # noqa: E402
from notifier.dispatch import claim_due  # noqa: E402

NAME = "claim_scale"
DUE = 1000
TARGET_MS = 20.0
TARGET_RATIO = 1.5
# The claim's row finder, as in states._CLAIM, for EXPLAIN: one range of the index on
# (priority, due_at) per priority.
FIND_DUE = (
    "SELECT d.ctid FROM unnest(ARRAY[0, 1, 2, 3]::smallint[]) AS p (level)"
    " CROSS JOIN LATERAL (SELECT ctid FROM notifications WHERE status = 'scheduled'"
    " AND priority = p.level AND due_at <= %s ORDER BY due_at LIMIT %s"
    " FOR UPDATE SKIP LOCKED) AS d LIMIT %s"
)


def plant_due(conn: Any, count: int) -> None:
    """`count` rows due in the last hour, planted like the future ones, a quarter in each
    priority."""
    conn.execute(
        """
        INSERT INTO notifications (appointment_id, patient_id, kind, channel, slot, ask_confirm,
            planned_for, due_at, expires_at, status, attempts, priority, created_at, updated_at)
        SELECT 'apt-0', 'pat-0', 'reminder', 'sms', 'due:' || g, false, d, d,
               d + interval '2 days', 'scheduled', 0, g %% 4, d, d
        FROM (SELECT g, (now() AT TIME ZONE 'UTC') - random() * interval '1 hour' AS d
              FROM generate_series(1, %s) AS g) AS due
        """,
        (count,),
    )


def measure(url: str, conn: Any, runs: int) -> dict[str, Any]:
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine)
    timings: list[float] = []
    try:
        for run in range(runs + 1):  # the first run warms the pool and the caches
            with sessions() as session:
                now = datetime.now(UTC)
                started = time.perf_counter()
                ids = claim_due(session, now, "bench-clock", limit=DUE)
                elapsed = (time.perf_counter() - started) * 1000
            if len(ids) != DUE:
                raise RuntimeError(f"claimed {len(ids)} rows, expected {DUE}")
            if run:
                timings.append(elapsed)
            reset(conn, ids)
        plan = explain(conn)
    finally:
        engine.dispose()
    return {"runs_ms": [round(t, 2) for t in timings], "median_ms": median(timings), "plan": plan}


def reset(conn: Any, ids: list[int]) -> None:
    conn.execute(
        "UPDATE notifications SET status = 'scheduled', lease_owner = NULL, lease_until = NULL"
        " WHERE id = ANY(%s)",
        (ids,),
    )
    conn.execute("DELETE FROM notification_events WHERE notification_id = ANY(%s)", (ids,))
    conn.execute("VACUUM notifications")


def explain(conn: Any) -> list[str]:
    with conn.transaction():
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + FIND_DUE, (datetime.now(UTC), DUE, DUE)
        ).fetchall()
        conn.execute("ROLLBACK")  # releases the row locks the EXPLAIN ANALYZE took
    return [r[0] for r in rows]


def grow_to(conn: Any, have: int, want: int) -> None:
    started = time.monotonic()
    step = 1_000_000
    for first in range(have, want, step):
        plant_future(conn, min(step, want - first), first_id=first)
    conn.execute("VACUUM ANALYZE notifications")
    say(f"{want:,} future rows ready ({time.monotonic() - started:.0f} s to load)")


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        long={"action": "store_true", "help": "also measure with 10M future rows"},
        runs={"type": int, "default": 11, "help": "measured runs per size (default 11)"},
    )
    background = background_busy()
    sizes = [10_000, 200_000] if args.quick else [10_000, 1_000_000]
    if args.long:
        sizes.append(10_000_000)
    logs = workdir(NAME)
    results: dict[int, dict[str, Any]] = {}
    with postgres_database(bench_clinic(logs)) as url, connect(url) as conn:
        now = datetime.now(UTC)
        plant_patients(conn, 1, now, daytime_zone(now))
        plant_due(conn, DUE)
        have = 0
        for size in sizes:
            grow_to(conn, have, size)
            have = size
            results[size] = measure(url, conn, args.runs)
            say(f"{size:,} future rows: median {results[size]['median_ms']:.1f} ms")
    small, big = sizes[0], sizes[1]
    figures = [
        Figure(
            f"claim_scale median claim of {DUE} due rows, {small:,} future",
            results[small]["median_ms"],
            "ms",
            higher_is_better=False,
        )
    ]
    for size in sizes[1:]:
        figures.append(
            Figure(
                f"claim_scale median claim of {DUE} due rows, {size:,} future",
                results[size]["median_ms"],
                "ms",
                target=TARGET_MS,
                higher_is_better=False,
                baseline=results[small]["median_ms"],
                baseline_label=f"{small:,} future",
                ratio_target=TARGET_RATIO,
            )
        )
    if big != 1_000_000:
        say("note: the targets are set for 1M future rows; --quick measures 200k")
    details = {str(size): r for size, r in results.items()} | {"runs": args.runs}
    report(NAME, figures, details, args.quick, background)


if __name__ == "__main__":
    main()
