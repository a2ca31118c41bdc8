"""What Redis holds cannot stall the workers: a backward step of its clock, a bad value.

The state a clock step leaves is written by hand (no test can move the server's clock): a
bucket written when the server's clock read an hour later than it does now.
"""

from __future__ import annotations

from typing import Any

import pytest

from bitrix_batch import RateLimit
from tests.fake_clock import FakeClock
from tests.redis_support import (  # noqa: F401  (fixtures)
    RecordingSleep,
    ignore_coredis_leaks,
    needs_coredis,
    prefix_fixture,
    redis_fixture,
    redis_url_fixture,
)

pytestmark = [needs_coredis, ignore_coredis_leaks, pytest.mark.integration]

LIMIT = RateLimit(50, 2.0)


async def server_now(redis: Any) -> float:
    script = "local t = redis.call('TIME') return t[1] .. '.' .. string.format('%06d', t[2])"
    return float(await redis.eval(script, keys=[], args=[]))


def make_bucket(redis: Any, key: str, sleep: RecordingSleep) -> Any:
    from bitrix_batch.redis import RedisBucket, RedisLink

    return RedisBucket(RedisLink(redis), key, LIMIT, headroom=2, sleep=sleep)


async def test_a_backward_clock_step_moves_the_bucket_back(redis: Any, prefix: str) -> None:
    now = await server_now(redis)
    key = f"{prefix}:rate"
    # Written an hour "later", when the level was 1 request (0.5 s at 2/s).
    await redis.set(key, f"{now + 3600.5:.6f} {now + 3600:.6f}")
    sleep = RecordingSleep()
    bucket = make_bucket(redis, key, sleep)
    await bucket.acquire()
    assert sleep.calls == []
    assert bucket.level == pytest.approx(2.0, abs=0.05)  # the one before, and this one


async def test_a_bad_value_gives_a_bounded_wait(redis: Any, prefix: str) -> None:
    from bitrix_batch.redis import RedisBucket

    now = await server_now(redis)
    key = f"{prefix}:rate"
    await redis.set(key, f"{now + 3600:.6f}")  # a level no queue of callers can explain
    sleep = RecordingSleep()
    bucket = make_bucket(redis, key, sleep)
    await bucket.acquire()
    most = RedisBucket.MAX_QUEUE + bucket.capacity
    assert bucket.level == pytest.approx(most + 1, abs=0.1)
    assert sleep.calls[0] == pytest.approx((most + 1 - bucket.capacity) / 2.0, abs=0.1)
    for junk in ("nan", "not a number", "inf -inf"):
        await redis.set(key, junk)
        await bucket.acquire()
        assert bucket.level <= most + 1.01


async def test_shared_holds_never_outlast_the_window(redis: Any, prefix: str) -> None:
    from bitrix_batch.redis import RedisLink, SharedOperatingBudget

    now = await server_now(redis)
    key = f"{prefix}:holds"
    await redis.hset(key, {"crm.lead.add": f"{now + 7200:.6f}", "crm.deal.add": "nan"})
    clock = FakeClock()
    budget = SharedOperatingBudget(
        RedisLink(redis), key, window=600.0, clock=clock, sleep=clock.sleep, wall_clock=clock.wall
    )
    assert await budget.sync()
    until = budget.held_until("crm.lead.add")
    assert until is not None
    assert 599 < until - clock.now <= 600
    assert budget.held_until("crm.deal.add") is None
    stored = float(await redis.hget(key, "crm.lead.add"))
    assert stored <= await server_now(redis) + 600
    # A hold written with more than the window is cut to it, in Redis too.
    budget.observe_blocked("crm.item.add", reset_at=clock.wall() + 10_000)
    other = SharedOperatingBudget(RedisLink(redis), key, window=60.0, clock=clock)
    await budget.sync()
    await other.sync()
    seen = other.held_until("crm.item.add")
    assert seen is not None
    assert seen - clock.now <= 60.0
