"""Messages per second per sender number, shared by every worker process.

Carriers throttle a long code to about 1 SMS a second (toll-free 3, short code 100); past that,
Twilio queues and eventually drops. The limit is a GCRA: a batch takes the free slots of its
sender that begin within the next moment (`within` seconds), and each message waits for its own
slot. Nothing is reserved further ahead, so slots taken by a worker that then dies, or by a
message withdrawn before its call, are lost for at most that moment. In Redis, the slots are
shared by all workers.
"""

from __future__ import annotations

import math
import threading
import time
from typing import NamedTuple, Protocol

# Takes up to ARGV[2] slots, ARGV[1] ms apart, of those that begin within ARGV[3] ms; the rest
# of the count is given places in line after every place already given to messages of the same
# or a higher priority (KEYS[2..], the lines of priority 0 to this one, this one's last), which
# reserve nothing: a more urgent message is placed ahead of the less urgent ones already in line.
# And a message takes no slot while a more urgent one has a place in line still to come: places
# reserve nothing, so without this a less urgent message that asks first would take the slot
# the urgent one was placed for. Returns the milliseconds until the first slot taken (or the
# next free one), how many were taken, and the milliseconds until the first place in line.
# Redis' own clock is the one clock all workers share.
_RESERVE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + math.floor(now_us / 1000)
local interval, count, within = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local ahead = now
for k = 2, #KEYS - 1 do
    ahead = math.max(ahead, tonumber(redis.call('GET', KEYS[k]) or now))
end
local taken = 0
if slot - now <= within and slot >= ahead then
    taken = math.min(count, math.floor((now + within - slot) / interval) + 1)
    local free = slot + taken * interval
    redis.call('SET', KEYS[1], free, 'PX', math.ceil(free - now + 1000))
end
local line = slot + taken * interval
for k = 2, #KEYS do
    line = math.max(line, tonumber(redis.call('GET', KEYS[k]) or now))
end
if count > taken then
    local last = line + (count - taken) * interval
    redis.call('SET', KEYS[#KEYS], last, 'PX', math.ceil(last - now + 1000))
end
return {tostring(slot - now), taken, tostring(line - now)}
"""


class Slots(NamedTuple):
    """What `reserve` gave: the seconds until the first slot taken (or, when none was, until
    the next free one); how many were taken; and the seconds until the first of the places in
    line given to the rest, one interval apart. A place in line reserves nothing: it says when
    to ask again, so that messages waiting for one sender do not all ask at once."""

    wait: float
    taken: int
    line: float


class RateLimiter(Protocol):
    def reserve(
        self, key: str, per_second: float, count: int, within: float, priority: int = 0
    ) -> Slots:
        """Takes up to `count` slots of `key`, 1/per_second apart, of those that begin within
        `within` seconds, and places the rest in line behind the places given to messages of
        `priority` or a more urgent one (a smaller number). Raises redis.RedisError when the
        shared slots cannot be reached."""
        ...


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str = "notifier:rate:") -> None:
        import redis  # not imported by processes that count locally

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = prefix
        self._reserve = self.client.register_script(_RESERVE)

    def reserve(
        self, key: str, per_second: float, count: int, within: float, priority: int = 0
    ) -> Slots:
        keys = [self.prefix + key] + [f"{self.prefix}{key}:line:{p}" for p in range(priority + 1)]
        wait_ms, taken, line_ms = self._reserve(keys, [1000.0 / per_second, count, within * 1000])
        return Slots(float(wait_ms) / 1000, int(taken), float(line_ms) / 1000)


class LocalRateLimiter:
    """The same slots for one process, for `notifier serve` and a broker that is not Redis."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._line: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def reserve(
        self, key: str, per_second: float, count: int, within: float, priority: int = 0
    ) -> Slots:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next.get(key, now), now)
            ahead = max((self._line.get((key, p), now) for p in range(priority)), default=now)
            taken = 0
            if slot - now <= within and slot >= ahead:
                taken = min(count, math.floor((now + within - slot) * per_second) + 1)
                self._next[key] = slot + taken / per_second
            lines = [self._line.get((key, p), now) for p in range(priority + 1)]
            line = max(slot + taken / per_second, *lines)
            if count > taken:
                self._line[(key, priority)] = line + (count - taken) / per_second
        return Slots(slot - now, taken, line - now)
