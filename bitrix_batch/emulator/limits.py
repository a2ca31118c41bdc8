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
    #: None when nothing is charged: the answer then reports its own start + the window.
    reset_at: int | None
    blocked: bool


class OperatingLimiter:
    """Per credential and method: a sliding window of one-minute baskets of charged seconds.

    "baskets" (today's cloud): a basket opens at the first charged call of a minute, takes the
    charges of the next 60 s, and drops out ten minutes after it opened; ``operating_reset_at``
    is when the oldest one drops out. "window" (the older code): the same, with buckets aligned
    to clock minutes. In both a method is blocked while the sum is over the limit. In "ban"
    mode crossing the limit bans the method for a fixed time and clears its window.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        #: (credential, method) -> baskets as [opened at, seconds], oldest first.
        self._baskets: dict[tuple[str, str], list[list[float]]] = {}
        self._bans: dict[tuple[str, str], float] = {}

    @property
    def _width(self) -> float:
        return self.config.operating_bucket_seconds

    @property
    def _window(self) -> float:
        if self.config.operating_mode == "baskets":
            return self.config.operating_window_seconds
        # Aligned buckets: the window is a whole number of them.
        return max(1, math.ceil(self.config.operating_window_seconds / self._width)) * self._width

    def _live(self, key: tuple[str, str], now: float) -> list[list[float]]:
        baskets = self._baskets.get(key)
        if not baskets:
            return []
        window = self._window
        while baskets and baskets[0][0] + window <= now:
            baskets.pop(0)
        return baskets

    def state(self, credential: str, method: str) -> OperatingState:
        """The window sum, when part of it frees up, and whether the method is blocked now."""
        key = (credential, method)
        now = self.config.clock()
        ban = self._bans.get(key)
        if ban is not None and now >= ban:
            del self._bans[key]
            ban = None
        baskets = self._live(key, now)
        total = sum(b[1] for b in baskets)
        if ban is not None:
            return OperatingState(total, math.ceil(ban), self.config.operating_limit)
        reset_at = math.ceil(baskets[0][0] + self._window) if baskets else None
        blocked = (
            self.config.operating_mode != "ban"
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
        baskets = self._live(key, now)
        self._baskets[key] = baskets
        if self.config.operating_mode == "baskets":
            # Whole seconds, as the server's time(): a basket then leaves at exactly the
            # `operating_reset_at` it reported, so a client waiting until then finds it gone.
            opened = float(math.floor(now))
        else:
            opened = math.floor(now / self._width) * self._width
        if baskets and now < baskets[-1][0] + self._width:
            baskets[-1][1] += seconds
        else:
            baskets.append([opened, seconds])
        if (
            self.config.operating_mode == "ban"
            and self.config.operating_limit
            and sum(b[1] for b in baskets) > self.config.operating_limit_seconds
        ):
            self._bans[key] = now + self.config.operating_ban_seconds
            baskets.clear()

    def reset(self) -> None:
        """Forget every charge and ban."""
        self._baskets.clear()
        self._bans.clear()
