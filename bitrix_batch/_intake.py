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

import contextlib
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

from ._commands import CommandReader, ServerLimits
from ._errors import InvalidStreamItemError, PlanError
from ._planner import Packer
from ._result import CommandResult, SkipReason
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
        recall: Callable[[int, Any, str, bool], CommandResult | None] | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._scheduler = scheduler
        self._reader = CommandReader(reads_only, lookback, limits=limits)
        self._packer = Packer(halt=halt)
        self._window = window
        self._halt = halt
        self._recall = recall  # a journal's outcomes from an earlier run of the job
        self._refusal: Exception | None = None  # what recall raised, if it did
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterable[Any] | None = None
        if isinstance(source, AsyncIterable):
            self._async = source
            self._buffer_send, self._buffer = anyio.create_memory_object_stream[Any](window)
        else:
            self._sync = iter(source)
        self.done = False  # the input ended (or stopped being read) and everything is handed over
        #: The exception the caller's iterator raised, if it did (the job stops on it).
        self.failure: Exception | None = None

    @property
    def read(self) -> int:
        """Items read so far."""
        return self._reader.count

    @property
    def holding(self) -> bool:
        """True while commands read are waiting for their request to fill up."""
        return self._packer.held > 0

    async def pump(self, wake: MemoryObjectSendStream[None]) -> None:
        """Read an async source into the buffer (run as a task; waits while the buffer is full).

        An error from the source ends the input; the job then stops as after any fatal error
        (`failure`), keeping the outcomes of what was sent.
        """
        assert self._async is not None
        with wake:
            try:
                await self._pump(self._async, wake)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the job stopped reading (a halt, a fatal error, the caller left)
            except Exception as exc:
                self.failure = exc
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                wake.send_nowait(None)

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

    def feed(self, delivered: int) -> None:
        """Read what the window has room for, check and pack it, hand full chunks over.

        `delivered` is how many outcomes the caller has been handed: the window counts every
        command read and not yet handed over (pending, being packed, or final but waiting for
        a slow reader), so a slow consumer holds the input back too.

        When a synchronous source has filled the window with commands that all wait for their
        requests to fill up, those requests go as they are, so a small window never stalls the
        job (an async source is flushed by the executor once it has been slow for a moment).
        After a halt or a fatal error the rest of the input is not read.
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
            for n, item in enumerate(items):
                if not self._add(item):
                    if self._refusal is not None:
                        detail = f"not run: the job stopped at an earlier command: {self._refusal}"
                        self._halted(items[n + 1 :], SkipReason.REQUEST_FAILED, detail)
                    else:
                        self._halted(items[n + 1 :])
                    ended = True  # halt: nothing after an invalid command runs
                    break
            scheduler.read_up_to(self._reader.count)
        if ended or scheduler.stopped:
            self._finish()
        elif self._sync is not None and self._packer.held and scheduler.idle:
            self.flush()

    def flush(self) -> None:
        """Send the requests still filling up as they are."""
        self._scheduler.extend(self._packer.flush(), referred=True)

    def _take(self, room: int) -> tuple[list[Any], bool]:
        items: list[Any] = []
        if self._sync is not None:
            append, pull = items.append, self._sync.__next__
            try:
                for _ in range(room):
                    append(pull())
            except StopIteration:
                return items, True
            except Exception as exc:  # the caller's iterator failed: the input ends here,
                self.failure = exc  # and what it gave before still runs
                return items, True
            return items, False
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
            key: Any = index if isinstance(error, InvalidStreamItemError) else item[0]
            method = getattr(error, "method", None)
            self._scheduler.add_skipped(
                index, key, method, SkipReason.INVALID_COMMAND, str(error), error
            )
            return not self._halt
        if self._recall is not None:
            try:
                known = self._recall(entry.index, entry.key, entry.method, entry.read)
            except Exception as exc:  # the journal refused (another job's): stop reading,
                self.failure = self._refusal = exc  # run what was read, raise it like a source's
                self._scheduler.add_skipped(
                    entry.index, entry.key, entry.method, SkipReason.REQUEST_FAILED, str(exc), exc
                )
                return False
            if known is not None:  # final in an earlier run: not packed, not sent
                self._scheduler.add_known(entry.index, known)
                return True
        # Counted now, not when its request is handed over: what it refers to must be kept.
        self._scheduler.refer(entry)
        self._scheduler.extend(self._packer.add(entry), referred=True)
        return True

    def _halted(
        self,
        items: list[Any],
        reason: SkipReason = SkipReason.HALTED,
        detail: str = "an earlier command was invalid and halt=True",
    ) -> None:
        """Report items read after an invalid command with halt=True (or after the journal
        refused one): never sent."""
        for item in items:
            index = self._reader.count
            self._reader.count += 1
            key = item[0] if _is_pair(item) and _is_key(item[0]) else index
            method = item[1][0] if _is_pair(item) and isinstance(item[1], tuple) else None
            self._scheduler.add_skipped(
                index,
                key,
                method if isinstance(method, str) else None,
                reason,
                detail,
            )

    def _finish(self) -> None:
        self.flush()
        self._scheduler.close()
        self.close()
        self.done = True

    def close(self) -> None:
        """Stop reading (the job ended, or its caller left)."""
        if self._async is not None:
            self._buffer.close()

    @property
    def reads_async(self) -> bool:
        """True while an async source may still bring commands (its pump task runs)."""
        return not self.done and self._async is not None


def _is_pair(item: Any) -> bool:
    return (type(item) is tuple or type(item) is list) and len(item) == 2


def _is_key(key: Any) -> bool:
    return not isinstance(key, bool) and isinstance(key, str | int)
