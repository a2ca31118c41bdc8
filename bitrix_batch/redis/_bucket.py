"""The portal's request bucket in Redis: one leaky bucket for every worker that shares it."""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import ClassVar

import anyio

from bitrix_batch._throttle import Clock, LeakyBucket, RateLimit, Sleep

from ._keys import PortalKey
from ._link import RedisLink
from ._scripts import RESERVE

__all__ = ["RedisBucket"]


class RedisBucket:
    """A `RateLimiter` whose level lives in Redis, shared by all the workers of a portal.

    The model is `LeakyBucket`'s: a request counts when it is sent, the level drains
    continuously at the rate, and a request goes when ``level + 1 <= burst``. Here the level is
    kept by one Lua script run atomically on the Redis server, on the server's clock: each
    ``acquire()`` reserves the next free slot in one round trip and sleeps until it, so
    callers of every process are served in the order they reached Redis and none starves.
    Fractional rates are exact (times are kept in microseconds).

    Headroom: a request reaches Bitrix24 a little after its slot (scheduling, network), so
    two can land closer together than planned. `headroom` keeps that many requests of the
    burst unused: a request may then arrive up to ``headroom / rate`` seconds early (1 s at
    2 per second) without overflowing the server's bucket, which costs nothing in sustained
    throughput. So the rate itself is the server's by default (``safety`` 0; `LeakyBucket`,
    which has no headroom, holds back 2% instead). A 503 ``QUERY_LIMIT_EXCEEDED`` still seen
    is reported with ``on_rejected()``: the next reservation then starts from a full bucket,
    for every worker.

    When Redis does not answer (see `RedisLink`): each worker paces on a local `LeakyBucket`
    at ``1/workers`` of the rate and of the burst, starting full, so that all of them
    together stay within the portal's limit and nothing is ever sent unpaced (with at least
    `LeakyBucket`'s 2% safety, as there is no shared headroom then). Redis is tried
    again every ``retry_interval``; on its return the requests the local bucket still holds
    are added to the shared one. A slot reserved by a caller that is then cancelled is not
    given back: the bucket errs on the slow side.

    Args:
        link: The Redis connection (`RedisLink`).
        key: The portal's `PortalKey`, or a key name of your own.
        limit: The plan's burst and drain rate (`RateLimit`).
        headroom: Requests of the burst kept unused, in ``[0, burst)``.
        safety: Fraction of the drain rate held back, in ``[0, 1)``.
        workers: How many workers share the portal; each takes this share of the rate and
            burst while Redis is down.
        clock: Monotonic time in seconds (for the waits and the fallback only; the bucket
            itself runs on the Redis server's clock).
        sleep: Async sleep in seconds.

    Raises:
        ValueError: If `headroom`, `safety` or `workers` is out of range.
    """

    __slots__ = (
        "_capacity",
        "_clock",
        "_fallback",
        "_interval",
        "_key",
        "_level",
        "_limit",
        "_link",
        "_rate",
        "_rejections",
        "_safety",
        "_sleep",
        "_waiters",
        "_workers",
    )

    #: The default number of burst requests kept unused.
    DEFAULT_HEADROOM: ClassVar[int] = 2
    #: The default fraction of the drain rate held back: none, the headroom absorbs jitter.
    DEFAULT_SAFETY: ClassVar[float] = 0.0

    def __init__(
        self,
        link: RedisLink,
        key: PortalKey | str,
        limit: RateLimit = RateLimit.STANDARD,
        *,
        headroom: int = DEFAULT_HEADROOM,
        safety: float = DEFAULT_SAFETY,
        workers: int = 4,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if isinstance(headroom, bool) or not isinstance(headroom, int):
            raise ValueError(f"headroom must be an int, got {headroom!r}")
        if not 0 <= headroom < limit.burst:
            raise ValueError(f"headroom must be in [0, burst), got {headroom!r}")
        if not (math.isfinite(safety) and 0.0 <= safety < 1.0):
            raise ValueError(f"safety must be in [0, 1), got {safety!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self._link = link
        self._key = key.rate_key if isinstance(key, PortalKey) else key
        self._limit = limit
        self._safety = safety
        self._rate = limit.per_second * (1.0 - safety)
        self._interval = 1.0 / self._rate
        self._capacity = limit.burst - headroom
        self._workers = workers
        self._clock = clock
        self._sleep = sleep
        self._fallback: LeakyBucket | None = None
        self._rejections = 0  # 503s seen and not yet written to Redis
        self._level = 0.0  # the shared level after this worker's last reservation
        self._waiters = 0

    @property
    def limit(self) -> RateLimit:
        """The plan's burst and drain rate."""
        return self._limit

    @property
    def rate(self) -> float:
        """The drain rate actually used, in requests per second (after ``safety``)."""
        return self._rate

    @property
    def capacity(self) -> int:
        """The requests that may go at once from an empty bucket (burst less headroom)."""
        return self._capacity

    @property
    def key(self) -> str:
        """The Redis key of the bucket."""
        return self._key

    @property
    def level(self) -> float:
        """The shared level after this worker's last reservation, in requests.

        It counts the slots reserved for later too, so it may exceed `capacity` while
        callers wait; at each reserved slot the level is at most `capacity`.
        """
        return self._level

    @property
    def degraded(self) -> bool:
        """True while Redis does not answer and the local fallback paces this worker."""
        return self._fallback is not None

    @property
    def waiters(self) -> int:
        """How many callers are inside ``acquire()`` right now."""
        return self._waiters

    def fallback_limit(self) -> RateLimit:
        """The local bucket's limit while Redis is down: this worker's share."""
        return RateLimit(
            max(1, self._capacity // self._workers), self._limit.per_second / self._workers
        )

    async def acquire(self) -> float:
        """Reserve the next slot in the shared bucket, sleep until it, return the wait.

        Returns:
            The seconds spent waiting (the Redis round trip included).
        """
        start = self._clock()
        self._waiters += 1
        try:
            if self._link.due():
                rejections = self._rejections
                fallback = self._fallback
                carry = fallback.level if fallback is not None else 0.0
                reply = await self._link.run(
                    RESERVE,
                    [self._key],
                    [
                        f"{self._interval:.9f}",
                        str(self._capacity),
                        f"{1.0 + carry:.6f}",
                        str(self._limit.burst if rejections else 0),
                    ],
                )
                if reply is not None:
                    self._rejections -= rejections
                    if self._fallback is fallback:
                        self._fallback = None
                    wait, self._level = float(reply[0]), float(reply[1])
                    if wait > 0:
                        await self._sleep(wait)
                    return self._clock() - start
            await self._local().acquire()
            return self._clock() - start
        finally:
            self._waiters -= 1

    def on_rejected(self) -> None:
        """Record a 503 ``QUERY_LIMIT_EXCEEDED``: the shared bucket is full.

        Written to Redis with this worker's next reservation (this method cannot wait), and
        to the local fallback at once if it is in use.
        """
        self._rejections += 1
        if self._fallback is not None:
            self._fallback.on_rejected()

    def _local(self) -> LeakyBucket:
        if self._fallback is None:
            self._fallback = LeakyBucket(
                self.fallback_limit(),
                clock=self._clock,
                sleep=self._sleep,
                safety=max(self._safety, LeakyBucket.DEFAULT_SAFETY),
            )
            # The shared level is unknown: start full rather than burst past the others.
            self._fallback.on_rejected()
        return self._fallback

    async def __aenter__(self) -> None:
        """Acquire one request's slot, so ``async with bucket:`` reads naturally."""
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        mode = "local fallback" if self._fallback is not None else "shared"
        return (
            f"<RedisBucket {self._key} {mode} capacity={self._capacity}/{self._limit.burst} "
            f"rate={self._rate:g}/s waiters={self._waiters}>"
        )
