"""Messages per second per sender number, shared by every worker process.

Carriers throttle a long code to about 1 SMS a second (toll-free 3, short code 100); past that,
Twilio queues and eventually drops. The limit is a GCRA: each send reserves the next free slot
for its sender, and waits until that slot comes. In Redis, the slots are shared by all workers.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

# Reserves the next slot: returns how many milliseconds to wait before sending. Redis' own
# clock is the one clock all workers share.
_RESERVE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
redis.call('SET', KEYS[1], slot + interval, 'PX', math.ceil(slot - now + interval + 1000))
return slot - now
"""


class RateLimiter(Protocol):
    def wait(self, key: str, per_second: float) -> None: ...


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str = "notifier:rate:") -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)

    def wait(self, key: str, per_second: float) -> None:
        interval_ms = 1000.0 / per_second
        delay_ms = float(self._reserve(keys=[self.prefix + key], args=[interval_ms]))
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)


class LocalRateLimiter:
    """The same slots for one process, for `notifier serve` and a broker that is not Redis."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str, per_second: float) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next.get(key, now), now)
            self._next[key] = slot + 1.0 / per_second
        if slot > now:
            time.sleep(slot - now)
