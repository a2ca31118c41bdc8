"""The portal's request bucket in Redis: one leaky bucket for every worker that shares it."""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import ClassVar

import anyio
import anyio.lowlevel

from bitrix_batch._throttle import Clock, LeakyBucket, RateLimit, Sleep

from ._fallback import LocalShare
from ._keys import PortalKey
from ._link import RedisLink
from ._scripts import RELEASE, RESERVE

__all__ = ["RedisBucket"]

_EPSILON = 1e-9


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
    is reported with ``on_rejected()``: the next reservation (or `flush()`) then starts from a
    full bucket, for every worker. A caller cancelled while it sleeps gives its slot back.

    When Redis does not answer (see `RedisLink`), each worker paces on a local share of
    ``1/workers`` of the rate and of the burst (with at least `LeakyBucket`'s 2% safety, as
    there is no shared headroom then), so that all of them together stay within the portal's
    limit; nothing is ever sent unpaced. The share sends nothing before the slots this worker
    last saw reserved in Redis end (their callers are still sending at the full rate), then
    starts full. Its callers look at Redis again after each sleep, and go back to it once it
    answers; what the share sent and has not drained is counted in Redis then, with what the
    other workers' shares may send until they find Redis back too. A worker cut
    off from a Redis the others still reach adds its share to their full rate: see
    docs/shared-limits.md.

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
        "_debt",
        "_fallback",
        "_horizon",
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
    #: Requests queued beyond the burst past which a stored level is taken for a bad value.
    MAX_QUEUE: ClassVar[int] = 1000
    #: The most seconds a cancelled caller spends giving its slot back.
    RELEASE_TIMEOUT: ClassVar[float] = 0.25

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
        self._fallback: LocalShare | None = None
        self._horizon = -math.inf  # local time the slots last seen reserved in Redis end
        self._debt = 0.0  # fallback requests not yet counted in Redis
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
            The seconds spent waiting (the Redis round trips included).
        """
        start = self._clock()
        self._waiters += 1
        try:
            # Loop: a caller waiting in the fallback goes back to Redis as soon as it answers.
            while True:
                if self._link.due() and await self._reserve():
                    return self._clock() - start
                share = self._local()
                now = self._clock()
                delay = share.delay(now)
                if delay <= _EPSILON:
                    share.take(now)
                    return self._clock() - start
                await self._sleep(min(delay, max(self._link.retry_in(), _EPSILON)))
        finally:
            self._waiters -= 1

    async def flush(self) -> bool:
        """Write the 503s seen since this worker's last reservation to Redis now.

        `on_rejected()` cannot wait, so a 503 reaches Redis with the next ``acquire()``; a
        worker that sends nothing more (it is done, or shutting down) calls this instead.

        Returns:
            True if there was nothing to write or Redis took it.
        """
        if not self._rejections:
            return True
        rejections, self._rejections = self._rejections, 0
        args = [*self._head(), str(self._capacity), "0", str(self._limit.burst)]
        if await self._link.run(RESERVE, [self._key], args) is None:
            self._rejections += rejections
            return False
        return True

    def on_rejected(self) -> None:
        """Record a 503 ``QUERY_LIMIT_EXCEEDED``: the shared bucket is full.

        Written to Redis with this worker's next reservation (this method cannot wait; see
        `flush()`), and to the local fallback at once if it is in use.
        """
        self._rejections += 1
        if self._fallback is not None:
            self._fallback.on_rejected(self._clock())

    async def _reserve(self) -> bool:
        """One reservation in Redis and the sleep until its slot; False if Redis is away."""
        # Taken before the await: concurrent callers must not each report the same 503s.
        rejections, self._rejections = self._rejections, 0
        owed, self._debt = self._debt, 0.0
        fallback = self._fallback
        sent = fallback.sent if fallback is not None else 0
        unpaid = 0.0
        if fallback is not None:
            # What the fallback sent and the portal may not have drained yet; and what the
            # other workers' fallbacks may still send before their next try finds Redis back.
            unpaid = fallback.level(self._clock()) + self._others_until_back()
        args = [
            *self._head(),
            str(self._capacity),
            f"{1.0 + owed + unpaid:.6f}",
            str(self._limit.burst if rejections else 0),
        ]
        try:
            # Shielded (the link's deadline bounds it): a caller cancelled while the script
            # runs would leave a slot reserved in Redis that nobody sends or gives back.
            with anyio.CancelScope(shield=True):
                reply = await self._link.run(RESERVE, [self._key], args)
        except BaseException:
            self._rejections += rejections
            self._debt += owed
            raise
        if reply is None:  # the fallback, still in place, is counted again next time
            self._rejections += rejections
            self._debt += owed
            return False
        if fallback is not None:
            # Sent by other callers of this worker while the reply was on its way.
            self._debt += fallback.sent - sent
            if self._fallback is fallback:
                self._fallback = None
        wait, self._level = float(reply[0]), float(reply[1])
        # Until then the slots reserved so far are being sent: a fallback waits for them.
        self._horizon = max(self._horizon, self._clock() + self._level * self._interval)
        try:
            if wait > 0:
                await self._sleep(wait)
            else:  # a cancellation that came during the shielded call is taken here
                await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            # Nothing was sent for this slot: give it back, or the others would wait for
            # it. Shielded, and bounded by a short deadline of its own.
            with anyio.CancelScope(shield=True):
                await self._link.run(
                    RELEASE, [self._key], [*self._head(), "1"], deadline=self.RELEASE_TIMEOUT
                )
            raise
        return True

    def _others_until_back(self) -> float:
        """Requests the other workers' shares may send until each of them is back in Redis.

        Each tries Redis again within ``retry_interval`` (plus one call's timeout) of this
        worker finding it back; meanwhile each may send at its share of the rate.
        """
        window = self._link.retry_interval + self._link.timeout
        return (self._workers - 1) * self._rate / self._workers * window

    def _head(self) -> list[str]:
        """The first two arguments of every bucket script: interval and longest queue."""
        most = (self._capacity + self.MAX_QUEUE) * self._interval
        return [f"{self._interval:.9f}", f"{most:.6f}"]

    def _local(self) -> LocalShare:
        if self._fallback is None:
            self._fallback = LocalShare(
                self.fallback_limit(),
                max(self._safety, LeakyBucket.DEFAULT_SAFETY),
                max(self._clock(), self._horizon),
            )
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
