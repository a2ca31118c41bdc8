"""Client-side pacing against Bitrix24's two server limits.

This module owns one concern: deciding *when* a request may be sent. ``LeakyBucket``
mirrors the per-portal request-rate bucket (503 ``QUERY_LIMIT_EXCEEDED``) and
``OperatingBudget`` the per-method operating-time budget (429 ``OPERATION_TIME_LIMIT``);
see §4 of ``bitrix-server-semantics.md``. Both are built on anyio primitives and take an
injectable ``clock`` and ``sleep`` so tests run on virtual time and check exact waits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import anyio

from ._loops import LoopLock
from ._response import as_float

__all__ = [
    "Clock",
    "LeakyBucket",
    "OperatingBudget",
    "RateLimit",
    "RateLimiter",
    "Sleep",
]

#: A monotonic clock in seconds. The default is ``time.monotonic``, not
#: ``anyio.current_time``: trio's clock starts at a random offset in each run, and a limiter
#: outlives the runs of the event loop that use it.
Clock: TypeAlias = Callable[[], float]

#: An async sleep taking seconds, like ``anyio.sleep``.
Sleep: TypeAlias = Callable[[float], Awaitable[None]]

#: Float slack when comparing bucket levels, so that after sleeping exactly the computed
#: wait a request is admitted even if the subtraction left ``50.000000000001``.
_EPSILON = 1e-9

#: The shortest hold ``OperatingBudget`` applies. A reset time at or before our wall
#: clock means the clocks disagree (``operating_reset_at`` is a whole-second Unix time,
#: §3.3); holding a second keeps a blocked method from being re-sent in a tight loop.
_MIN_HOLD = 1.0


# --- request rate ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A leaky-bucket request-rate limit: the server's burst X and drain rate Y.

    Bitrix24 adds 1 per HTTP request (a whole ``batch`` counts once), drains
    ``per_second`` continuously, and answers 503 ``QUERY_LIMIT_EXCEEDED`` once the
    counter passes ``burst`` (§4.1). Use the presets ``RateLimit.STANDARD`` (50, 2/s)
    and ``RateLimit.ENTERPRISE`` (250, 5/s), or build one for a custom plan.

    Attributes:
        burst: Requests that may be sent at once from an empty bucket.
        per_second: Requests per second the bucket drains.

    Raises:
        ValueError: If ``burst`` is not a positive int or ``per_second`` not a positive
            finite number.
    """

    STANDARD: ClassVar[RateLimit]
    ENTERPRISE: ClassVar[RateLimit]

    burst: int
    per_second: float

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int):
            raise ValueError(f"burst must be an int, got {self.burst!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst!r}")
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ValueError(f"per_second must be positive, got {self.per_second!r}")


# Documented plan figures, b24restdocs `limits.md` (§4.1 of the semantics file).
RateLimit.STANDARD = RateLimit(burst=50, per_second=2.0)
RateLimit.ENTERPRISE = RateLimit(burst=250, per_second=5.0)


@runtime_checkable
class RateLimiter(Protocol):
    """What a client needs from a request-rate limiter.

    ``LeakyBucket`` is the in-process implementation. Another one (for example a bucket
    in Redis shared by several processes behind the same IP, which share the server's
    counter, §4.1) can be plugged in by providing these two methods.
    """

    async def acquire(self) -> float:
        """Wait until a request may be sent, count it, return the seconds waited."""
        ...

    def on_rejected(self) -> None:
        """Record that the server answered 503 ``QUERY_LIMIT_EXCEEDED``."""
        ...


class LeakyBucket:
    """The server's request-rate bucket, modelled on the client.

    A request counts when it is *sent*, i.e. when ``acquire()`` returns, not when its
    response arrives: a client that counts at response time ignores everything in flight
    and then either bursts past the limit or, as fast-bitrix24 does, waits too long and
    uses about 60% of the allowed rate. The level drains continuously; a request is
    admitted when ``level + 1 <= burst``. Waiters are admitted one at a time in arrival
    order (an ``anyio.Lock`` is fair), so nobody is starved and nobody jumps the queue.

    The server counts a request when it *arrives*, a little after we count it, and
    network jitter can bring two requests closer together than we sent them. So the
    bucket drains at ``per_second * (1 - safety)``: with the default 2% every paced
    request leaves about 0.02 of a request of slack, which absorbs jitter while keeping
    98% of the physical rate. If the server still answers 503, call ``on_rejected()``.

    One bucket may be shared by several clients talking to the same portal in one
    process: pass the same object to each, since the server keeps one counter per portal
    and source IP (§4.1). It belongs to one event loop.

    Args:
        limit: The plan's burst and drain rate.
        clock: Monotonic time in seconds.
        sleep: Async sleep in seconds.
        safety: Fraction of the drain rate held back, in ``[0, 1)``; 0 paces at exactly
            the server's rate.

    Raises:
        ValueError: If ``safety`` is outside ``[0, 1)``.
    """

    __slots__ = (
        "_clock",
        "_last",
        "_level",
        "_limit",
        "_lock",
        "_rate",
        "_sleep",
        "_waiters",
    )

    #: The default fraction of the drain rate held back.
    DEFAULT_SAFETY: ClassVar[float] = 0.02

    def __init__(
        self,
        limit: RateLimit = RateLimit.STANDARD,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        safety: float = DEFAULT_SAFETY,
    ) -> None:
        if not (math.isfinite(safety) and 0.0 <= safety < 1.0):
            raise ValueError(f"safety must be in [0, 1), got {safety!r}")
        self._limit = limit
        self._rate = limit.per_second * (1.0 - safety)
        self._clock = clock
        self._sleep = sleep
        self._level = 0.0
        self._last: float | None = None  # clock time of _level; None: never used, empty
        self._lock = LoopLock()
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
    def level(self) -> float:
        """The bucket's level now: requests counted and not yet drained."""
        if self._last is None:  # never used; also keeps repr() working outside a loop
            return 0.0
        return self._level_at(self._clock())

    @property
    def waiters(self) -> int:
        """How many callers are inside ``acquire()`` right now."""
        return self._waiters

    def has_capacity(self) -> bool:
        """Return True if ``acquire()`` would admit a request now without waiting."""
        return self._waiters == 0 and self._level_at(self._clock()) + 1 <= (
            self._limit.burst + _EPSILON
        )

    async def acquire(self) -> float:
        """Wait for room in the bucket, then count one request as sent.

        Returns:
            The seconds spent waiting, 0.0 when admitted at once.
        """
        start = self._clock()
        self._waiters += 1
        try:
            async with self._lock.get():
                # Loop rather than sleep once: on_rejected() may fill the bucket while
                # we sleep, and then the wait must be recomputed.
                while True:
                    now = self._clock()
                    level = self._level_at(now)
                    excess = level + 1 - self._limit.burst
                    if excess <= _EPSILON:
                        self._level, self._last = level + 1, now
                        break
                    await self._sleep(excess / self._rate)
        finally:
            self._waiters -= 1
        return self._clock() - start

    def on_rejected(self) -> None:
        """Record a 503 ``QUERY_LIMIT_EXCEEDED``: the server's bucket is fuller.

        Sets the level to full, so the next admissions are paced at the drain rate.
        Several rejections in a row do not stack: the level never exceeds ``burst``.
        """
        self._level, self._last = float(self._limit.burst), self._clock()

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
        try:
            level = f"{self.level:.2f}"
        except RuntimeError:  # the default clock outside an event loop
            level = f"{self._level:.2f}?"
        return (
            f"<LeakyBucket level={level}/{self._limit.burst} "
            f"rate={self._rate:g}/s waiters={self._waiters}>"
        )

    def _level_at(self, now: float) -> float:
        if self._last is None:
            return 0.0
        return max(0.0, self._level - max(0.0, now - self._last) * self._rate)


# --- operating time -------------------------------------------------------------------


class OperatingBudget:
    """Per-method operating-time budget, fed from what the server reports.

    Bitrix24 sums each method's execution time over a sliding 10-minute window and
    answers 429 ``OPERATION_TIME_LIMIT`` for that method alone once the sum passes the
    limit: 480 s in the docs, 420 s in the code, configurable per portal (§4.2). Every
    successful response carries the sum so far as ``time.operating`` (and, in a batch,
    ``result_time[key].operating`` for each command's method), plus
    ``operating_reset_at`` when part of the budget frees up. The client feeds those to
    ``observe()``, and 429s to ``observe_blocked()``; before sending a method's
    commands it checks ``is_held()`` or awaits ``wait()``. A held method never delays
    any other method.

    A hold is never shortened by a later observation: responses can arrive out of order,
    and in the newer server variant a ban clears the window, so ``operating`` reads low
    while the method is still blocked (§4.2, S7b). Holds simply expire.

    No hold is longer than ``window``: within one window every part of the sum ages out,
    so a longer ``operating_reset_at`` is a clock or unit error.

    Methods are compared case-insensitively, as the server lowercases them (§8 item 20).
    ``observe`` and ``observe_blocked`` only do bookkeeping; only ``wait`` sleeps.

    Args:
        limit: The server's operating-time limit per method and window, in seconds.
        window: The server's window, in seconds.
        headroom: Seconds below ``limit`` at which a method is held. The default 60 s
            holds at 420 s of 480, the code's default limit, and leaves room for
            requests already in flight.
        clock: Monotonic time in seconds; holds are kept in this time.
        sleep: Async sleep in seconds.
        wall_clock: Wall-clock Unix time, to turn ``operating_reset_at`` into a delay.
        default_block: Hold after a 429 that gives no reset time: the server's fixed
            300 s ban (§4.2, S7b).
        default_hold: Hold when a method is near its limit but the response has no
            ``operating_reset_at`` (older servers send none, §3.3). The default 60 s is
            one of the server's ten window buckets, the soonest any part of the sum can
            age out; the next response then reports a fresh ``operating``.

    Raises:
        ValueError: If a duration is not positive or ``headroom`` not in ``[0, limit)``.
    """

    __slots__ = (
        "_clock",
        "_default_block",
        "_default_hold",
        "_headroom",
        "_held",
        "_limit",
        "_sleep",
        "_wall_clock",
        "_window",
    )

    def __init__(
        self,
        limit: float = 480.0,
        *,
        window: float = 600.0,
        headroom: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock = time.time,
        default_block: float = 300.0,
        default_hold: float = 60.0,
    ) -> None:
        for name, value in (
            ("limit", limit),
            ("window", window),
            ("default_block", default_block),
            ("default_hold", default_hold),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not (math.isfinite(headroom) and 0 <= headroom < limit):
            raise ValueError(f"headroom must be in [0, limit), got {headroom!r}")
        self._limit = limit
        self._window = window
        self._headroom = headroom
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._default_block = default_block
        self._default_hold = default_hold
        self._held: dict[str, float] = {}  # lowercased method -> clock time it frees up

    @property
    def threshold(self) -> float:
        """The ``operating`` value, in seconds, at which a method is held."""
        return self._limit - self._headroom

    def observe(self, method: str, time_info: Mapping[str, Any] | None) -> None:
        """Update the budget from a response's ``time`` object or ``result_time[key]``.

        Missing keys, a missing object, and int, float or numeric-string values are all
        accepted, since real responses vary (§3.3, §8 item 19).

        Args:
            method: The method the object reports on (``"batch"`` for a batch's own
                ``time``, the command's method for ``result_time[key]``).
            time_info: The object, or None when the response had none.
        """
        if type(time_info) is dict:  # the usual answer, far under budget: nothing to do
            raw = time_info.get("operating")
            if (type(raw) is int or type(raw) is float) and raw < self.threshold:
                return
        elif not isinstance(time_info, Mapping):
            return
        operating = as_float(time_info.get("operating"))
        if operating is None or operating < self.threshold:
            return
        reset_at = as_float(time_info.get("operating_reset_at"))
        self._hold(method, self._delay_until(reset_at, self._default_hold))

    def observe_blocked(self, method: str, reset_at: float | None = None) -> None:
        """Hold a method the server answered 429 ``OPERATION_TIME_LIMIT`` for.

        Applies to a whole request and to a single command inside a batch alike.

        Args:
            method: The blocked method.
            reset_at: Unix time the block ends, if known; else ``default_block``
                applies.
        """
        self._hold(method, self._delay_until(reset_at, self._default_block))

    def held_until(self, method: str) -> float | None:
        """Return the clock time ``method`` frees up, or None if it is free now."""
        key = method.lower()
        until = self._held.get(key)
        if until is not None and until <= self._clock():
            del self._held[key]
            return None
        return until

    def holds(self) -> dict[str, float]:
        """Every method held now (lowercased), with the clock time it frees up."""
        now = self._clock()
        return {key: until for key, until in self._held.items() if until > now}

    def is_held(self, method: str) -> bool:
        """Return True if ``method`` must not be sent now."""
        return self.held_until(method) is not None

    def next_release(self) -> float | None:
        """Return the earliest clock time a held method frees up; None if none is."""
        now = self._clock()
        self._held = {key: until for key, until in self._held.items() if until > now}
        return min(self._held.values(), default=None)

    async def wait(self, method: str) -> float:
        """Sleep until ``method`` is free; return the seconds waited (0.0 if free)."""
        start = self._clock()
        # Loop: a response observed while we sleep may extend the hold.
        while (until := self.held_until(method)) is not None:
            await self._sleep(until - self._clock())
        return self._clock() - start

    def __repr__(self) -> str:
        try:
            now = self._clock()
        except RuntimeError:  # the default clock outside an event loop
            now = -math.inf
        held = sorted(key for key, until in self._held.items() if until > now)
        return (
            f"<OperatingBudget limit={self._limit:g} headroom={self._headroom:g} "
            f"held={held}>"
        )

    def _delay_until(self, reset_at: float | None, default: float) -> float:
        if reset_at is None:
            return default
        delay = reset_at - self._wall_clock()
        return min(max(delay, _MIN_HOLD), self._window)

    def _hold(self, method: str, delay: float) -> None:
        key = method.lower()
        until = self._clock() + delay
        self._held[key] = max(until, self._held.get(key, until))
