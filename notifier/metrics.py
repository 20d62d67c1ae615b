"""Prometheus metrics, read from the database at scrape time.

The database is where every process (web, clocks, any number of workers on any machine)
records what it did, so one scrape of one web process sees the whole service, and nothing is
lost when a worker restarts. Timings are over the messages sent in the last few minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .runtime import Runtime
from .store import notifications

WINDOW = timedelta(minutes=5)
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class NotifierCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        now = self.rt.clock()
        with self.rt.sessions() as session:
            by_state = notifications.count_by_state(session)
            due = notifications.due_unclaimed(session, now)
            recent = notifications.sent_since(session, now - WINDOW)
        yield _by_state(by_state)
        yield GaugeMetricFamily(
            "notifier_due_queue_depth", "Notifications due now and not yet claimed.", due[0]
        )
        oldest = (now - due[1]).total_seconds() if due[1] else 0.0
        yield GaugeMetricFamily(
            "notifier_oldest_due_seconds",
            "How long the oldest unclaimed due row has waited.",
            oldest,
        )
        lateness = [(sent - planned).total_seconds() for planned, sent, _ in recent]
        latency = [(sent - started).total_seconds() for _, sent, started in recent]
        yield _histogram(
            "notifier_lateness_seconds", "Sent minus planned time, last 5 minutes.", lateness
        )
        yield _histogram(
            "notifier_send_latency_seconds",
            "Provider call, sending to sent, last 5 minutes.",
            latency,
        )


def _by_state(rows: Iterable[Any]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "notifier_notifications",
        "Notifications by kind, channel and state.",
        labels=["kind", "channel", "state"],
    )
    for kind, channel, status, count in rows:
        family.add_metric([kind, channel, status], count)
    return family


def _histogram(name: str, documentation: str, values: list[float]) -> GaugeHistogramMetricFamily:
    buckets = [(f"{bound:g}", sum(1 for v in values if v <= bound)) for bound in BUCKETS]
    buckets.append(("+Inf", len(values)))
    return GaugeHistogramMetricFamily(name, documentation, buckets=buckets, gsum_value=sum(values))


def exposition(rt: Runtime) -> bytes:
    registry = CollectorRegistry()
    registry.register(NotifierCollector(rt))
    return bytes(generate_latest(registry))
