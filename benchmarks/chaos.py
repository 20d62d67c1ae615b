"""The long chaos run: N due texts (20,000 by default) out of a network of clinic locations,
each sender number at the default 1 text a second, and due emails (a quarter as many), through
two clocks and Celery workers while processes are SIGKILLed, Redis is crashed and the fake
Twilio errs, hangs and drops. Prints the figures (duplicates and losses of both channels, email
copies against the bound of emails in flight, the texts' drain time) and writes them to
benchmarks/results/chaos.json.

    .venv/bin/python benchmarks/chaos.py --n 20000

Needs PostgreSQL on 127.0.0.1:5432 (NOTIFIER_TEST_POSTGRES_URL) and redis-server on PATH; it
starts a Redis of its own and never touches a shared one. Exits 1 if a text was sent twice, a
message lost or left pending, or an email sent again with another Message-ID or more often than
the killed workers had emails in flight.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness lives in tests/, which is no installed package

from tests.chaos import ChaosPlan, ServiceMissing, run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "chaos.json"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="due texts (default 20000)")
    parser.add_argument("--emails", type=int, default=None, help="due emails (default n / 4)")
    parser.add_argument(
        "--senders",
        type=int,
        default=None,
        help="locations, a sender number each (default n / 100)",
    )
    parser.add_argument(
        "--send-concurrency", type=int, default=4, help="NOTIFIER_SEND_CONCURRENCY (default 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes, 2 each")
    parser.add_argument("--seed", type=int, default=None, help="replays a run's faults")
    parser.add_argument("--chaos-seconds", type=float, default=900, help="monkey's time limit")
    parser.add_argument("--settle-seconds", type=float, default=300)
    parser.add_argument(
        "--queue-lease", type=float, default=30, help="NOTIFIER_QUEUE_LEASE_SECONDS (default 30)"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep process logs here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    plan = ChaosPlan(
        n=args.n,
        emails=args.n // 4 if args.emails is None else args.emails,
        senders=args.senders or max(1, args.n // 100),
        send_concurrency=args.send_concurrency,
        workers=args.workers,
        chaos_seconds=args.chaos_seconds,
        settle_seconds=args.settle_seconds,
        queue_lease_seconds=args.queue_lease,
        **({"seed": args.seed} if args.seed is not None else {}),
    )
    try:
        with tempfile.TemporaryDirectory(prefix="notifier-chaos-") as scratch:
            logs = args.logs or Path(scratch)
            logs.mkdir(parents=True, exist_ok=True)
            report = run(plan, logs)
    except ServiceMissing as exc:
        print(f"cannot run: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"plan": asdict(plan), "report": asdict(report)}, indent=2))
    print(f"written to {args.out}")
    texts_once = (report.duplicates, report.lost, report.pending, report.mismatched) == (0, 0, 0, 0)
    emails_ok = (report.emails_lost, report.email_foreign_ids) == (0, 0) and (
        report.email_duplicates <= report.email_duplicates_allowed
    )
    return 0 if texts_once and emails_ok else 1


if __name__ == "__main__":
    sys.exit(main())
