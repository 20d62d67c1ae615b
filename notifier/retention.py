"""Retention: message bodies and patients' reply texts are kept `policy.retention_days`, then
blanked. The rows themselves stay (states, times, reasons), so a visit's history and every count
read the same after a purge. `notifier purge` runs it by hand, the clock once a day."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from .runtime import Runtime
from .store import retention

log = logging.getLogger(__name__)

# Rows blanked per transaction: a purge never holds long locks on the busy tables.
BATCH = 500


@dataclass(frozen=True)
class Purge:
    cutoff: datetime
    bodies: int  # message bodies blanked (or that would be)
    replies: int  # reply texts blanked (or that would be)


def cutoff(rt: Runtime, now: datetime) -> datetime:
    return now - timedelta(days=rt.clinic.policy.retention_days)


def purge(rt: Runtime, now: datetime, dry_run: bool = False) -> Purge:
    """Blanks what is past the retention period, a batch per transaction; with `dry_run`,
    only counts it."""
    before = cutoff(rt, now)
    if dry_run:
        with rt.sessions() as session:
            return Purge(before, *retention.count_old(session, before))
    totals = [0, 0]
    for i, blank in enumerate((retention.blank_bodies, retention.blank_replies)):
        while True:
            with rt.sessions() as session:
                done = blank(session, before, BATCH)
                session.commit()
            totals[i] += done
            if done < BATCH:
                break
    result = Purge(before, *totals)
    if result.bodies or result.replies:
        log.info(
            "retention: blanked %d message bodies and %d reply texts older than %s",
            result.bodies,
            result.replies,
            f"{before:%Y-%m-%d}",
        )
    return result


def daily(rt: Runtime) -> None:
    """The clock's job; a failure is logged and tried again the next day."""
    try:
        purge(rt, rt.clock())
    except Exception:
        log.exception("retention purge failed")
