"""`SyncBitrixClient`: the async client behind a blocking facade, for scripts and notebooks.

    from bitrix_batch.sync import SyncBitrixClient

    with SyncBitrixClient("https://portal.bitrix24.com/rest/1/<code>/") as client:
        result = client.batch(cmd)

Each client owns one event loop, run by an anyio blocking portal in a thread of its own, and
creates its `BitrixClient` inside that loop, so the HTTP connections live on one loop for the
client's whole life however many calls are made. Every method hands its work to that loop and
blocks the calling thread until it is done; results and exceptions come back as they are.

Because the loop is not the caller's, the client also works in a thread whose own event loop
is running (a Jupyter cell): it then blocks that loop while it waits. Async code should use
`BitrixClient` directly instead.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream

from ._auth import Credentials
from ._client import BitrixClient, CallResult, CommandStream, Progress
from ._commands import CommandList, ServerLimits
from ._errors import ClientClosedError
from ._events import EventHook
from ._intake import DEFAULT_LOOKBACK, DEFAULT_WINDOW
from ._methods import MethodPolicy
from ._planner import MAX_BATCH, Plan
from ._record import Recorder
from ._result import BatchResult, CommandResult
from ._retry import RetryPolicy
from ._throttle import Clock, OperatingBudget, RateLimit, RateLimiter, Sleep

if TYPE_CHECKING:
    # Only named here: `_lists` is imported when a list method is first called, as in
    # `BitrixClient`, so that importing the package stays light.
    from ._lists import FoundRows, ListShape

__all__ = ["SyncBitrixClient"]

T = TypeVar("T")

Backend = Literal["asyncio", "trio"]

#: How many outcomes of a stream the client's thread hands over ahead of the reader: one
#: request's worth, on top of what the async stream itself holds.
_HANDOFF = MAX_BATCH

_CLOSED = "this SyncBitrixClient is closed"


class SyncBitrixClient:
    """A blocking Bitrix24 client: `BitrixClient`'s methods, without ``await``.

    The constructor takes `BitrixClient`'s options (see there), except ``http_client``: an
    ``httpx.AsyncClient`` belongs to the event loop that uses it, and this client's loop is
    its own. Pass a ``transport`` of its own to each client, for the same reason; likewise a
    `LeakyBucket` or `OperatingBudget` is shared only between clients on one event loop, so
    not between two of these.

    `backend` is the event loop the client runs: ``"asyncio"`` (the default) or ``"trio"``.
    The loop starts in a thread of its own when the client is made, and stops on `close`
    (or at the end of a ``with`` block). Several clients may exist at once, each with its
    own thread, and one client may be used from several threads at once.

    Callbacks (``progress``, ``on_event``, ``on_refresh``, a token provider, a journal) and
    the iterator of a stream are called in the client's thread, not the caller's; they should
    be quick, since the loop waits for them, and must not call this client (that would wait
    for itself: it raises RuntimeError instead).
    """

    def __init__(
        self,
        url: str | Credentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        deadline: float | None = None,
        max_concurrency: int = 16,
        rate_limit: RateLimit | RateLimiter | None = RateLimit.STANDARD,
        operating_budget: OperatingBudget | None = None,
        retry: RetryPolicy | None = None,
        methods: MethodPolicy | None = None,
        body: Literal["json", "form"] = "json",
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock = time.time,
        on_event: EventHook | None = None,
        allow_insecure_http: bool = False,
        limits: ServerLimits | None = None,
        backend: Backend = "asyncio",
    ) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError("backend must be 'asyncio' or 'trio'")
        make = functools.partial(
            BitrixClient,
            url,
            transport=transport,
            timeout=timeout,
            deadline=deadline,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            operating_budget=operating_budget,
            retry=retry,
            methods=methods,
            body=body,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
            on_event=on_event,
            allow_insecure_http=allow_insecure_http,
            limits=limits,
        )
        self._host = _Host(backend, make)
        self._backend = backend
        # A client that is dropped without being closed still stops its thread (at the
        # latest when the interpreter exits); `close` runs the same finalizer, at most once.
        self._finalizer = weakref.finalize(self, self._host.close)

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> SyncBitrixClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections and stop the client's thread; later calls raise.

        Calls still running in other threads are cancelled and raise `ClientClosedError`
        (a batch's commands in flight then have an unknown outcome, as when a stream is left
        early). Closing twice does nothing.
        """
        self._host.check_thread()
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._host.closed

    def __repr__(self) -> str:
        state = ", closed" if self._host.closed else ""
        return f"<SyncBitrixClient {self._host.label} ({self._backend}{state})>"

    # --- single calls ------------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any] | None = None) -> CallResult:
        """Call one REST method; return its `result` with `total`, `next` and `time`.

        Raises what `BitrixClient.request` raises, and `ClientClosedError` once closed.
        """
        client = self._host.client
        return self._host.run(lambda: client.request(method, params))

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call one REST method and return its `result`."""
        client = self._host.client
        return self._host.run(lambda: client.call(method, params))

    # --- batches -----------------------------------------------------------------------------

    def plan(self, cmd: CommandList, *, halt: bool = False) -> Plan:
        """Check and plan a command list without sending anything (a dry run).

        Planning does no I/O, so it runs in the calling thread.
        """
        self._host.check_open()
        return self._host.client.plan(cmd, halt=halt)

    def batch(
        self,
        cmd: CommandList | CommandStream,
        *,
        halt: bool = False,
        progress: Progress | None = None,
        window: int = DEFAULT_WINDOW,
        lookback: int | None = None,
        journal: Recorder | None = None,
    ) -> BatchResult:
        """Run any number of commands as `BitrixClient.batch` does, and wait for the result.

        `progress` is called in the client's thread. Raises what `BitrixClient.batch`
        raises (a callback's or your iterator's own exception as itself), and
        `ClientClosedError` once closed.
        """
        client = self._host.client
        return self._host.run(
            lambda: client.batch(
                cmd,
                halt=halt,
                progress=progress,
                window=window,
                lookback=lookback,
                journal=journal,
            )
        )

    @contextlib.contextmanager
    def stream(
        self,
        cmd: CommandList | CommandStream,
        *,
        halt: bool = False,
        progress: Progress | None = None,
        window: int = DEFAULT_WINDOW,
        lookback: int | None = DEFAULT_LOOKBACK,
        journal: Recorder | None = None,
    ) -> Iterator[Iterator[CommandResult]]:
        """Run commands and yield each command's outcome as soon as it is final.

        Use as ``with client.stream(cmd) as results: for r in results: ...``; the options
        are `BitrixClient.stream`'s. The client's thread hands outcomes over as they become
        final, at most 50 ahead of what you consumed, so memory stays bounded as in the
        async stream: a stream is read at most about `window` commands ahead of you.
        Iterate inside the ``with`` block, from one thread. Leaving the block early cancels
        what is still running (commands in flight then have an unknown outcome). An error
        that ends the job (your iterator's, a callback's) comes out of the ``for`` loop as
        itself once the outcomes before it are read, or out of the ``with`` block if you
        stop reading first.
        """
        host = self._host
        client = host.client
        relay = _Relay(_HANDOFF)
        entered: concurrent.futures.Future[anyio.CancelScope] = concurrent.futures.Future()

        async def serve() -> None:
            # The async stream is entered, read and left in this one task, as it requires:
            # reading here, at once, is what keeps an outcome from being lost when the job
            # ends with an error (its task group then cancels this task).
            async with client.stream(
                cmd,
                halt=halt,
                progress=progress,
                window=window,
                lookback=lookback,
                journal=journal,
            ) as results:
                with anyio.CancelScope() as reading:
                    entered.set_result(reading)
                    await relay.fill(results)

        served = host.start(serve)
        served.add_done_callback(relay.end)
        try:
            pending: list[concurrent.futures.Future[Any]] = [entered, served]
            concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        except BaseException:  # interrupted (Ctrl-C): stop the job too
            served.cancel()
            raise
        if not entered.done():
            served.result()  # it failed before it began (bad input, or the client closed)
            raise ClientClosedError(_CLOSED)  # pragma: no cover - serve always enters first
        outcomes = _Outcomes(host, relay, entered.result(), served)
        try:
            yield outcomes
        except BaseException:
            # The block's own exception wins over the job's.
            with contextlib.suppress(Exception):
                outcomes.close()
            raise
        outcomes.close()


    # --- lists -------------------------------------------------------------------------------

    def list_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        by_id: bool | None = None,
        shape: ListShape | None = None,
        concurrency: int = 8,
    ) -> list[dict[str, Any]]:
        """Every row of a list method, as `BitrixClient.list_all` reads them, in a list.

        With the ID cursor (the default) the rows are sorted by ID. Raises what
        `BitrixClient.list_all` raises (`InvalidCommandError` for bad parameters, the
        `CommandError` of a page that failed).
        """
        client = self._host.client

        async def collect() -> list[dict[str, Any]]:
            return await client.list_all(
                method, params, by_id=by_id, shape=shape, concurrency=concurrency
            )

        return self._host.run(collect)

    def get_by_ids(
        self,
        method: str,
        ids: Iterable[int | str],
        params: Mapping[str, Any] | None = None,
        *,
        shape: ListShape | None = None,
    ) -> FoundRows:
        """Many records by ID, in the order asked, with the IDs not found (`FoundRows`).

        As `BitrixClient.get_by_ids`: 50 IDs per list command, 50 commands per request.
        """
        client = self._host.client
        return self._host.run(lambda: client.get_by_ids(method, ids, params, shape=shape))


class _Relay:
    """Outcomes handed from the loop's thread to the reader's, at most `size` at a time."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[CommandResult] = deque()
        self._ready = threading.Condition()
        self._room: anyio.Event | None = None  # set when the reader has made room
        self._ended = False
        self._error: BaseException | None = None

    # --- in the loop's thread ----------------------------------------------------------------

    async def fill(self, results: AsyncIterator[CommandResult]) -> None:
        """Move outcomes over as they come, waiting while the reader is `size` behind."""
        # What is already waiting is taken without a checkpoint, so that a cancellation
        # (the job failing) cannot fall between taking an outcome and handing it over.
        waiting = results.receive_nowait if isinstance(results, MemoryObjectReceiveStream) else None
        while True:
            with self._ready:
                if len(self._items) >= self._size:
                    room = self._room = anyio.Event()
                else:
                    room = None
            if room is not None:
                await room.wait()
                continue
            try:
                if waiting is None:
                    outcome = await results.__anext__()
                else:
                    try:
                        outcome = waiting()
                    except anyio.WouldBlock:
                        outcome = await results.__anext__()
            except (StopAsyncIteration, anyio.EndOfStream):
                return
            with self._ready:
                self._items.append(outcome)
                self._ready.notify()

    def end(self, served: concurrent.futures.Future[None]) -> None:
        """The job is over (a future's callback): wake the reader, with its error if any."""
        error = None if served.cancelled() else served.exception()
        with self._ready:
            self._ended = True
            self._error = error
            self._ready.notify()

    # --- in the reader's thread --------------------------------------------------------------

    def take(self, host: _Host) -> CommandResult:
        """The next outcome; StopIteration at the end, or the error that ended the job."""
        with self._ready:
            while not self._items and not self._ended:
                self._ready.wait()
            if not self._items:
                if self._error is not None:
                    raise self._error
                raise StopIteration
            outcome = self._items.popleft()
            room = self._room
            if room is not None and len(self._items) <= self._size // 2:
                self._room = None  # wake the loop once, when half the room is free
            else:
                room = None
        if room is not None:
            host.signal(room.set)
        return outcome


class _Outcomes(Iterator[CommandResult]):
    """The blocking iterator a sync stream yields."""

    def __init__(
        self,
        host: _Host,
        relay: _Relay,
        reading: anyio.CancelScope,
        served: concurrent.futures.Future[None],
    ) -> None:
        self._host = host
        self._relay = relay
        self._reading = reading
        self._served = served
        self._open = True  # the with block has not ended
        self._over = False  # StopIteration or the job's error was raised
        self._raised: BaseException | None = None

    def __iter__(self) -> _Outcomes:
        return self

    def __next__(self) -> CommandResult:
        if self._over:
            raise StopIteration
        if self._host.closed:
            raise ClientClosedError(f"{_CLOSED}: its streams are cut short")
        if not self._open:
            raise ClientClosedError("the stream's with block has ended: iterate inside it")
        try:
            return self._relay.take(self._host)
        except StopIteration:
            self._over = True
            raise
        except Exception as exc:
            self._over = True
            self._raised = exc  # raised here; not again when the block ends
            raise

    def close(self) -> None:
        """Leave the stream: cancel what still runs; raise the error that ended the job."""
        if not self._open:
            return
        self._open = False
        if not self._served.done():
            self._host.signal(self._reading.cancel)
        try:
            self._host.wait(self._served)
        except Exception as exc:
            if exc is not self._raised:
                raise


class _Host:
    """The portal's thread and event loop, and the `BitrixClient` that lives in it.

    It holds no reference to the `SyncBitrixClient`, so that a finalizer can close it.
    """

    def __init__(self, backend: Backend, make: Callable[[], BitrixClient]) -> None:
        self.closed = False
        self._backend = backend
        self._lock = threading.Lock()  # orders starting tasks against closing
        self._scopes: set[anyio.CancelScope] = set()  # the calls running; in the loop only
        self._stopping = False  # set in the loop when closing begins
        self._drained: anyio.Event | None = None
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal = self._stack.enter_context(
            start_blocking_portal(backend, name=f"bitrix_batch-{backend}")
        )
        try:
            # The client is created in the loop, so that everything it makes (the rate
            # limiter's lock, the connection pool) belongs to that loop.
            self.client, self._thread = self._hop(lambda: self._portal.call(_create, make))
        except BaseException:
            self._hop(self._stack.close)
            raise
        # The webhook code or token never appears in this label.
        self.label = repr(self.client).removeprefix("<BitrixClient ").removesuffix(">")

    def check_thread(self) -> None:
        """Refuse a call from the loop's own thread (a callback): it would wait for itself."""
        if threading.get_ident() == self._thread:
            raise RuntimeError(
                "a SyncBitrixClient was called from its own event loop's thread (from a"
                " callback such as progress): it cannot wait for itself there"
            )

    def check_open(self) -> None:
        """Raise `ClientClosedError` once the client is closed."""
        if self.closed:
            raise ClientClosedError(_CLOSED)

    def start(self, work: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start `work` in the loop; its future carries its result or its exception."""
        self.check_thread()
        with self._lock:
            self.check_open()
            return self._hop(lambda: self._portal.start_task_soon(self._guarded, work))

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` in the loop and wait for it; its exception is raised as itself."""
        return self.wait(self.start(work))

    def wait(self, future: concurrent.futures.Future[T]) -> T:
        """Wait for a task; if the wait is interrupted (Ctrl-C), cancel the task too."""
        try:
            return future.result()
        except BaseException:
            future.cancel()  # does nothing if it is done already
            raise

    def signal(self, action: Callable[[], object]) -> None:
        """Run a quick `action` in the loop without waiting; nothing to do once closed."""
        with self._lock:
            if not self.closed:
                self._hop(lambda: self._portal.start_task_soon(action))

    async def _guarded(self, work: Callable[[], Awaitable[T]]) -> T:
        # Runs in the loop. Each call runs in a cancel scope that closing cancels, so that
        # the connections are never closed under a running call.
        if self._stopping:
            raise ClientClosedError(_CLOSED)
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                return await work()
            finally:
                self._scopes.discard(scope)
                if not self._scopes and self._drained is not None:
                    self._drained.set()
        raise ClientClosedError(f"{_CLOSED}: it was closed while this call was running")

    async def _shutdown(self) -> None:
        # Runs in the loop: cancel what is running, let it unwind, then close the connections.
        self._stopping = True
        if self._scopes:
            self._drained = anyio.Event()
            for scope in list(self._scopes):
                scope.cancel()
            await self._drained.wait()
        await self.client.aclose()

    def close(self) -> None:
        """Cancel running calls, close the client, stop the loop and join its thread."""
        if threading.get_ident() == self._thread:
            return  # collected in a callback: the thread cannot join itself; left to exit
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            self._hop(lambda: self._portal.call(self._shutdown))
        finally:
            self._hop(self._stack.close)

    def _hop(self, action: Callable[[], T]) -> T:
        """Run `action`, which hands work to the loop, from a thread where that is allowed.

        trio refuses to hand work to a trio loop from a thread that runs trio itself (a
        sync client on trio used inside a trio program): do it from a helper thread then.
        """
        if self._backend != "trio" or not _in_trio_run():
            return action()
        with concurrent.futures.ThreadPoolExecutor(1, "bitrix_batch-hop") as helper:
            return helper.submit(action).result()


def _in_trio_run() -> bool:
    """Whether this thread runs a trio event loop."""
    try:
        from trio.lowlevel import in_trio_run
    except ImportError:  # no trio (or one too old to tell): no trio loop to worry about
        return False
    return in_trio_run()


def _create(make: Callable[[], BitrixClient]) -> tuple[BitrixClient, int]:
    """Make the client in the loop's thread; also say which thread that is."""
    return make(), threading.get_ident()
