"""The portal's two limits: the request-rate leaky bucket and the operating-time limiter.

Both read time from an injected clock, so tests move time forward instead of sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .config import EmulatorConfig

__all__ = ["LeakyBucket", "OperatingLimiter", "OperatingState"]


class LeakyBucket:
    """Every request adds 1; the level drains continuously; above ``burst`` requests fail.

    The first ``burst`` requests of a cold bucket pass at once; after that one passes each
    ``1/drain`` seconds.
    """

    def __init__(
        self,
        burst: int,
        drain: float,
        clock: Callable[[], float],
        count_rejected: bool = False,
    ) -> None:
        self.burst = burst
        self.drain = drain
        self.clock = clock
        self.count_rejected = count_rejected
        self.level = 0.0
        self._last: float | None = None

    def _drain(self) -> None:
        now = self.clock()
        if self._last is not None and now > self._last:
            self.level = max(0.0, self.level - (now - self._last) * self.drain)
        if self._last is None or now > self._last:
            self._last = now

    def try_acquire(self) -> bool:
        """Count one request; False means it must be answered 503 QUERY_LIMIT_EXCEEDED."""
        self._drain()
        if self.level + 1 > self.burst:
            if self.count_rejected:
                self.level += 1
            return False
        self.level += 1
        return True

    def reset(self) -> None:
        """Empty the bucket."""
        self.level = 0.0
        self._last = None


@dataclass
class OperatingState:
    """What ``time.operating`` and ``time.operating_reset_at`` report for one method."""

    operating: float
    reset_at: int
    blocked: bool


class OperatingLimiter:
    """Per credential and method: a sliding window of buckets summing charged seconds.

    In "window" mode a method is blocked while the window sum is above the limit (it frees up
    as old buckets age out). In "ban" mode crossing the limit bans the method for a fixed time
    and clears its window.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._buckets: dict[tuple[str, str], dict[int, float]] = {}
        self._bans: dict[tuple[str, str], float] = {}

    @property
    def _width(self) -> float:
        return self.config.operating_bucket_seconds

    @property
    def _count(self) -> int:
        return max(1, math.ceil(self.config.operating_window_seconds / self._width))

    def _live(self, key: tuple[str, str], now: float) -> dict[int, float]:
        buckets = self._buckets.get(key)
        if not buckets:
            return {}
        current = math.floor(now / self._width)
        oldest = current - self._count + 1
        for index in [i for i in buckets if i < oldest]:
            del buckets[index]
        return buckets

    def state(self, credential: str, method: str) -> OperatingState:
        """The window sum, when part of it frees up, and whether the method is blocked now."""
        key = (credential, method)
        now = self.config.clock()
        ban = self._bans.get(key)
        if ban is not None and now >= ban:
            del self._bans[key]
            ban = None
        buckets = self._live(key, now)
        total = sum(buckets.values())
        if ban is not None:
            return OperatingState(total, math.ceil(ban), self.config.operating_limit)
        if buckets:
            reset_at = math.ceil((min(buckets) + self._count) * self._width)
        else:
            reset_at = math.floor(now)
        blocked = (
            self.config.operating_mode == "window"
            and self.config.operating_limit
            and total > self.config.operating_limit_seconds
        )
        return OperatingState(total, reset_at, blocked)

    def charge(self, credential: str, method: str, seconds: float) -> None:
        """Add one request's time on a method; at or under the floor it costs nothing."""
        if seconds <= self.config.operating_floor_seconds:
            return
        key = (credential, method)
        now = self.config.clock()
        buckets = self._live(key, now)
        self._buckets[key] = buckets
        index = math.floor(now / self._width)
        buckets[index] = buckets.get(index, 0.0) + seconds
        if (
            self.config.operating_mode == "ban"
            and self.config.operating_limit
            and sum(buckets.values()) > self.config.operating_limit_seconds
        ):
            self._bans[key] = now + self.config.operating_ban_seconds
            buckets.clear()

    def reset(self) -> None:
        """Forget every charge and ban."""
        self._buckets.clear()
        self._bans.clear()
