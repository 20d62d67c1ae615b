"""The per-sender slots: a batch takes its messages' slots of the next moment in one step, on
Redis or locally, and never reserves further ahead."""

from __future__ import annotations

import time
import uuid

import pytest

from notifier.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL

SENDER = "+15165550100"


@pytest.fixture(params=["redis", "local"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "redis":
        return RedisRateLimiter(REDIS_URL, prefix=f"test:rate:{uuid.uuid4().hex}:")
    return LocalRateLimiter()


def test_a_batch_takes_its_slots_and_the_next_batch_waits_for_them(limiter: RateLimiter) -> None:
    assert limiter.reserve(SENDER, per_second=10, count=3, within=1)[:2] == (0, 3)
    # Three slots of 100 ms were taken: the next one is at most 300 ms away.
    wait, taken, _ = limiter.reserve(SENDER, per_second=10, count=1, within=1)
    assert 0.2 < wait <= 0.3 and taken == 1
    assert limiter.reserve("+15165550199", per_second=10, count=1, within=1)[:2] == (0, 1)


def test_only_the_slots_of_the_next_moment_are_taken(limiter: RateLimiter) -> None:
    # At 1 a second, a batch of 100 takes the slots at 0 and 1 s, and the rest are placed in
    # line from 2 s on, with nothing reserved for them.
    assert limiter.reserve(SENDER, per_second=1, count=100, within=1) == (0, 2, 2)
    wait, taken, line = limiter.reserve(SENDER, per_second=1, count=100, within=1)
    assert 1.9 < wait <= 2.0 and taken == 0
    assert 99.9 < line <= 100  # behind the 98 placed before
    # Places in line are not slots: a lone message takes the next free slot.
    time.sleep(2.05)
    assert limiter.reserve(SENDER, per_second=1, count=1, within=1)[:2] == (0, 1)


def test_slots_not_used_are_lost_for_a_moment_only(limiter: RateLimiter) -> None:
    # A worker takes its slots and dies: the next worker waits no longer than they lasted.
    limiter.reserve(SENDER, per_second=5, count=50, within=0.2)
    time.sleep(0.45)
    assert limiter.reserve(SENDER, per_second=5, count=1, within=0.2)[:2] == (0, 1)


def test_slots_are_shared_by_every_limiter_on_the_same_redis() -> None:
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    one, other = RedisRateLimiter(REDIS_URL, prefix), RedisRateLimiter(REDIS_URL, prefix)
    assert one.reserve(SENDER, per_second=2, count=2, within=1)[:2] == (0, 2)
    wait, taken, _ = other.reserve(SENDER, per_second=2, count=1, within=1)
    assert 0.9 < wait <= 1.0 and taken == 1
