"""The per-sender slots: a batch reserves its messages' slots in one step, on Redis or locally."""

from __future__ import annotations

import uuid

import pytest

from notifier.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL


@pytest.fixture(params=["redis", "local"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "redis":
        return RedisRateLimiter(REDIS_URL, prefix=f"test:rate:{uuid.uuid4().hex}:")
    return LocalRateLimiter()


def test_a_batch_takes_its_slots_and_the_next_batch_waits_for_them(limiter: RateLimiter) -> None:
    assert limiter.reserve("+15165550100", per_second=10, count=3) == 0
    # Three slots of 100 ms were taken: the next one is at most 300 ms away.
    assert 0.2 < limiter.reserve("+15165550100", per_second=10) <= 0.3
    assert limiter.reserve("+15165550199", per_second=10) == 0  # each sender has its own


def test_slots_are_shared_by_every_limiter_on_the_same_redis() -> None:
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    one, other = RedisRateLimiter(REDIS_URL, prefix), RedisRateLimiter(REDIS_URL, prefix)
    assert one.reserve("+15165550100", per_second=2, count=2) == 0
    assert 0.9 < other.reserve("+15165550100", per_second=2) <= 1.0
