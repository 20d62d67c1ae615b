"""The throughput baseline: a Celery app whose task does nothing but count itself.

It reads notifier's own `celeryconfig` (same broker, queue, serializer, acks_late, prefetch), so
the only difference from `notifier worker` is the work done per message. Started by
send_throughput.py as `celery -A benchmarks.noop_app worker --concurrency N`.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery("noop")
app.config_from_object("celeryconfig")

COUNTER = "bench:noop:done"
_redis: redis.Redis | None = None


def counter() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["NOTIFIER_BROKER_URL"])
    return _redis


@app.task(name="bench.noop")
def noop(message_id: int) -> None:
    # One INCR per message; the first and the last one also note the time: the measured window.
    done = counter().incr(COUNTER)
    if done == 1:
        counter().set(COUNTER + ":first", repr(time.time()))
    if done == int(os.environ.get("BENCH_NOOP_TOTAL", "0")):
        counter().set(COUNTER + ":last", repr(time.time()))
