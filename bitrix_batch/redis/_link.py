"""The connection to Redis as the limiters see it: a deadline on every call, and health.

A limiter must never wait on Redis longer than on the portal: every script call runs under a
deadline (`timeout`), and a call that fails or runs out of time marks the link down. While it
is down the limiters use their local fallbacks and try Redis again every `retry_interval`
seconds. Going down is logged once as a WARNING, coming back as INFO, and both are handed to
`on_change`. Messages name the error's type and text; coredis puts the address in them, never
a password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import coredis
from coredis.commands.script import Script
from coredis.exceptions import RedisError

from bitrix_batch._throttle import Clock

__all__ = ["RedisLink"]

_log = logging.getLogger("bitrix_batch.redis")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLink:
    """A coredis client with a deadline per call, and whether Redis answers now.

    The caller opens and closes the client (``async with coredis.Redis(...) as redis``); one
    link may serve the bucket and the budget of many portals.

    Args:
        redis: An entered coredis client (standalone or cluster).
        timeout: The most seconds one script call may take before Redis counts as down.
        retry_interval: Seconds between tries while Redis is down.
        clock: Monotonic time in seconds.
        on_change: Called with False when Redis stops answering and True when it answers
            again; an error it raises is logged, not raised.

    Raises:
        ValueError: If `timeout` or `retry_interval` is not positive.
    """

    __slots__ = (
        "_available",
        "_clock",
        "_next_try",
        "_on_change",
        "_redis",
        "_retry_interval",
        "_scripts",
        "_timeout",
        "failures",
    )

    def __init__(
        self,
        redis: coredis.client.Client[Any],
        *,
        timeout: float = 1.0,
        retry_interval: float = 5.0,
        clock: Clock = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not (timeout > 0 and retry_interval > 0):
            raise ValueError("timeout and retry_interval must be positive")
        self._redis = redis
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._on_change = on_change
        self._available = True
        self._next_try = 0.0
        self._scripts: dict[str, Script[Any]] = {}
        #: How many calls failed since this link was made.
        self.failures = 0

    @property
    def available(self) -> bool:
        """False from a failed call until the next call that succeeds."""
        return self._available

    def due(self) -> bool:
        """Whether the next call should go to Redis: it answers, or it is time to try again."""
        return self._available or self._clock() >= self._next_try

    @property
    def timeout(self) -> float:
        """The most seconds one script call may take."""
        return self._timeout

    @property
    def retry_interval(self) -> float:
        """Seconds between tries while Redis is down."""
        return self._retry_interval

    def retry_in(self) -> float:
        """Seconds until the next call should go to Redis (0.0 when it answers)."""
        return 0.0 if self._available else max(0.0, self._next_try - self._clock())

    async def run(
        self,
        source: str,
        keys: Sequence[str],
        args: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> list[str] | None:
        """Run a Lua script; return its reply as strings, or None if Redis did not answer.

        Nothing is raised for Redis' own failures: they mark the link down (see the class).
        `deadline` (seconds) shortens the link's timeout for this call.
        """
        if not self._available:  # a probe: the others keep to their fallbacks meanwhile
            self._next_try = self._clock() + self._retry_interval
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._redis.register_script(source)
        try:
            with anyio.fail_after(self._timeout if deadline is None else deadline):
                reply: Any = await script(keys=list(keys), args=list(args))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if not self._available:
            self._available = True
            _log.info("bitrix_batch: Redis answers again; the shared limits are back in use")
            self._tell(True)
        values = reply if isinstance(reply, list | tuple) else [reply]
        return [_text(v) for v in values]

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._next_try = self._clock() + self._retry_interval
        if self._available:
            self._available = False
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            _log.warning(
                "bitrix_batch: Redis does not answer (%s); each worker now paces on its own "
                "at its share of the rate, and Redis is tried again every %g s",
                reason,
                self._retry_interval,
            )
            self._tell(False)

    def _tell(self, available: bool) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(available)
        except Exception:
            _log.exception("bitrix_batch: the on_change hook of a RedisLink failed")

    def __repr__(self) -> str:
        state = "up" if self._available else "down"
        return f"<RedisLink {state} failures={self.failures}>"
