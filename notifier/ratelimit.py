"""Messages per second per sender number, shared by every worker process.

Carriers throttle a long code to about 1 SMS a second (toll-free 3, short code 100); past that,
Twilio queues and eventually drops. The limit is a GCRA: a batch reserves the next free slots
for its sender in one step, and each message waits for its own slot. In Redis, the slots are
shared by all workers.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

# Reserves the next ARGV[2] slots: returns how many milliseconds until the first of them. Redis'
# own clock is the one clock all workers share.
_RESERVE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local taken = interval * tonumber(ARGV[2])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
redis.call('SET', KEYS[1], slot + taken, 'PX', math.ceil(slot - now + taken + 1000))
return slot - now
"""


class RateLimiter(Protocol):
    def reserve(self, key: str, per_second: float, count: int = 1) -> float:
        """Takes the next `count` slots of `key`, 1/per_second apart; returns the seconds until
        the first. Raises redis.RedisError when the shared slots cannot be reached."""
        ...


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str = "notifier:rate:") -> None:
        import redis  # not imported by processes that count locally

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)

    def reserve(self, key: str, per_second: float, count: int = 1) -> float:
        interval_ms = 1000.0 / per_second
        return float(self._reserve(keys=[self.prefix + key], args=[interval_ms, count])) / 1000


class LocalRateLimiter:
    """The same slots for one process, for `notifier serve` and a broker that is not Redis."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, per_second: float, count: int = 1) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next.get(key, now), now)
            self._next[key] = slot + count / per_second
        return slot - now
