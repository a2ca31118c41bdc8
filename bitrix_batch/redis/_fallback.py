"""One worker's share of the portal's bucket while Redis does not answer."""

from __future__ import annotations

from bitrix_batch._throttle import RateLimit

__all__ = ["LocalShare"]


class LocalShare:
    """A leaky bucket at this worker's share of the rate and burst, closed until `start`.

    Unlike `LeakyBucket` it has no lock and does not wait: the caller asks `delay()`, sleeps,
    and asks again, so that a caller waiting here can go back to Redis as soon as it answers
    (a slot taken here is a request Redis does not count).

    `start` is the local time at which the slots this worker last saw reserved in Redis end:
    those requests are still being sent at the full shared rate, so nothing is sent here
    before. From `start` the share counts as full (the others' level is unknown), so its
    first request goes one share interval later, never in a burst.

    Args:
        limit: This worker's share of the plan's burst and rate.
        safety: Fraction of the drain rate held back.
        start: Local clock time before which nothing is sent.
    """

    __slots__ = ("_burst", "_last", "_level", "_rate", "sent")

    def __init__(self, limit: RateLimit, safety: float, start: float) -> None:
        self._burst = float(limit.burst)
        self._rate = limit.per_second * (1.0 - safety)
        self._level = self._burst
        self._last = start
        #: How many requests this share let through.
        self.sent = 0

    def level(self, now: float) -> float:
        """Requests counted here and not yet drained at `now` (full before the start)."""
        return max(0.0, self._level - max(0.0, now - self._last) * self._rate)

    def delay(self, now: float) -> float:
        """Seconds from `now` until one more request fits (0.0: it fits now)."""
        at = max(now, self._last)
        excess = self.level(at) + 1.0 - self._burst
        return (at - now) + max(0.0, excess) / self._rate

    def take(self, now: float) -> None:
        """Count one request sent at `now` (after `delay(now)` said 0)."""
        self._level, self._last = self.level(now) + 1.0, max(now, self._last)
        self.sent += 1

    def on_rejected(self, now: float) -> None:
        """A 503: the share counts as full from `now` (or from its start, if later)."""
        self._level, self._last = self._burst, max(now, self._last)
