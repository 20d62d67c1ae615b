"""Prometheus metrics, read from the database at scrape time.

The database is where every process (web, clocks, any number of workers on any machine)
records what it did, so one scrape of one web process sees the whole service, and nothing is
lost when a worker restarts. The counters count rows that only grow (a message's history, the
replies, the booking events, `counters`); the histograms cover every message sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from . import version
from .runtime import Runtime
from .store import metrics as counts
from .store import notifications

# Seconds: a provider call takes tenths; a message is late by the clock's tick, a rate slot's
# wait, or hours when quiet hours or an outage held it.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 21600.0)
# booking_events.outcome as /metrics names it.
EVENT_OUTCOMES = {"applied": "applied", "ignored_stale": "stale"}


class NotifierCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        now = self.rt.clock()
        with self.rt.sessions() as session:
            by_state = notifications.count_by_state(session)
            due = notifications.due_unclaimed(session, now)
            yield from _counters(session)
            timings = counts.timing_buckets(session, BUCKETS)
        yield _build_info("web")
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
        yield _histogram(
            "notifier_lateness_seconds",
            "Sent minus planned time, of every message sent.",
            timings["lateness"],
        )
        yield _histogram(
            "notifier_send_latency_seconds",
            "The provider call (sending to sent), of every message sent.",
            timings["latency"],
        )


def _counters(session: Session) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "notifier_messages",
        "Messages that reached an outcome, by kind, channel and outcome.",
        labels=["kind", "channel", "outcome"],
    )
    for kind, channel, outcome, count in counts.messages_by_outcome(session):
        messages.add_metric([kind, channel, outcome], count)
    yield messages
    replies = CounterMetricFamily(
        "notifier_replies", "Texts patients sent, by what they asked for.", labels=["intent"]
    )
    for intent, count in counts.replies_by_intent(session):
        replies.add_metric([intent], count)
    yield replies
    events = CounterMetricFamily(
        "notifier_events",
        "Booking events received, by type and outcome.",
        labels=["type", "outcome"],
    )
    for kind, outcome, count in counts.events_by_outcome(session):
        events.add_metric([kind, EVENT_OUTCOMES.get(outcome, outcome)], count)
    for kind, count in counts.counted(session, counts.DUPLICATE_EVENTS):
        events.add_metric([kind, "duplicate"], count)
    yield events
    refused = CounterMetricFamily(
        "notifier_webhook_signature_failures",
        "Provider webhooks refused for a missing or wrong signature, by path.",
        labels=["path"],
    )
    for path, count in counts.counted(session, counts.REFUSED_WEBHOOKS):
        refused.add_metric([path], count)
    yield refused


def _build_info(process: str) -> GaugeMetricFamily:
    info = GaugeMetricFamily(
        "notifier_build_info",
        "The running version of notifier, and which process this is.",
        labels=["version", "process"],
    )
    info.add_metric([version(), process], 1)
    return info


def _by_state(rows: Iterable[Any]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "notifier_notifications",
        "Notifications by kind, channel and state.",
        labels=["kind", "channel", "state"],
    )
    for kind, channel, status, count in rows:
        family.add_metric([kind, channel, status], count)
    return family


def _histogram(
    name: str, documentation: str, timing: tuple[list[int], float, int]
) -> HistogramMetricFamily:
    under, total, count = timing
    buckets: list[tuple[str, float]] = [
        (f"{bound:g}", n) for bound, n in zip(BUCKETS, under, strict=True)
    ]
    buckets.append(("+Inf", count))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def serve_liveness(port: int, process: str) -> None:
    """For a worker or a clock, which answer no HTTP: a port where Prometheus finds the process
    alive (`up`), its `notifier_build_info` and the client's process metrics. What the process
    did is in the database, counted by the web's /metrics."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector(registry=None), PlatformCollector(registry=None)):
        registry.register(collector)
    registry.register(_BuildInfo(process))
    start_http_server(port, registry=registry)


class _BuildInfo(Collector):
    def __init__(self, process: str) -> None:
        self.process = process

    def collect(self) -> Iterator[Metric]:
        yield _build_info(self.process)


def count_refused_webhook(rt: Runtime, path: str) -> None:
    """A webhook refused for its signature: counted for the alert on a spike of them."""
    with rt.sessions() as session:
        counts.bump(session, counts.REFUSED_WEBHOOKS, path[:64])
        session.commit()


def exposition(rt: Runtime) -> bytes:
    registry = CollectorRegistry()
    registry.register(NotifierCollector(rt))
    return bytes(generate_latest(registry))
