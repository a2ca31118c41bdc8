"""The operating-time budget shared through Redis: a method held by one worker is held for all."""

from __future__ import annotations

import math
import time

import anyio

from bitrix_batch._throttle import Clock, OperatingBudget, Sleep

from ._keys import PortalKey
from ._link import RedisLink
from ._scripts import SYNC_HOLDS

__all__ = ["SharedOperatingBudget"]


class SharedOperatingBudget(OperatingBudget):
    """An `OperatingBudget` whose holds every worker of a portal and credential sees.

    The server reports each method's operating time to every worker in its answers, but only
    the worker that got the 429, or the answer past the threshold, knows to hold the method.
    This budget writes each hold it makes to a Redis hash (method -> end, on the Redis
    server's clock) and takes the others' from it, in one atomic script. The client's sync
    bookkeeping (``observe``, ``is_held``...) stays local and instant; the exchange happens in
    the async ``wait()`` the client awaits before every HTTP attempt, at most every
    `sync_interval` seconds unless this worker has a new hold to share. A hold taken from
    Redis is checked once more after the rate limiter's wait, so a batch carrying a held
    method is handed back and parked, as with a local hold.

    A hold is never shortened, here or in Redis, and ends at the server's reset time; as in
    `OperatingBudget` none lasts more than ``window`` seconds, in Redis either. While
    Redis does not answer the holds stay local (each worker still sees the server's own 429s
    and ``time.operating``) and new ones are shared once it answers again.

    Args:
        link: The Redis connection (`RedisLink`).
        key: The portal and credential's `PortalKey`, or a hash key name of your own.
        sync_interval: The most seconds between two looks at the shared holds.
        limit, window, headroom, clock, sleep, wall_clock, default_block, default_hold: As
            for `OperatingBudget`.

    Raises:
        ValueError: As `OperatingBudget`, or if `sync_interval` is negative.
    """

    __slots__ = ("_key", "_link", "_pending", "_sync_interval", "_synced")

    def __init__(
        self,
        link: RedisLink,
        key: PortalKey | str,
        *,
        sync_interval: float = 0.5,
        limit: float = 480.0,
        window: float = 600.0,
        headroom: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock = time.time,
        default_block: float = 300.0,
        default_hold: float = 60.0,
    ) -> None:
        super().__init__(
            limit,
            window=window,
            headroom=headroom,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
            default_block=default_block,
            default_hold=default_hold,
        )
        if not (math.isfinite(sync_interval) and sync_interval >= 0):
            raise ValueError(f"sync_interval must be >= 0, got {sync_interval!r}")
        self._link = link
        self._key = key.holds_key if isinstance(key, PortalKey) else key
        self._sync_interval = sync_interval
        self._pending: dict[str, float] = {}  # holds of ours not yet written to Redis
        self._synced = -math.inf  # clock time of the last look at the shared holds

    @property
    def key(self) -> str:
        """The Redis key of the shared holds."""
        return self._key

    @property
    def unshared(self) -> dict[str, float]:
        """Holds this worker made and has not written to Redis yet (method -> clock time)."""
        return dict(self._pending)

    async def sync(self) -> bool:
        """Write this worker's new holds to Redis and take everyone's.

        Returns:
            True if Redis answered; False if it did not (the holds then stay local).
        """
        self._synced = self._clock()  # set first: concurrent waits do not all go to Redis
        if not self._link.due():
            return False
        now = self._clock()
        sent = {key: until for key, until in self._pending.items() if until > now}
        args = [f"{self._window:.6f}"]
        for key, until in sent.items():
            args += [key, f"{until - now:.6f}"]
        reply = await self._link.run(SYNC_HOLDS, [self._key], args)
        if reply is None:
            return False
        for key, until in sent.items():
            if self._pending.get(key) == until:  # not extended meanwhile
                del self._pending[key]
        self._pending = {k: u for k, u in self._pending.items() if u > now}
        now = self._clock()
        for key, left in zip(reply[::2], reply[1::2], strict=True):
            # No hold lasts longer than the window, whatever Redis holds (a clock step back).
            until = now + min(float(left), self._window)
            if until > self._held.get(key, -math.inf):
                self._held[key] = until
        return True

    async def wait(self, method: str) -> float:
        """Look at the shared holds if due, then sleep until ``method`` is free.

        Returns:
            The seconds waited for a hold (0.0 if the method is free).
        """
        start = self._clock()
        if self._pending or start - self._synced >= self._sync_interval:
            await self.sync()
        held = False
        # Loop: a hold may be extended, here or by another worker, while we sleep.
        while (until := self.held_until(method)) is not None:
            held = True
            await self._sleep(until - self._clock())
            await self.sync()
        # The round trip to Redis alone is not a wait for a hold.
        return self._clock() - start if held else 0.0

    def _hold(self, method: str, delay: float) -> None:
        super()._hold(method, delay)
        key = method.lower()
        self._pending[key] = self._held[key]

    def __repr__(self) -> str:
        shared = "local only" if not self._link.available else "shared"
        return f"{super().__repr__()[:-1]} {shared}>"
