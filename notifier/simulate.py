"""Simulated time: plays the clock forward through due notifications, in one process.

Used by `notifier demo` and by the scenario tests, so both exercise the real claim and send path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .dispatch import tick
from .runtime import Runtime
from .send import deliver
from .store import notifications


def _deliver_all(rt: Runtime, ids: Sequence[int]) -> None:
    deliver(rt, ids, "simulated")


@dataclass
class SimulatedClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def run_until(rt: Runtime, end: datetime) -> None:
    """Jumps the clock to each due time up to `end` and sends what falls due, inline."""
    clock = rt.clock
    if not isinstance(clock, SimulatedClock):
        raise TypeError("run_until needs a runtime on a SimulatedClock")
    while True:
        with rt.sessions() as session:
            due = notifications.next_due(session)
        if due is None or due > end:
            clock.now = max(clock.now, end)
            # A last beat at `end` reaps and reconciles; stop once it has nothing to send.
            if not tick(rt, lambda ids: _deliver_all(rt, ids), "simulated"):
                return
            continue
        clock.now = max(clock.now, due)
        tick(rt, lambda ids: _deliver_all(rt, ids), "simulated")
