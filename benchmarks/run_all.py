"""Runs every benchmark, one after the other, and prints one table of all their figures.

    .venv/bin/python benchmarks/run_all.py [--quick] [--long] [--only NAME[,NAME…]]

Each benchmark runs as its own process (as `benchmarks/<name>.py`) and writes
`benchmarks/results/<name>.json`; this script adds `benchmarks/results/run_all.json` and prints
the table as Markdown, ready for docs/performance.md. Missed targets do not fail the run (these
are measurements, not tests); a benchmark that crashes does (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import RESULTS, busy_percent, machine, wait_until  # noqa: E402

# The order of the performance targets in docs/performance.md.
BENCHMARKS = (
    "send_throughput",
    "claim_scale",
    "memory",
    "ingest",
    "timeliness",
    "embedded_start",
    "morning_burst",
    "idle",
)
HEADER = ("name", "figure", "target", "baseline", "ratio", "pass/miss")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's small sizes")
    parser.add_argument("--long", action="store_true", help="claim_scale also at 10M rows")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each benchmark, wait up to SECONDS for the machine to be idle (<15%% busy)",
    )
    args = parser.parse_args()
    chosen = [b for b in args.only.split(",") if b] or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    rows: list[list[str]] = []
    runs: dict[str, dict[str, object]] = {}
    for name in chosen:
        argv = [sys.executable, str(HERE / f"{name}.py")]
        if args.quick:
            argv.append("--quick")
        if args.long and name == "claim_scale":
            argv.append("--long")
        print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
        if args.wait_quiet and not wait_until(lambda: busy_percent(2.0) < 15, args.wait_quiet):
            print(f"the machine stayed busy for {args.wait_quiet:.0f} s; running anyway")
        result = RESULTS / f"{name}.json"
        result.unlink(missing_ok=True)  # no stale figures in this run's table
        started = time.monotonic()
        status = subprocess.run(argv).returncode
        seconds = round(time.monotonic() - started, 1)
        if status == 0 and result.exists():
            measured = json.loads(result.read_text())
            rows.extend(f["cells"] for f in measured["figures"])
            busy = measured["background_busy_percent_before_start"]
            runs[name] = {"status": "ok", "seconds": seconds, "busy_before": busy}
        else:
            rows.append([name, "crashed", "-", "-", "-", "ERROR"])
            runs[name] = {"status": f"exit {status}", "seconds": seconds}
    about = machine()
    summary = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": about,
        "runs": runs,
        "table": [list(HEADER), *rows],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_all.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + markdown(rows, about, runs))
    return 0 if all(r["status"] == "ok" for r in runs.values()) else 1


def markdown(rows: list[list[str]], about: dict[str, object], runs: dict) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
        "",
        f"Machine: {about['nproc']} cores ({about['cpu']}), {about['ram_gib']} GiB RAM,"
        f" PostgreSQL {about['postgresql']}, Redis {about['redis']}, Python {about['python']},"
        f" kernel {about['kernel']}.",
        "Run times (and how busy the machine was just before each started): "
        + ", ".join(
            f"{name} {r['seconds']} s ({r.get('busy_before', '?')}% busy)"
            for name, r in runs.items()
        )
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
