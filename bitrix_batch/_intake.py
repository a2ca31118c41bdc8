"""Reading a stream of commands lazily: a window ahead of what is in flight, never the whole job.

A command list that is a mapping or a sequence is planned whole, before anything is sent. Any
other iterable, or an async iterable, of ``(key, command)`` pairs is a *stream*: `Intake` reads it
as the job goes, checks each command (`CommandReader`), packs it (`Packer`) and hands full chunks
to the scheduler, so that at most ``window`` commands are read and not yet final. An invalid
command in a stream does not stop the job: it is reported as skipped (`INVALID_COMMAND`).

A synchronous iterable is read in the executor's own task (as a list would have been built), an
async iterable by a task of its own that fills a buffer of ``window`` items, so a slow source never
holds up answers coming back.
"""

from __future__ import annotations

import itertools
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._commands import CommandReader
from ._errors import InvalidCommandError, PlanError
from ._planner import Packer
from ._scheduler import Scheduler

__all__ = ["DEFAULT_LOOKBACK", "DEFAULT_WINDOW", "Intake", "is_stream"]

#: Commands read ahead of those that are final.
DEFAULT_WINDOW = 5_000
#: How far back a command of a stream may refer (and keys are checked for repeats).
DEFAULT_LOOKBACK = 10_000


def is_stream(cmd: Any) -> bool:
    """Whether `cmd` is read lazily (an iterable or async iterable that is not a list/mapping)."""
    if isinstance(cmd, Mapping | Sequence):
        return False
    return isinstance(cmd, AsyncIterable | Iterable)


class Intake:
    """Feeds a stream of ``(key, command)`` pairs into a scheduler, a window at a time."""

    def __init__(
        self,
        source: Iterable[Any] | AsyncIterable[Any],
        scheduler: Scheduler,
        *,
        reads_only: Callable[[str], bool],
        window: int,
        lookback: int | None,
        halt: bool,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._scheduler = scheduler
        self._reader = CommandReader(reads_only, lookback)
        self._packer = Packer(halt=halt)
        self._window = window
        self._halt = halt
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterable[Any] | None = None
        if isinstance(source, AsyncIterable):
            self._async = source
            self._buffer_send, self._buffer = anyio.create_memory_object_stream[Any](window)
        else:
            self._sync = iter(source)
        self.done = False  # the input ended (or stopped being read) and everything is handed over

    @property
    def read(self) -> int:
        """Items read so far."""
        return self._reader.count

    async def pump(self, wake: MemoryObjectSendStream[None]) -> None:
        """Read an async source into the buffer (run as a task; waits while the buffer is full)."""
        assert self._async is not None
        with wake:
            await self._pump(self._async, wake)

    async def _pump(
        self, source: AsyncIterable[Any], wake: MemoryObjectSendStream[None]
    ) -> None:
        async with self._buffer_send:
            iterator: AsyncIterator[Any] = aiter(source)
            try:
                async for item in iterator:
                    await self._buffer_send.send(item)
                    wake.send_nowait(None)
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
        wake.send_nowait(None)

    def feed(self, delivered: int) -> None:
        """Read what the window has room for, check and pack it, hand full chunks over.

        `delivered` is how many outcomes the caller has been handed: the window counts every
        command read and not yet handed over (pending, being packed, or final but waiting for
        a slow reader), so a slow consumer holds the input back too.

        When the scheduler would otherwise sit idle (nothing in flight or ready) the chunks
        still filling are handed over as they are, so a slow source or a small window never
        stalls the job. After a halt or a fatal error the rest of the input is not read.
        """
        if self.done:
            return
        scheduler = self._scheduler
        if scheduler.stopped:
            self._finish()
            return
        room = self._window - (self._reader.count - delivered)
        ended = False
        if room > 0:
            items, ended = self._take(room)
            for item in items:
                if not self._add(item):
                    ended = True  # halt: nothing after an invalid command runs
                    break
            scheduler.read_up_to(self._reader.count)
        if ended or scheduler.stopped:
            self._finish()
        elif self._packer.held and scheduler.idle:
            scheduler.extend(self._packer.flush())

    def _take(self, room: int) -> tuple[list[Any], bool]:
        if self._sync is not None:
            items = list(itertools.islice(self._sync, room))
            return items, len(items) < room
        items = []
        ended = False
        while len(items) < room:
            try:
                items.append(self._buffer.receive_nowait())
            except anyio.WouldBlock:
                break
            except anyio.EndOfStream:
                ended = True
                break
        return items, ended

    def _add(self, item: Any) -> bool:
        """Take one item in; False when the job must read no further (halt after a bad one)."""
        reader = self._reader
        try:
            entry = reader.read_item(item)
        except PlanError as error:
            index = reader.count - 1
            key = getattr(error, "key", None)
            if key is None:
                key = item[0] if _is_pair(item) and _is_key(item[0]) else index
            method = error.method if isinstance(error, InvalidCommandError) else None
            self._scheduler.add_invalid(index, key, method or getattr(error, "method", None), error)
            return not self._halt
        self._scheduler.extend(self._packer.add(entry))
        return True

    def _finish(self) -> None:
        self._scheduler.extend(self._packer.flush())
        self._scheduler.close()
        self.close()
        self.done = True

    def close(self) -> None:
        """Stop reading (the job ended, or its caller left)."""
        if self._async is not None:
            self._buffer.close()

    @property
    def waiting_for_input(self) -> bool:
        """True when only the input can bring new work (an async source that is slow)."""
        return not self.done and self._async is not None


def _is_pair(item: Any) -> bool:
    return (type(item) is tuple or type(item) is list) and len(item) == 2


def _is_key(key: Any) -> bool:
    return not isinstance(key, bool) and isinstance(key, str | int)
