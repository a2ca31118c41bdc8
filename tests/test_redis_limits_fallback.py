"""When Redis does not answer: each worker paces on its own share, and comes back to Redis.

These tests run a redis-server of their own (`own_redis`) to stop, pause and resume it.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from bitrix_batch import RateLimit
from tests.fake_clock import FakeClock
from tests.redis_support import (  # noqa: F401  (fixtures)
    collect_coredis_leaks,
    ignore_coredis_leaks,
    needs_coredis,
    own_redis_fixture,
    prefix_fixture,
)

pytestmark = [
    needs_coredis,
    pytest.mark.integration,
    ignore_coredis_leaks,  # these tests stop Redis: connection attempts fail
]


@pytest.fixture(autouse=True)
def _collect_here() -> Iterator[None]:
    """Collect what the failed connections left now, not in a later test."""
    yield
    collect_coredis_leaks()


async def test_unreachable_redis_falls_back_to_a_share_of_the_rate(
    own_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import coredis

    from bitrix_batch.redis import RedisBucket, RedisLink

    url = own_redis.url
    own_redis.__exit__(None, None, None)  # nobody listens there now
    clock = FakeClock()
    changes: list[bool] = []
    async with coredis.Redis.from_url(url) as redis:
        link = RedisLink(redis, clock=clock, retry_interval=5.0, on_change=changes.append)
        bucket = RedisBucket(
            link, "k", RateLimit(50, 2.0), workers=4, clock=clock, sleep=clock.sleep
        )
        with caplog.at_level(logging.WARNING, logger="bitrix_batch.redis"):
            for _ in range(10):
                await bucket.acquire()
    assert bucket.degraded
    assert not link.available
    assert changes == [False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage, not per request
    assert "Redis does not answer" in warnings[0].getMessage()
    # A quarter of 2/s (less the 2% safety a local bucket keeps), starting full: 10 requests
    # take 10 / 0.49 s; never a burst, so four workers falling back at once stay within the
    # portal's rate.
    assert clock.now == pytest.approx(10 / 0.49, rel=0.01)
    # Redis was tried again every 5 s only, not on each request.
    assert 1 < link.failures <= 1 + clock.now / 5.0


async def test_a_paused_redis_times_out_and_the_workers_come_back(
    own_redis: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    import coredis

    from bitrix_batch.redis import RedisBucket, RedisLink

    pid = own_redis.process.pid
    caplog.set_level(logging.INFO, logger="bitrix_batch.redis")
    async with coredis.Redis.from_url(own_redis.url) as redis:
        link = RedisLink(redis, timeout=0.2, retry_interval=0.3)
        bucket = RedisBucket(link, f"{prefix}:rate", RateLimit(100, 20.0), headroom=0, workers=2)
        await bucket.acquire()
        assert not bucket.degraded
        os.kill(pid, signal.SIGSTOP)  # a hung Redis: it takes the connection, never answers
        try:
            start = time.monotonic()
            await bucket.acquire()
            # The deadline, and one local slot (0.1 s), not coredis' own retries.
            assert time.monotonic() - start < 1.0
            assert bucket.degraded
        finally:
            os.kill(pid, signal.SIGCONT)
        await anyio.sleep(0.35)  # past retry_interval
        for _ in range(3):
            await bucket.acquire()
        assert not bucket.degraded
        assert link.available
        assert "answers again" in caplog.text
        # Back in Redis, the level counts the four sent plus what the fallback still held.
        tat = float((await redis.get(f"{prefix}:rate")).split()[0])
        assert tat > 0
        assert bucket.level >= 3


async def test_the_budget_keeps_its_holds_while_redis_is_down(own_redis: Any, prefix: str) -> None:
    import coredis

    from bitrix_batch.redis import RedisLink, SharedOperatingBudget

    clock = FakeClock()
    port = own_redis.port
    own_redis.__exit__(None, None, None)
    async with coredis.Redis(host="127.0.0.1", port=port) as redis:
        link = RedisLink(redis, clock=clock)
        budget = SharedOperatingBudget(
            link, f"{prefix}:holds", clock=clock, sleep=clock.sleep, wall_clock=clock.wall
        )
        budget.observe_blocked("crm.lead.add", reset_at=clock.wall() + 30)
        assert not await budget.sync()
        assert budget.is_held("crm.lead.add")  # still held here
        assert budget.unshared == {"crm.lead.add": 30.0}  # to be shared once Redis answers
        assert await budget.wait("batch") == 0.0


async def test_the_fallback_waits_for_the_slots_already_reserved(
    own_redis: Any, prefix: str
) -> None:
    """Slots reserved in Redis are still being sent: the fallback starts when they end."""
    import coredis

    from bitrix_batch.redis import RedisBucket, RedisLink

    clock = FakeClock()
    sent: list[float] = []
    async with coredis.Redis.from_url(own_redis.url) as redis:
        link = RedisLink(redis, clock=clock, timeout=0.2, retry_interval=100.0)
        recorded: list[float] = []

        async def sleep(seconds: float) -> None:
            # While Redis answers, the fake clock stays still, like the server's (almost).
            if link.available:
                recorded.append(seconds)
            await (clock.sleep(seconds) if not link.available else anyio.lowlevel.checkpoint())

        bucket = RedisBucket(
            link,
            f"{prefix}:rate",
            RateLimit(10, 10.0),
            headroom=0,
            workers=2,
            clock=clock,
            sleep=sleep,
        )
        started = time.monotonic()
        for _ in range(15):  # 10 at once, 5 reserved for the next 0.5 s
            await bucket.acquire()
        # Redis drains in real time while the fake clock stands still: what drained during
        # these 15 round trips (slow on a loaded machine) ends the reserved slots earlier.
        drained = time.monotonic() - started
        assert len(recorded) == 5
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                await bucket.acquire()
                sent.append(clock.now)
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
    assert bucket.degraded
    # The reserved slots end 1.5 s after the start; from then on a share of 5/s less 2%,
    # starting full: one request every 1 / 4.9 s.
    step = 1 / 4.9
    assert 1.5 - drained - 0.02 < sent[0] - step < 1.5 + 0.02
    assert [b - a for a, b in itertools.pairwise(sent)] == pytest.approx([step, step])


async def test_callers_waiting_in_the_fallback_go_back_to_redis(
    own_redis: Any, prefix: str
) -> None:
    """Once Redis answers, nothing more is sent on the fallback, uncounted in Redis."""
    import coredis

    from bitrix_batch.redis import RedisBucket, RedisLink

    pid = own_redis.process.pid
    back: list[int] = []
    async with coredis.Redis.from_url(own_redis.url) as redis:
        bucket: Any = None

        def changed(available: bool) -> None:
            if available:  # how many the fallback had sent when Redis came back
                back.append(bucket._fallback.sent if bucket._fallback is not None else -1)

        costs: list[float] = []

        class SpyLink(RedisLink):
            async def run(self, source: str, keys: Any, args: Any, **options: Any) -> Any:
                reply = await super().run(source, keys, args, **options)
                if reply is not None:  # the cost of each reservation Redis took
                    costs.append(float(args[3]))
                return reply

        link = SpyLink(redis, timeout=0.1, retry_interval=0.2, on_change=changed)
        bucket = RedisBucket(link, f"{prefix}:rate", RateLimit(4, 20.0), headroom=0, workers=4)
        os.kill(pid, signal.SIGSTOP)
        shares: list[Any] = []

        async def resume() -> None:
            await anyio.sleep(0.45)
            shares.append(bucket._fallback)
            os.kill(pid, signal.SIGCONT)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(resume)
                for _ in range(8):
                    tg.start_soon(bucket.acquire)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert not bucket.degraded
        assert len(back) == 1
        assert back[0] >= 1
        assert shares[0].sent == back[0]  # and none after Redis answered
        # What the fallback sent and has not drained (at its share of the rate, so at least
        # what the portal still counts) went to Redis with the first reservation after, and
        # what the other three workers' shares (5/s each) may send until their next try
        # (0.2 s, plus a call's 0.1 s) finds Redis back.
        others = 3 * 5.0 * (0.2 + 0.1)
        rounding = 1e-6  # the cost goes to Redis with six decimals
        assert costs[0] >= 1.0 + others - rounding
        # The share starts full (no burst on the way in: its burst is 1 here), and what is
        # left of that fill when Redis answers is charged too: a little slower, never over.
        charged = sum(cost - 1.0 for cost in costs)
        assert others - rounding <= charged <= back[0] + 1 + others
        assert bucket._debt == 0
