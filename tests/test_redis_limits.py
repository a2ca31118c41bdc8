"""The shared request bucket (`RedisBucket`) against a real redis-server.

The bucket runs on the Redis server's clock, which a test cannot move: each test records the
sleeps the bucket asks for instead of sleeping (`RecordingSleep`), and compares them with the
leaky-bucket arithmetic, allowing for the few milliseconds of real time between calls.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest

from bitrix_batch import RateLimit, RateLimiter
from tests.redis_support import (  # noqa: F401  (fixtures)
    RecordingSleep,
    ignore_coredis_leaks,
    needs_coredis,
    prefix_fixture,
    redis_fixture,
    redis_url_fixture,
)

pytestmark = [needs_coredis, ignore_coredis_leaks, pytest.mark.integration]

SLACK = 0.05  # seconds a reply may take to come back, on a loaded machine


def make_bucket(redis: Any, prefix: str, limit: RateLimit, **options: Any) -> Any:
    from bitrix_batch.redis import RedisBucket, RedisLink

    options.setdefault("headroom", 0)
    options.setdefault("safety", 0.0)
    sleep = options.pop("sleep", RecordingSleep())
    return RedisBucket(RedisLink(redis), f"{prefix}:rate", limit, sleep=sleep, **options)


async def test_is_a_rate_limiter(redis: Any, prefix: str) -> None:
    assert isinstance(make_bucket(redis, prefix, RateLimit(5, 10.0)), RateLimiter)


async def test_burst_goes_at_once_then_one_per_interval(redis: Any, prefix: str) -> None:
    sleep = RecordingSleep()
    bucket = make_bucket(redis, prefix, RateLimit(5, 10.0), sleep=sleep)
    start = time.monotonic()
    for _ in range(8):
        await bucket.acquire()
    # Five from the empty bucket without a sleep; then each waits for its own slot, 0.1 s
    # after the one before (reservations: nobody has to sleep for the next to be told).
    assert len(sleep.calls) == 3
    for n, end in enumerate(sleep.ends, start=1):
        assert n * 0.1 - 0.005 < end - start < n * 0.1 + SLACK
    # The level counts the slots reserved for later: 5 sent and 3 reserved.
    assert bucket.level == pytest.approx(8.0, abs=0.5)


async def test_drains_continuously(redis: Any, prefix: str) -> None:
    sleep = RecordingSleep()
    bucket = make_bucket(redis, prefix, RateLimit(3, 10.0), sleep=sleep)
    start = time.monotonic()
    for _ in range(3):
        await bucket.acquire()
    await anyio.sleep(0.2)  # real time: the server's bucket drains 2 of 3
    await bucket.acquire()
    await bucket.acquire()
    assert sleep.calls == []  # both fit in what drained
    await bucket.acquire()
    # The third goes when the drain has made room for it: 0.3 s after the start (at once if
    # this machine was slow enough to get here later).
    assert len(sleep.calls) <= 1
    for end in sleep.ends:
        assert 0.3 - 0.005 < end - start < 0.3 + SLACK


async def test_fractional_rate_is_exact(redis: Any, prefix: str) -> None:
    sleep = RecordingSleep()
    bucket = make_bucket(redis, prefix, RateLimit(1, 0.3), sleep=sleep)
    start = time.monotonic()
    await bucket.acquire()
    await bucket.acquire()
    await bucket.acquire()
    # 1 / 0.3 = 3.333... s per request, not rounded to whole seconds.
    assert 10 / 3 - 0.005 < sleep.ends[0] - start < 10 / 3 + SLACK
    assert 20 / 3 - 0.005 < sleep.ends[1] - start < 20 / 3 + SLACK


async def test_headroom_and_safety(redis: Any, prefix: str) -> None:
    sleep = RecordingSleep()
    bucket = make_bucket(redis, prefix, RateLimit(10, 10.0), sleep=sleep, headroom=3, safety=0.2)
    assert bucket.capacity == 7
    assert bucket.rate == pytest.approx(8.0)
    start = time.monotonic()
    for _ in range(8):
        await bucket.acquire()
    assert len(sleep.calls) == 1  # 7 at once, the 8th one interval (1/8 s) later
    assert 0.125 - 0.005 < sleep.ends[0] - start < 0.125 + SLACK


async def test_shared_between_workers_in_arrival_order(redis: Any, prefix: str) -> None:
    """Two workers (two buckets, as two processes would have) share one level, FIFO."""
    sleeps = [RecordingSleep(), RecordingSleep()]
    buckets = [make_bucket(redis, prefix, RateLimit(4, 10.0), sleep=s) for s in sleeps]
    start = time.monotonic()
    for n in range(10):
        await buckets[n % 2].acquire()
    # Four in all from the burst, then each caller is told the next slot, alternately.
    assert len(sleeps[0].calls) == len(sleeps[1].calls) == 3
    for n, end in enumerate(sorted(sleeps[0].ends + sleeps[1].ends), start=1):
        assert n * 0.1 - 0.005 < end - start < n * 0.1 + SLACK
    assert sleeps[0].ends[0] < sleeps[1].ends[0] < sleeps[0].ends[1] < sleeps[1].ends[1]


async def test_concurrent_callers_get_distinct_slots(redis: Any, prefix: str) -> None:
    sleep = RecordingSleep()
    # Slots 0.1 s apart, so that the milliseconds a loaded machine puts between one caller's
    # reply and its sleep cannot make two distinct slots look shared (a shared slot: gap 0).
    bucket = make_bucket(redis, prefix, RateLimit(2, 10.0), sleep=sleep)
    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(bucket.acquire)
    assert len(sleep.ends) == 10
    gaps = [b - a for a, b in itertools.pairwise(sorted(sleep.ends))]
    assert all(gap == pytest.approx(0.1, abs=SLACK) for gap in gaps)  # one slot each


async def test_real_pacing_between_two_tasks(redis: Any, prefix: str) -> None:
    """With real sleeps, 2 workers x 6 requests at 50/s after a burst of 2 take ~0.2 s."""
    from bitrix_batch.redis import RedisBucket, RedisLink

    buckets = [
        RedisBucket(RedisLink(redis), f"{prefix}:r", RateLimit(2, 50.0), headroom=0, safety=0.0)
        for _ in range(2)
    ]
    sent: list[float] = []

    async def worker(bucket: Any) -> None:
        for _ in range(6):
            await bucket.acquire()
            sent.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for bucket in buckets:
            tg.start_soon(worker, bucket)
    span = max(sent) - start
    assert 0.2 - 0.01 <= span < 0.2 + 0.3  # (12 - 2) / 50


async def test_rejection_fills_the_shared_bucket(redis: Any, prefix: str) -> None:
    sleeps = [RecordingSleep(), RecordingSleep()]
    one, two = (make_bucket(redis, prefix, RateLimit(5, 10.0), sleep=s) for s in sleeps)
    start = time.monotonic()
    await one.acquire()
    one.on_rejected()  # a 503: the server's bucket is full, whatever we counted
    one.on_rejected()  # twice does not stack
    await one.acquire()  # written to Redis with this reservation
    await two.acquire()
    assert 0.1 - 0.005 < sleeps[0].ends[0] - start < 0.1 + SLACK
    assert 0.2 - 0.005 < sleeps[1].ends[0] - start < 0.2 + SLACK  # the other worker too


async def test_keys_are_per_portal(redis: Any, prefix: str) -> None:
    from bitrix_batch.redis import PortalKey, RedisBucket, RedisLink

    link = RedisLink(redis)
    sleep = RecordingSleep()
    keys = [
        PortalKey.for_webhook(f"https://{name}.bitrix24.com/rest/1/code/", prefix=prefix)
        for name in ("a", "b")
    ]
    a, b = (RedisBucket(link, k, RateLimit(1, 1.0), sleep=sleep, headroom=0) for k in keys)
    await a.acquire()
    await b.acquire()  # another portal's bucket is empty
    assert sleep.calls == []
    await a.acquire()
    assert len(sleep.calls) == 1
    assert await redis.exists([keys[0].rate_key, keys[1].rate_key]) == 2


async def test_keys_expire_once_the_bucket_is_empty(redis: Any, prefix: str) -> None:
    bucket = make_bucket(redis, prefix, RateLimit(2, 10.0))
    await bucket.acquire()
    ttl = await redis.pttl(bucket.key)
    assert 0 < ttl <= 1100 + 100  # level 1 drains in 0.1 s, plus a second of margin


def test_options_are_checked() -> None:
    from bitrix_batch.redis import RedisBucket

    link: Any = object()
    for options in ({"headroom": 5}, {"headroom": -1}, {"safety": 1.0}, {"workers": 0}):
        with pytest.raises(ValueError, match="must"):
            RedisBucket(link, "k", RateLimit(5, 1.0), **options)


def test_fallback_share() -> None:
    from bitrix_batch.redis import RedisBucket

    bucket = RedisBucket(object(), "k", RateLimit(50, 2.0), headroom=2, workers=4)  # type: ignore[arg-type]
    assert bucket.fallback_limit() == RateLimit(12, 0.5)
    assert bucket.rate == 2.0  # the headroom absorbs jitter: the server's own rate
    assert bucket.capacity == 48
    assert "shared" in repr(bucket)


def test_import_without_the_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['coredis'] = None\n"
        "try:\n    import bitrix_batch.redis\n"
        "except ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'bitrix_batch[redis]'" in done.stdout


def test_core_does_not_import_it() -> None:
    code = (
        "import bitrix_batch, sys\n"
        "print('coredis' in sys.modules, 'bitrix_batch.redis' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


async def test_concurrent_callers_report_a_503_once(redis: Any, prefix: str) -> None:
    """The 503s waiting to be written are taken by one reservation, not by each caller."""
    bucket = make_bucket(redis, prefix, RateLimit(50, 2.0))
    bucket.on_rejected()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(bucket.acquire)
    await redis.delete([bucket.key])
    await bucket.acquire()  # no new 503: an empty bucket gets one request
    assert bucket.level == pytest.approx(1.0, abs=0.05)
    bucket.on_rejected()
    await bucket.acquire()  # a new 503: the bucket is full, then this one
    assert bucket.level == pytest.approx(51.0, abs=0.05)


async def test_flush_writes_a_503_without_a_request(redis: Any, prefix: str) -> None:
    sleep = RecordingSleep()
    one = make_bucket(redis, prefix, RateLimit(5, 10.0))
    two = make_bucket(redis, prefix, RateLimit(5, 10.0), sleep=sleep)
    assert await one.flush()  # nothing to write
    assert await redis.exists([one.key]) == 0
    one.on_rejected()
    assert await one.flush()
    await two.acquire()  # the other worker sees the bucket full
    assert len(sleep.calls) == 1
    assert 0.1 - 0.02 < sleep.calls[0] <= 0.1 + 0.001


async def test_a_cancelled_caller_gives_its_slot_back(redis: Any, prefix: str) -> None:
    from bitrix_batch.redis import RedisBucket, RedisLink

    waiting = RedisBucket(RedisLink(redis), f"{prefix}:rate", RateLimit(2, 10.0), headroom=0)
    sleep = RecordingSleep()
    other = make_bucket(redis, prefix, RateLimit(2, 10.0), sleep=sleep)
    await waiting.acquire()
    start = time.monotonic()  # before the reservation it measures from, however slow
    await waiting.acquire()  # the burst is gone: the next slot is 0.1 s away
    with anyio.move_on_after(0.03) as scope:
        await waiting.acquire()
    assert scope.cancelled_caught
    await other.acquire()
    # The cancelled caller's slot was given back: the other worker gets it, 0.1 s after the
    # start, not the one after it (0.2 s).
    assert 0.1 - 0.005 < sleep.ends[0] - start < 0.1 + SLACK
    assert waiting.waiters == 0


async def test_a_caller_cancelled_while_its_reservation_is_answered_gives_the_slot_back(
    redis: Any, prefix: str
) -> None:
    from bitrix_batch.redis import RedisBucket, RedisLink

    class SlowReplies(RedisLink):
        """The script runs at once; the first reply takes 50 ms to come back."""

        slow = True

        async def run(self, *args: Any, **options: Any) -> list[str] | None:
            reply = await super().run(*args, **options)
            if self.slow:
                self.slow = False
                await anyio.sleep(0.05)
            return reply

    sleep = RecordingSleep()
    other = make_bucket(redis, prefix, RateLimit(2, 10.0), sleep=sleep)
    waiting = RedisBucket(SlowReplies(redis), f"{prefix}:rate", RateLimit(2, 10.0), headroom=0)
    await other.acquire()
    start = time.monotonic()  # before the reservation it measures from, however slow
    await other.acquire()  # the burst is gone: the next slot is 0.1 s away
    with anyio.move_on_after(0.02) as scope:  # while the reply is on its way
        await waiting.acquire()
    assert scope.cancelled_caught
    await other.acquire()
    # The slot reserved for the cancelled caller went back: the other worker has it.
    assert 0.1 - 0.005 < sleep.ends[-1] - start < 0.1 + SLACK
    assert waiting.waiters == 0


async def test_callers_that_keep_giving_up_do_not_block_the_bucket(redis: Any, prefix: str) -> None:
    """Callers with a deadline of their own, retrying: the slots they leave are not lost."""
    from bitrix_batch.redis import RedisBucket, RedisLink

    bucket = RedisBucket(RedisLink(redis), f"{prefix}:rate", RateLimit(2, 50.0), headroom=0)
    admitted = 0
    stop = anyio.current_time() + 0.5

    async def caller() -> None:
        nonlocal admitted
        while anyio.current_time() < stop:
            with anyio.move_on_after(0.03):
                await bucket.acquire()
                admitted += 1

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(caller)
    # 2 + 0.5 s x 50/s = 27 at most. With the slots kept, 8 callers would reserve 8 slots
    # per 0.03 s (270/s) and only the first three or so would be served. A loaded machine
    # loses some slots to slow round trips (16 were seen), hence the low floor.
    assert 8 <= admitted <= 28
    assert bucket.level < 10


async def test_shared_limits_flush_writes_the_503s_and_holds(redis: Any, prefix: str) -> None:
    from bitrix_batch.redis import SharedLimits

    hook = "https://portal.bitrix24.com/rest/1/code/"
    sleep = RecordingSleep()
    one = SharedLimits(redis, hook, prefix=prefix, headroom=0)
    two = SharedLimits(redis, hook, prefix=prefix, headroom=0, sleep=sleep)
    one.bucket.on_rejected()
    one.budget.observe_blocked("crm.lead.add")
    assert await one.flush()
    assert one.budget.unshared == {}
    await two.budget.sync()
    assert two.budget.is_held("crm.lead.add")
    assert two.bucket.level == 0.0
    await two.bucket.acquire()  # the bucket is full: one interval (0.5 s at 2/s) to wait
    assert sleep.calls == [pytest.approx(0.5, abs=0.02)]
