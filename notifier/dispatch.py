"""The clock: claims due rows and hands their ids to the workers.

Runs in the `scheduler` process. Any number of clocks may run at once: a claim is a conditional
update, so each due row is claimed by exactly one of them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session

from . import retention
from .reconcile import reconcile
from .runtime import Runtime
from .send import deliver
from .states import Status, claim, transition
from .store import notifications

log = logging.getLogger(__name__)

CLAIM_BATCH = 500
# Claimed and not yet taken by a worker: past this the clock waits, so a backlog stays in the
# database (where it costs nothing) instead of piling up in the broker past its lease.
MAX_QUEUED = 2000
IDS_PER_TASK = 100
TICK_SECONDS = 1.0
# The daily purge: 08:17 UTC is the small hours in the Americas.
PURGE_HOUR_UTC = 8

Enqueue = Callable[[Sequence[int]], None]


def claim_due(
    session: Session,
    now: datetime,
    owner: str,
    limit: int = CLAIM_BATCH,
    lease: timedelta = timedelta(minutes=5),
) -> list[int]:
    """Claims up to `limit` due rows (scheduled → queued, `states.claim`) and returns their
    ids; a claim writes no history."""
    ids = claim(session, now, owner, limit, lease)
    session.commit()
    return ids


def reap(session: Session, now: datetime) -> None:
    """Returns abandoned claims: a queued row whose task never ran is scheduled again; a row
    left `sending` by a crashed worker may have reached the provider, so it becomes `unknown`,
    to be reconciled at once: its lease outlasted any answer the provider could still give."""
    for status, to, until in (
        (Status.QUEUED, Status.SCHEDULED, None),
        (Status.SENDING, Status.UNKNOWN, now),
    ):
        moved = transition(
            session,
            notifications.lease_expired(status, now),
            [status],
            to,
            now,
            "lease expired",
            lease_owner=None,
            lease_until=until,
        )
        if moved:
            log.warning("%d %s notifications had an expired lease: now %s", len(moved), status, to)
    session.commit()


def tick(rt: Runtime, enqueue: Enqueue, owner: str) -> int:
    """One beat of the clock: reap, then claim and enqueue until nothing more is due."""
    total = 0
    with rt.sessions() as session:
        reap(session, rt.clock())
        reconcile(rt, session, rt.clock())
        lease = timedelta(seconds=rt.settings.queue_lease_seconds)
        while (room := MAX_QUEUED - notifications.count_in(session, Status.QUEUED)) > 0:
            ids = claim_due(session, rt.clock(), owner, limit=min(room, CLAIM_BATCH), lease=lease)
            for start in range(0, len(ids), IDS_PER_TASK):
                enqueue(ids[start : start + IDS_PER_TASK])
            total += len(ids)
            if len(ids) < min(room, CLAIM_BATCH):
                break
    return total


def clock_owner() -> str:
    return f"clock:{socket.gethostname()}:{os.getpid()}"


def schedule_ticks(scheduler: BaseScheduler, rt: Runtime, enqueue: Enqueue) -> None:
    """Adds the tick job (one at a time, and missed beats are folded into the next one) and
    the daily retention purge."""
    owner = clock_owner()
    scheduler.add_job(
        tick,
        "interval",
        seconds=TICK_SECONDS,
        args=(rt, enqueue, owner),
        id="dispatch",
        max_instances=1,
        coalesce=True,
        # At once, by the scheduler's own clock (the wall's), whatever clock the runtime keeps.
        next_run_time=datetime.now(UTC),
    )
    # Retention: once a day, at a quiet hour; several clocks purging at once blank nothing twice.
    scheduler.add_job(
        retention.daily,
        "cron",
        hour=PURGE_HOUR_UTC,
        minute=17,
        args=(rt,),
        id="purge",
        max_instances=1,
        coalesce=True,
    )


def in_process(rt: Runtime, executor: Executor) -> Enqueue:
    """For `notifier serve`: no broker, a thread pool plays the workers."""

    def enqueue(ids: Sequence[int]) -> None:
        executor.submit(deliver, rt, list(ids), "serve")

    return enqueue
