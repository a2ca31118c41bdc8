"""A virtual clock for tests: time moves only when someone sleeps on it.

Pass the instance as ``clock=`` and its ``sleep`` as ``sleep=`` to anything that waits
(``LeakyBucket``, ``OperatingBudget``, the retry policy), and pass ``wall`` where a
wall-clock Unix time is needed. Waits then take no real time and come out exact.
"""

from __future__ import annotations

import anyio.lowlevel

__all__ = ["WALL_EPOCH", "FakeClock"]

#: The Unix time that ``FakeClock.wall()`` reports when ``now`` is 0 (November 2023).
WALL_EPOCH = 1_700_000_000.0


class FakeClock:
    """A monotonic clock in seconds whose ``sleep`` advances it instantly.

    Attributes:
        now: The current virtual time; tests may also move it forward by hand.
    """

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """Return the current virtual time, like ``anyio.current_time``."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (negative counts as 0), then yield once.

        The checkpoint lets other tasks run and delivers cancellation, as a real
        ``anyio.sleep`` would.
        """
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()

    def wall(self) -> float:
        """Return the wall-clock Unix time matching ``now`` (``WALL_EPOCH + now``)."""
        return WALL_EPOCH + self.now

    def __repr__(self) -> str:
        return f"<FakeClock now={self.now!r}>"
