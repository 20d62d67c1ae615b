"""The clock's claim: many clocks at once never claim a row twice, and abandoned claims return."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, insert, select

from notifier.dispatch import claim_due, reap
from notifier.ingest import apply_event
from notifier.models import Notification
from notifier.runtime import Runtime
from tests.conftest import new_york
from tests.events import event


def plant_due(rt: Runtime, count: int) -> None:
    """One booked appointment, then `count` rows due now cloned from its confirmation."""
    with rt.sessions() as session:
        apply_event(
            session,
            rt.clinic,
            event("booked", new_york(2026, 12, 3, 10), occurred_at=rt.clock()),
            rt.clock(),
        )
        template = session.scalars(
            select(Notification).where(Notification.kind == "confirmation")
        ).first()
        assert template is not None
        columns = {
            c.key: getattr(template, c.key) for c in Notification.__table__.columns if c.key != "id"
        }
        if count:
            rows = [{**columns, "slot": f"s{i}"} for i in range(count)]
            session.execute(insert(Notification), rows)
        session.commit()


def test_four_clocks_racing_claim_each_due_row_exactly_once(rt: Runtime) -> None:
    plant_due(rt, 600)
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def clock(name: str) -> None:
        mine: list[int] = []
        start.wait()
        with rt.sessions() as session:
            while ids := claim_due(session, rt.clock(), name, limit=25):
                mine += ids
        claimed[name] = mine

    threads = [threading.Thread(target=clock, args=(f"clock-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == len(set(everything)) == 602  # 600 planted + the two confirmations
    assert sum(1 for ids in claimed.values() if ids) >= 2, "the race did not happen"


def test_only_due_rows_are_claimed(rt: Runtime) -> None:
    plant_due(rt, 0)
    with rt.sessions() as session:
        assert len(claim_due(session, rt.clock(), "clock")) == 2  # the confirmations
        assert claim_due(session, rt.clock() + timedelta(hours=1), "clock") == []


def test_expired_leases_are_reaped(rt: Runtime) -> None:
    plant_due(rt, 0)
    with rt.sessions() as session:
        first, second = claim_due(session, rt.clock(), "clock")
        session.execute(
            cast(Table, Notification.__table__)
            .update()
            .where(Notification.id == second)
            .values(status="sending")
        )
        session.commit()
        reap(session, rt.clock() + timedelta(minutes=10))
        rows = session.execute(select(Notification.id, Notification.status)).tuples().all()
        states = dict(rows)
    assert (states[first], states[second]) == ("scheduled", "unknown")
