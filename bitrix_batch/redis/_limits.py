"""One portal's shared limits in one object: its bucket and its budget, for a `BitrixClient`."""

from __future__ import annotations

import time
from typing import Any

import anyio
import coredis

from bitrix_batch._throttle import Clock, RateLimit, Sleep

from ._bucket import RedisBucket
from ._budget import SharedOperatingBudget
from ._keys import PortalKey
from ._link import RedisLink

__all__ = ["SharedLimits"]


class SharedLimits:
    """The request bucket and operating-time budget of one portal, shared through Redis.

    Make one per portal (and credential) in each worker, on the same Redis, and give both to
    the clients that talk to that portal::

        limits = SharedLimits(redis, webhook_url, rate_limit=RateLimit.STANDARD)
        client = BitrixClient(webhook_url, **limits.client_options())

    An application serving many portals makes one per portal, on one `RedisLink`.

    Args:
        redis: An entered coredis client, or a `RedisLink` to share between portals.
        credentials: What the client is given: a webhook URL or `Webhook`, or an `OAuth`.
        rate_limit: The portal's plan (`RateLimit.STANDARD` or `RateLimit.ENTERPRISE`).
        application: The application's client id, for an `OAuth` that does not know it.
        egress: A name for the source address of these workers (see `PortalKey`).
        prefix: The first part of every Redis key.
        workers: How many workers share the portal: each takes this share of the rate while
            Redis is down (see `RedisBucket`).
        headroom: Requests of the burst kept unused (see `RedisBucket`).
        safety: Fraction of the drain rate held back (none by default, see `RedisBucket`).
        operating_limit: The server's operating-time limit per method, in seconds.
        operating_headroom: Seconds below it at which a method is held.
        clock, sleep, wall_clock: Time sources, injectable for tests.
    """

    __slots__ = ("bucket", "budget", "key", "link")

    def __init__(
        self,
        redis: coredis.client.Client[Any] | RedisLink,
        credentials: Any,
        *,
        rate_limit: RateLimit = RateLimit.STANDARD,
        application: str | None = None,
        egress: str = "",
        prefix: str = "bitrix_batch",
        workers: int = 4,
        headroom: int = RedisBucket.DEFAULT_HEADROOM,
        safety: float = RedisBucket.DEFAULT_SAFETY,
        operating_limit: float = 480.0,
        operating_headroom: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock = time.time,
    ) -> None:
        #: The Redis connection both limiters use.
        self.link = redis if isinstance(redis, RedisLink) else RedisLink(redis, clock=clock)
        #: Whose limits these are.
        self.key = PortalKey.of(credentials, application=application, egress=egress, prefix=prefix)
        #: The shared request bucket.
        self.bucket = RedisBucket(
            self.link,
            self.key,
            rate_limit,
            headroom=headroom,
            safety=safety,
            workers=workers,
            clock=clock,
            sleep=sleep,
        )
        #: The shared operating-time budget.
        self.budget = SharedOperatingBudget(
            self.link,
            self.key,
            limit=operating_limit,
            headroom=operating_headroom,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
        )

    def client_options(self) -> dict[str, Any]:
        """``rate_limit`` and ``operating_budget`` for ``BitrixClient(url, **options)``."""
        return {"rate_limit": self.bucket, "operating_budget": self.budget}

    async def flush(self) -> bool:
        """Write what is pending to Redis now: the bucket's 503s, the budget's new holds.

        For a worker that is done or shutting down (both are otherwise written with its next
        request). Returns True if Redis took both.
        """
        bucket = await self.bucket.flush()
        return await self.budget.sync() and bucket

    def __repr__(self) -> str:
        return f"<SharedLimits {self.key.portal} {self.link!r}>"
