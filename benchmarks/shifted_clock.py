"""Runs a notifier command on a clock shifted by a number of seconds, for benchmarks that need
a given moment (08:00 in a clinic's time zone) without waiting for it:

    python -m benchmarks.shifted_clock SECONDS worker --concurrency 2

Every clock of notifier reads `runtime.utc_now`; its code is replaced before the command
starts, so the processes it forks (Celery's pool) keep the shift. Nothing else is changed:
Redis keeps its own clock for the rate slots, and the fake Twilio the benchmark's.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from notifier import cli, runtime


def _shifted() -> datetime:
    # Runs with runtime's globals: its own `datetime` and `UTC`, and the shift set below.
    return datetime.now(UTC) + _SHIFT  # type: ignore[name-defined]  # noqa: F821


def main() -> int:
    runtime._SHIFT = timedelta(seconds=float(sys.argv[1]))  # type: ignore[attr-defined]
    runtime.utc_now.__code__ = _shifted.__code__
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
