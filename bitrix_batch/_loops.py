"""Which event loop is running, and a lock that follows it.

A client, its rate limiter and its OAuth credential may be used in one ``anyio.run`` and then
in another (a script calling ``anyio.run`` twice, the sync client's portal, asyncio then trio).
An ``anyio.Lock`` belongs to the loop (and backend) that first used it, so the objects that
outlive a loop take a fresh lock in each new one.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["LoopLock", "current_loop"]


def current_loop() -> object:
    """The running event loop (asyncio) or trio token: the same object for the whole run."""
    token: Any = anyio.lowlevel.current_token()
    # anyio >= 4.9 wraps the backend's token; earlier versions return it as it is.
    return getattr(token, "native_token", token)


class LoopLock:
    """An `anyio.Lock` made afresh when it is used in another event loop than before.

    The old loop is kept referenced (not just its id, which a new loop could reuse): a
    finished loop is small, and only the last one is kept.
    """

    __slots__ = ("_lock", "_loop")

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None
        self._loop: object | None = None

    def get(self) -> anyio.Lock:
        """The lock of the running event loop."""
        loop = current_loop()
        if self._lock is None or loop is not self._loop:
            self._lock, self._loop = anyio.Lock(), loop
        return self._lock
