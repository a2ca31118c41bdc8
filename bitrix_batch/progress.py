"""A terminal progress bar for jobs, on tqdm (the ``cli`` extra).

One `ProgressBar` is both a job's ``progress`` callback and its client's ``on_event`` hook::

    with ProgressBar() as bar:
        async with BitrixClient(url, on_event=bar.on_event) as client:
            result = await client.batch(cmd, progress=bar.update)

It shows the commands done (of the total), how many failed, were skipped or have an unknown
outcome, the HTTP requests sent and the 503/429 answers seen, and, on a line of its own, every
method held by the operating-time limit with the wall-clock time it ends
(``crm.contact.add held until 14:05:10 (near the operating-time limit)``), cleared when the
method is released. ``progress`` only says ``(done, total)``: to count failures, feed each
outcome of `BitrixClient.stream` to `add` (``bar.add(r)``).

Nothing here is imported by `bitrix_batch` itself, and tqdm is imported only when a bar is
made; `JobCounts` (the counting alone, for logs or a summary) needs no tqdm.

A bar never breaks its job: once its stream stops taking writes (a closed pipe, a full disk,
a closed file) it draws nothing more, and `write`, `refresh` and `close` still return.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, TextIO

from ._events import (
    Event,
    MethodHeld,
    MethodReleased,
    RequestAnswered,
    RequestFailed,
    RequestSent,
    RetryScheduled,
)
from ._result import CommandResult, Status

__all__ = ["JobCounts", "ProgressBar", "describe_hold"]

_EXTRA = "pip install 'bitrix_batch[cli]'"


@dataclass(slots=True)
class JobCounts:
    """What a job did so far: outcomes by status, requests, retries, 503s and 429s, holds.

    Use `on_event` as a client's ``on_event`` hook and `add` for each outcome of a stream.
    """

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    #: HTTP requests sent (each attempt counts).
    requests: int = 0
    #: HTTP requests sent and not answered yet (nor failed).
    in_flight: int = 0
    retries: int = 0
    status_503: int = 0
    status_429: int = 0
    #: Methods held now, by method, with the event that announced the hold.
    holds: dict[str, MethodHeld] = field(default_factory=dict)

    @property
    def outcomes(self) -> int:
        """Outcomes counted (every status)."""
        return self.ok + self.failed + self.skipped + self.unknown

    def add(self, outcome: CommandResult) -> None:
        """Count one command's outcome."""
        status = outcome.status
        if status is Status.OK:
            self.ok += 1
        elif status is Status.FAILED:
            self.failed += 1
        elif status is Status.SKIPPED:
            self.skipped += 1
        else:
            self.unknown += 1

    def on_event(self, event: Event) -> None:
        """Count a client event (an ``on_event`` hook)."""
        if isinstance(event, RequestSent):
            self.requests += 1
            self.in_flight += 1
        elif isinstance(event, RequestFailed):
            self.in_flight = max(0, self.in_flight - 1)
        elif isinstance(event, RequestAnswered):
            self.in_flight = max(0, self.in_flight - 1)
            if event.status == 503:
                self.status_503 += 1
            elif event.status == 429:
                self.status_429 += 1
        elif isinstance(event, RetryScheduled):
            self.retries += 1
        elif isinstance(event, MethodHeld):
            self.holds[event.method] = event
        elif isinstance(event, MethodReleased):
            self.holds.pop(event.method, None)

    def summary(self) -> str:
        """One line: ``4998 ok, 1 failed, 1 skipped, 0 unknown; 101 requests (503: 0, 429: 0)``."""
        return (
            f"{self.ok} ok, {self.failed} failed, {self.skipped} skipped,"
            f" {self.unknown} unknown; {self.requests} requests"
            f" (503: {self.status_503}, 429: {self.status_429}, retries: {self.retries})"
        )


def describe_hold(event: MethodHeld) -> str:
    """``crm.contact.add held until 14:05:10 (near the operating-time limit)``, local time."""
    until = time.strftime("%H:%M:%S", time.localtime(event.until))
    return f"{event.method} held until {until} ({event.reason})"


_TQDM: Any = None


def _tqdm_class() -> Any:
    """tqdm, without its monitor thread (a bar here is redrawn by its own thread, and the
    monitor would outlive it)."""
    global _TQDM
    if _TQDM is None:
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise ImportError(f"the progress bar needs tqdm: {_EXTRA}") from exc

        class _Bar(tqdm):  # type: ignore[misc]
            monitor_interval = 0  # read when a bar is made: no tqdm_monitor thread

        _TQDM = _Bar
    return _TQDM


class _Stream:
    """The stream a bar draws on: a write or a flush that fails (a closed pipe, a full disk, a
    closed file) marks it `broken` instead of raising, and nothing is written after that.

    tqdm must never see such an error: its ``refresh`` keeps its lock when drawing raises, and
    every later redraw, ``write`` or ``close`` in the process would wait for it forever.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.broken = stream is None

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)  # type: ignore[union-attr]
            except (OSError, ValueError):  # ValueError: a closed file
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                self.broken = True

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno: the stream's
        if name == "stream":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.stream, name)

    # Two wrappers of one stream are the same stream to tqdm (a line written above one bar
    # clears the other bars on it). Not equal to the stream itself: tqdm would then flush
    # sys.stderr and sys.stdout itself, unguarded.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Stream):
            return other.stream is self.stream
        return NotImplemented

    def __hash__(self) -> int:
        return id(self.stream)


def _refresh_loop(
    ref: weakref.ReferenceType[ProgressBar], stop: threading.Event, every: float
) -> None:
    """The refresher thread: it holds the bar only while redrawing it, so a bar dropped without
    `ProgressBar.close` is still collected (and its finalizer stops this loop)."""
    while not stop.wait(every):
        bar = ref()
        if bar is None or not bar._tick():
            return
        del bar


class ProgressBar:
    """A tqdm bar on stderr for one job; see the module's docstring for the wiring.

    Feeding it only counts (it is called for every command); a thread of its own redraws
    every `mininterval` seconds while something changed, and every second anyway so the
    elapsed time moves during a hold. Close it (or use ``with``) when the job is done; a
    bar dropped without closing stops its thread when it is garbage-collected.

    If the stream stops taking writes (a closed pipe, a full disk), the bar is `broken`: it
    draws nothing more, and no method raises because of it.

    Args:
        total: the commands in the job, if known beforehand (a stream's ``progress`` only
            gives the commands read so far; the larger of the two is shown).
        desc: the bar's label.
        unit: what is counted.
        file: where to draw (stderr by default).
        disable: draw nothing (the counts are still kept).
        mininterval: seconds between redraws.

    Raises:
        ImportError: tqdm is not installed (the message names the ``cli`` extra).
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str = "commands",
        unit: str = "cmd",
        file: TextIO | None = None,
        disable: bool = False,
        mininterval: float = 0.25,
    ) -> None:
        self._tqdm = _tqdm_class()
        self._out = _Stream(file if file is not None else sys.stderr)
        self._disable = disable
        self._mininterval = mininterval
        self.counts = JobCounts()
        self._expected = total
        self._reported = 0  # `done` as the progress callback last said
        self._failed = False  # drawing raised something else than a stream's error: stop
        self._status: Any = None  # the holds' line, made at the first hold
        self._shown_holds = ""
        self._closed = False
        self._dirty = True
        self._drawn = 0.0  # monotonic time of the last redraw
        # Redraws come from the refresher thread and from the caller's (a hold, close): one
        # at a time. tqdm's own lock keeps them apart from `write`.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._bar = self._tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=self._out,
            disable=disable,
            mininterval=mininterval,
            dynamic_ncols=True,
            leave=True,
        )
        if not disable:
            weakref.finalize(self, self._stop.set)
            self._refresher = threading.Thread(
                target=_refresh_loop,
                args=(weakref.ref(self), self._stop, mininterval),
                name="bitrix_batch-progress",
                daemon=True,
            )
            self._refresher.start()

    @property
    def broken(self) -> bool:
        """Whether drawing stopped because the stream cannot be written (or drawing failed)."""
        return self._out.broken or self._failed

    # --- feeding it ------------------------------------------------------------------------

    def update(self, done: int, total: int | None = None) -> None:
        """The ``progress`` callback: `done` commands finished of `total` (None: not known)."""
        if done > self._reported:
            self._reported = done
        if total is not None and (self._expected is None or total > self._expected):
            self._expected = total
        self._dirty = True

    def add(self, outcome: CommandResult) -> None:
        """Count one outcome (from `BitrixClient.stream`), so failures and unknowns show."""
        self.counts.add(outcome)
        self._dirty = True

    def on_event(self, event: Event) -> None:
        """The ``on_event`` hook: requests, 503/429 answers, retries, holds and releases."""
        self.counts.on_event(event)
        self._dirty = True
        if isinstance(event, MethodHeld | MethodReleased):
            self._show_holds()

    def write(self, text: str) -> None:
        """Print a line above the bar without breaking it (for log lines); dropped if the
        stream is broken."""
        if self.broken:
            return
        try:
            if self._disable or self._closed:
                self._out.write(text + "\n")
                self._out.flush()
            else:
                self._tqdm.write(text, file=self._out)
        except Exception:  # not the stream's (that one is caught below it): stop drawing
            self._failed = True

    # --- drawing ---------------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Commands finished so far."""
        return max(self._reported, self.counts.outcomes)

    def _tick(self) -> bool:
        """One turn of the refresher thread; False when it should stop."""
        if self._closed or self.broken:
            return False
        if self._dirty or time.monotonic() - self._drawn >= 1.0:
            self.refresh()
        return not self.broken

    def _draw(self, bar: Any) -> None:
        """``bar.refresh()``, with tqdm's lock released whatever happens (tqdm's own
        ``refresh`` keeps it if drawing raises)."""
        lock = bar.get_lock()
        lock.acquire()
        try:
            bar.refresh(nolock=True)
        finally:
            lock.release()

    def refresh(self) -> None:
        """Redraw now with the latest counts."""
        with self._lock:
            if self._closed or self.broken:
                return
            try:
                self._redraw()
            except Exception:  # a bar must not break its job
                self._failed = True

    def _redraw(self) -> None:
        self._dirty = False
        self._drawn = time.monotonic()
        bar = self._bar
        done = self.done
        total = self._expected
        if total is not None and done > total:
            total = done
        if total != bar.total:
            bar.total = total
        bar.n = done
        c = self.counts
        # Outcomes by status only once they are counted (`add`): `progress` alone cannot
        # tell a failure from a success, and "failed 0" would then be a guess.
        outcomes = (
            f"failed {c.failed}, skipped {c.skipped}, unknown {c.unknown} | "
            if c.outcomes
            else ""
        )
        bar.set_postfix_str(
            f"{outcomes}{c.requests} requests, 503: {c.status_503}, 429: {c.status_429}",
            refresh=False,
        )
        self._draw(bar)

    def _show_holds(self) -> None:
        text = "; ".join(describe_hold(e) for e in self.counts.holds.values())
        with self._lock:
            if text == self._shown_holds or self._disable or self._closed or self.broken:
                return
            self._shown_holds = text
            try:
                if self._status is None:
                    self._status = self._tqdm(
                        total=0,
                        bar_format="{desc}",
                        file=self._out,
                        position=1,
                        leave=False,
                        dynamic_ncols=True,
                    )
                self._status.set_description_str(text, refresh=False)
                self._draw(self._status)
            except Exception:
                self._failed = True
        self.refresh()

    def close(self) -> None:
        """Draw the final counts and leave the bar on screen (the holds' line goes)."""
        self._stop.set()
        if self._refresher is not None and self._refresher is not threading.current_thread():
            self._refresher.join()
        with self._lock:
            if self._closed:
                return
            self.refresh()
            self._closed = True
            for bar in (self._status, self._bar):
                if bar is not None:
                    try:
                        bar.close()
                    except Exception:
                        self._failed = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
