"""`BitrixClient`: the thin executor that drives the scheduler over httpx with anyio.

All decisions live in the pure modules (planner, scheduler, response decoding, retry
classification, throttle). This module only sends: it paces each HTTP call through the rate
limiter and the operating-time budget, retries it with tenacity where `_retry` says that is safe,
and feeds the answers back to the scheduler. One task group per `batch`/`stream` call; nothing
outlives it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import time
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from ._auth import Credentials, Webhook, check_plain_http, redact
from ._commands import CommandList, ServerLimits, parse_call, parse_commands
from ._encoding import http_build_query
from ._errors import (
    APIError,
    AuthError,
    BitrixBatchError,
    EventLoopChangedError,
    OperationTimeLimitError,
    RateLimitError,
    RedirectError,
    TransportError,
    _NotSent,
)
from ._events import (
    Event,
    EventHook,
    MethodHeld,
    MethodReleased,
    RateLimitWaited,
    RequestAnswered,
    RequestFailed,
    RequestSent,
    RetryScheduled,
)
from ._intake import DEFAULT_LOOKBACK, DEFAULT_WINDOW, Intake, is_stream
from ._logs import mask_exception_chain, protect_logs
from ._loops import current_loop
from ._methods import MethodPolicy
from ._network import never_reached, wrong_address
from ._oauth import OAuth
from ._planner import MAX_BATCH, Plan, plan
from ._record import Recorder
from ._response import BatchSections, as_float, as_int, decode_batch, decode_body
from ._result import BatchResult, CommandResult, SkipReason, Status
from ._retry import RetryPolicy, classify, command_verdict
from ._scheduler import ChunkRequest, Scheduler
from ._throttle import Clock, LeakyBucket, OperatingBudget, RateLimit, RateLimiter, Sleep
from ._version import __version__

if TYPE_CHECKING:  # `_lists` uses the client; it is imported when a list method is called
    from ._lists import FoundRows, ListExport, ListShape

__all__ = ["BitrixClient", "CallResult"]

#: Called with (commands finished, commands in all) as a batch makes progress; for a stream
#: the total counts the commands read so far (the whole job's, once the input has ended).
Progress = Callable[[int, int], None]

_log = logging.getLogger("bitrix_batch")

#: Sent with every request.
_HEADERS = {"Accept": "application/json", "User-Agent": f"bitrix_batch/{__version__}"}

#: Seconds to open a connection: an address that answers nothing should fail fast.
_CONNECT_TIMEOUT = 10.0
#: Connections timed out in a row, with no answer ever from the portal, after which a call
#: gives up: the address is most likely wrong (a busy network has answered before).
_UNREACHED_ATTEMPTS = 2

#: How often one call renews an access token that keeps expiring before its replay lands,
#: and how often it replays in all (taking up tokens other requests renewed).
_MAX_RENEWALS = 32
_MAX_REPLAYS = 128

#: How long an idle job waits for a slow async source before sending half-filled requests.
_SOURCE_GRACE = 0.05

#: A stream of commands: any iterable or async iterable of ``(key, command)`` pairs.
CommandStream = Iterable[tuple[Any, Any]] | AsyncIterable[tuple[Any, Any]]


@dataclass(frozen=True, slots=True)
class _Job:
    """One `batch`/`stream` call's state: its scheduler, and the intake of a stream."""

    scheduler: Scheduler
    intake: Intake | None
    planned: int | None  # the number of commands of a whole list
    journal: Recorder | None = None

    @property
    def total(self) -> int:
        """Commands in the job: a list's all, a stream's read so far."""
        return self.intake.read if self.intake is not None else self.planned or 0

    def from_source(self, error: Exception) -> bool:
        """Whether `error` came from the caller's iterator (raised as itself, whatever it is)."""
        return self.intake is not None and self.intake.failure is error


def _environment_proxies() -> bool:
    """Whether HTTP_PROXY, HTTPS_PROXY or ALL_PROXY is set (httpx then routes through it)."""
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while commands are planned.

    Planning builds millions of small objects, none of them cyclic garbage; each collection
    would walk all of them again (about 40% of planning time). Nothing awaits in here, so no
    other task runs while it is paused.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(frozen=True, slots=True)
class CallResult:
    """A single method's answer: `result`, and `total`/`next`/`time` where the server sent them."""

    result: Any
    total: int | None = None
    next: int | None = None
    time: Mapping[str, Any] | None = None


class BitrixClient:
    """An async Bitrix24 REST client whose `batch` takes any number of commands.

    Args:
        url: the inbound webhook base, ``https://<portal>/rest/<user>/<code>/``, or an
            `OAuth` credential for an application (the token is sent as ``auth`` and
            renewed, single-flight, each time the server says it expired).
        http_client: an `httpx.AsyncClient` to share; the caller closes it.
        transport: an httpx transport for a client this object creates (tests, emulator).
        timeout: seconds to wait for each read of an answer (and at most 10 s to connect).
        deadline: the most seconds one HTTP call may take, the whole answer included
            (default: twice `timeout`, 60 s, Bitrix24's own cap on a request); an answer still
            coming at the deadline is dropped like a timeout. Each attempt has its own
            deadline; `RetryPolicy.timeout` bounds all the attempts of a call together.
        max_concurrency: the most HTTP requests in flight at once.
        rate_limit: the portal's request bucket: a `RateLimit` preset, a shared `LeakyBucket`
            (or any `RateLimiter`), or None to send without pacing.
        operating_budget: the per-method operating-time budget to share, or None for one of
            this client's own with the defaults (480 s per method per 10 minutes).
        retry: how failed calls are retried (`RetryPolicy`).
        methods: which methods only read (`MethodPolicy`).
        body: ``"json"`` (the default, as the docs recommend) or ``"form"`` (PHP form
            encoding; the batch's command strings are then encoded twice, as in the docs).
        limits: the portal's PHP input limits (`ServerLimits`: nesting 64, 1,000 values per
            command by default); a command past them is refused before anything is sent.
        on_event: called with each `Event` (request sent or answered, retry scheduled,
            method held or released, rate-limit wait), in the event loop's thread; the same
            events go to the ``bitrix_batch`` logger. An error it raises is logged, not raised.
        clock, sleep: time source and sleep, injectable for tests.
        wall_clock: Unix time, to read the server's ``operating_reset_at``.
        allow_insecure_http: send to a plain ``http://`` URL of a host other than this
            machine (the secret then travels unencrypted); refused by default (ValueError).
            Loopback hosts and a `transport` of the caller's other than
            ``httpx.AsyncHTTPTransport`` (ASGI, mock: no network) are always allowed.
    """

    def __init__(
        self,
        url: str | Credentials,
        *,
        http_client: httpx.AsyncClient | None = None,
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
    ) -> None:
        self._creds: Credentials = Webhook.parse(url) if isinstance(url, str) else url
        protect_logs(self._creds.secrets)
        check_plain_http(
            self._creds,
            in_process=transport is not None
            and not isinstance(transport, httpx.AsyncHTTPTransport),
            allow=allow_insecure_http,
        )
        if http_client is not None and transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if body not in ("json", "form"):
            raise ValueError("body must be 'json' or 'form'")
        self._own_http = http_client is None
        self._own_transport = transport is None
        if not (timeout > 0 and (deadline is None or deadline > 0)):
            raise ValueError("timeout and deadline must be positive")
        self._timeout_s = httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT))
        self._deadline = 2.0 * timeout if deadline is None else deadline
        # With a client of our own, requests go straight to its transport: httpx's client
        # layer (auth, redirects, cookies, hooks) does nothing for us here and costs about a
        # fifth of each call's CPU. A shared client is used through its public API.
        # Proxies from the environment are httpx's client layer's business: keep it then.
        self._transport: httpx.AsyncBaseTransport | None = None
        if http_client is None and (transport is not None or not _environment_proxies()):
            self._transport = transport or httpx.AsyncHTTPTransport()
        self._http = http_client or httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout_s, headers=_HEADERS
        )
        self._timeout = self._timeout_s.as_dict()
        self._max_concurrency = max_concurrency
        self._clock = clock
        self._sleep = sleep
        # Only real time can be waited on alongside the answers; an injected clock (tests)
        # moves only when something sleeps on it.
        self._real_clock = clock in (time.monotonic, anyio.current_time)
        if isinstance(rate_limit, RateLimit):
            rate_limit = LeakyBucket(rate_limit, clock=clock, sleep=sleep)
        self._bucket = rate_limit
        self._budget = (
            operating_budget
            if operating_budget is not None
            else OperatingBudget(clock=clock, sleep=sleep, wall_clock=wall_clock)
        )
        self._retry = retry or RetryPolicy()
        self._methods = methods or MethodPolicy()
        self._body = body
        self._on_event = on_event
        self._limits = limits
        self._input_vars = (limits or ServerLimits()).max_input_vars
        self._wall_clock = wall_clock
        self._announced: dict[str, float] = {}  # holds reported as events, by method
        self._loop: object | None = None  # the event loop this client's connections live in
        self._answered = False  # whether the portal has ever answered (any status)
        self._closed = False  # aclose() closed our own pool; the next call opens another

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> BitrixClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it (a later call opens a new one)."""
        if self._own_http:
            # A pool opened in an event loop that has ended cannot be closed from this one.
            if self._loop is None or self._loop is current_loop():
                await self._http.aclose()
            self._closed = True

    def __repr__(self) -> str:
        return f"<BitrixClient {self._creds.redacted}>"

    def _bind_loop(self) -> None:
        """Keep the connections in the event loop that uses them.

        Pooled connections belong to the loop that opened them, and a closed loop's cannot
        be used or even closed. When this client is used in a new loop (a second
        ``anyio.run``), a client of our own starts a fresh pool there; a caller's
        ``httpx.AsyncClient`` cannot be moved, so that is a typed error, not httpx's raw
        ``RuntimeError: Event loop is closed``.
        """
        loop = current_loop()
        if (self._loop is None or self._loop is loop) and not self._closed:
            self._loop = loop
            return
        if not self._own_http or (
            not self._own_transport
            and not self._closed
            and isinstance(self._transport, httpx.AsyncHTTPTransport)
        ):
            # In-process transports (ASGI, mock) may move; pooled connections cannot.
            raise EventLoopChangedError(
                "this BitrixClient's httpx client or transport was used in another event loop"
                " and cannot move to this one: create both inside the loop that uses them"
            )
        # After aclose(), or in a new loop: a fresh pool. An old loop's pool is dropped, not
        # closed (its loop is gone); close the client in each run (`async with`) to have
        # its sockets closed rather than collected.
        if self._own_transport and self._transport is not None:
            self._transport = httpx.AsyncHTTPTransport()
        self._http = httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout_s, headers=_HEADERS
        )
        self._loop = loop
        self._closed = False

    def _emit(self, event: Event) -> None:
        """Log an event and hand it to the caller's hook (whose errors are logged only)."""
        if isinstance(event, MethodHeld | MethodReleased | RetryScheduled):
            if _log.isEnabledFor(logging.INFO):
                _log.info("%s", _describe_event(event))
        elif _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s", _describe_event(event))
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                _log.exception("bitrix_batch: the on_event hook failed on %r", event)

    def _note_holds(self, reason: str = "near the operating-time limit") -> None:
        """Report holds that began (or grew) and ended since the last look, as events."""
        holds = self._budget.holds()
        if not holds and not self._announced:
            return
        now, wall = self._clock(), self._wall_clock()
        for method, until in holds.items():
            if until > self._announced.get(method, -math.inf) + 1.0:
                self._emit(MethodHeld(method, wall + (until - now), reason))
            self._announced[method] = max(until, self._announced.get(method, until))
        for method in [m for m in self._announced if m not in holds]:
            del self._announced[method]
            self._emit(MethodReleased(method))

    # --- single calls ------------------------------------------------------------------------

    async def request(self, method: str, params: Mapping[str, Any] | None = None) -> CallResult:
        """Call one REST method; return its `result` with `total`, `next` and `time`.

        Raises:
            APIError: the server refused the call (its subclasses for rate, time and auth).
            TransportError, InvalidResponseError: no usable answer after retries.
        """
        checked = parse_call(method, params, limits=self._limits, form=self._body == "form")
        self._bind_loop()
        try:
            body = await self._post(method, checked, read=self._methods.reads_only(method))
        except _CallbackFailed as exc:
            raise exc.cause from None
        return CallResult(
            body["result"],
            as_int(body.get("total")),
            as_int(body.get("next")),
            body.get("time"),
        )

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call one REST method and return its `result`."""
        return (await self.request(method, params)).result

    # --- batches -----------------------------------------------------------------------------

    def plan(
        self,
        cmd: CommandList,
        *,
        halt: bool = False,
    ) -> Plan:
        """Check and plan a command list without sending anything (a dry run).

        Raises:
            PlanError: the list cannot be planned (a subclass says why).
        """
        with _gc_paused():
            return plan(
                parse_commands(cmd, self._methods.reads_only, limits=self._limits), halt=halt
            )

    async def batch(
        self,
        cmd: CommandList | CommandStream,
        *,
        halt: bool = False,
        progress: Progress | None = None,
        window: int = DEFAULT_WINDOW,
        lookback: int | None = None,
        journal: Recorder | None = None,
    ) -> BatchResult:
        """Run any number of commands as if Bitrix24 had one unlimited `batch` method.

        `cmd` maps keys to commands, or is a sequence (keys are then 0..n-1), or is a stream:
        any other iterable or async iterable of ``(key, command)`` pairs, read lazily (see
        `stream`). Results come back keyed and ordered like `cmd`. A failed command never
        discards other results; call `raise_for_errors()` on the result to turn failures into
        an exception. With a stream, `lookback` (default: unlimited, since every result is kept
        anyway) is how far back a command may refer; `window` as in `stream`.

        `journal` (a `Recorder`, such as `bitrix_batch.journal.Journal`) is told which
        commands each request carries before it goes out and every outcome after; the
        outcomes it already knows from an earlier run of the same job are not sent again.

        Raises:
            PlanError: bad input, before anything is sent (a list; in a stream an invalid
                command is reported as skipped and the job goes on).
            APIError, TransportError: only when no command ran at all (a wrong webhook, the
                portal unreachable); otherwise failures are recorded in the result.
        """
        job = self._job(cmd, halt, window, lookback, journal)
        slots: list[CommandResult | None] = []

        def keep(finished: list[tuple[int, CommandResult]]) -> None:
            for index, outcome in finished:
                if index >= len(slots):
                    slots.extend([None] * (index + 1 - len(slots)))
                slots[index] = outcome

        fatal = await self._drive(job, progress, keep)
        outcomes = [r for r in slots if r is not None]
        if fatal is not None and (
            not isinstance(fatal, BitrixBatchError) or job.from_source(fatal)
        ):
            # Not ours (a callback's error or a bug): raise it as it is, with what did run.
            fatal.add_note(
                "bitrix_batch: the batch stopped; the outcome of every command is in"
                " the exception's bitrix_batch_result attribute"
            )
            with contextlib.suppress(AttributeError):
                fatal.bitrix_batch_result = BatchResult(outcomes)  # type: ignore[attr-defined]
            raise fatal
        if outcomes and all(r.status is Status.SKIPPED for r in outcomes):
            # Nothing ran at all, so raising loses nothing: report the failure that stopped it.
            causes = [
                r.skip.cause
                for r in outcomes
                if r.skip is not None
                and r.skip.cause
                and r.skip.reason is not SkipReason.INVALID_COMMAND
            ]
            first = fatal or next((c for c in causes if isinstance(c, BitrixBatchError)), None)
            if first is not None:
                raise first
        return BatchResult(outcomes)

    @asynccontextmanager
    async def stream(
        self,
        cmd: CommandList | CommandStream,
        *,
        halt: bool = False,
        progress: Progress | None = None,
        window: int = DEFAULT_WINDOW,
        lookback: int | None = DEFAULT_LOOKBACK,
        journal: Recorder | None = None,
    ) -> AsyncIterator[AsyncIterator[CommandResult]]:
        """Run commands and yield each command's outcome as soon as it is final.

        Use as ``async with client.stream(cmd) as results: async for r in results: ...``.
        `cmd` is a command list, or a stream: any other iterable or async iterable of
        ``(key, command)`` pairs (a generator, ``dict.items()``, rows of a file), read lazily:
        at most `window` commands are read ahead of those that are final, and memory stays
        bounded by that, not by the job. In a stream a command may refer only to one of the
        `lookback` commands read before it (None: any), and an invalid command is reported
        as skipped (`SkipReason.INVALID_COMMAND`) while the job goes on. Leaving the block early
        cancels what is still running; commands in flight then have an unknown outcome.
        `journal` as in `batch`.
        """
        job = self._job(cmd, halt, window, lookback, journal)
        send, receive = anyio.create_memory_object_stream[CommandResult](MAX_BATCH)

        outcomes = _Outcomes(receive)

        async def run() -> None:
            async with send:
                fatal = await self._drive(job, progress, None, send)
                if fatal is not None and (
                    not isinstance(fatal, BitrixBatchError) or job.from_source(fatal)
                ):
                    # Not ours: the reader gets it after the last outcome (set before the
                    # stream ends, so none of the outcomes buffered before it is lost).
                    outcomes.failure = fatal

        async with _single_errors(), anyio.create_task_group() as tg, receive:
            tg.start_soon(run)
            yield outcomes
            tg.cancel_scope.cancel()
        # The reader left before the end: raise the error here (the source's is known as soon
        # as it happens, even if the job was cancelled before it could hand it over).
        failure = outcomes.failure or (job.intake.failure if job.intake is not None else None)
        if failure is not None and not outcomes.raised:
            raise failure

    # --- lists (bitrix_batch/_lists.py does the work; this section only delegates) ----------

    def list_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        by_id: bool | None = None,
        shape: ListShape | None = None,
        concurrency: int = 8,
    ) -> ListExport:
        """Every row of a list method: ``async for row in ...`` or ``rows = await ...``.

        Uses the ID cursor (``>ID``, ``start=-1``) with 50 pages chained per request and
        several ID ranges at once (`concurrency`): about rows / 2,500 requests, and every
        row that exists for the whole walk exactly once. ``by_id=False`` pages with
        start/next instead (the default for ``user.get``, ``user.search``,
        ``department.get``). `shape` says where rows and IDs are for methods the built-in
        table does not know (``crm.item.list`` and ``tasks.task.list`` it does). See
        `ListExport`.

        Raises:
            InvalidCommandError: bad parameters, before any request.
        """
        from . import _lists

        return _lists.ListExport(
            self, method, params, by_id=by_id, shape=shape, concurrency=concurrency
        )

    async def get_by_ids(
        self,
        method: str,
        ids: Iterable[int | str],
        params: Mapping[str, Any] | None = None,
        *,
        shape: ListShape | None = None,
    ) -> FoundRows:
        """Many records by ID, in the order asked, with the IDs not found (`FoundRows`).

        Reads through a list method with an ID-in filter, 50 IDs per command and 50
        commands per request; a known ``*.get`` (``crm.lead.get``) maps to its list method.

        Raises:
            InvalidCommandError: bad input (an ID that is not a positive integer), before
                any request.
            CommandErrors: a command failed.
        """
        from . import _lists

        return await _lists.get_by_ids(self, method, ids, params, shape=shape)

    # --- end of lists -----------------------------------------------------------------------

    def _job(
        self,
        cmd: CommandList | CommandStream,
        halt: bool,
        window: int,
        lookback: int | None,
        journal: Recorder | None = None,
    ) -> _Job:
        """The scheduler for a job; for a stream, also what reads it."""
        self._bind_loop()
        policy = self._retry
        scheduler = Scheduler(
            halt=halt,
            keep=False,
            lookback=lookback,
            verdict=lambda entry, error: command_verdict(
                error.code, read=entry.read, policy=policy
            ),
            command_attempts=policy.attempts,
        )
        if not is_stream(cmd):
            planned = self.plan(cast(CommandList, cmd), halt=halt)
            with _gc_paused():
                scheduler.extend(planned.chunks)
                if journal is not None:
                    recall = journal.recall
                    scheduler.preset(
                        (entry.index, known)
                        for entry in planned.entries
                        if (known := recall(entry.index, entry.key, entry.method, entry.read))
                        is not None
                    )
            scheduler.close()
            return _Job(scheduler, None, len(planned.entries), journal)
        intake = Intake(
            cast(CommandStream, cmd),
            scheduler,
            reads_only=self._methods.reads_only,
            window=window,
            lookback=lookback,
            halt=halt,
            recall=journal.recall if journal is not None else None,
            limits=self._limits,
        )
        return _Job(scheduler, intake, None, journal)

    async def _drive(
        self,
        job: _Job,
        progress: Progress | None,
        keep: Callable[[list[tuple[int, CommandResult]]], None] | None,
        sink: anyio.abc.ObjectSendStream[CommandResult] | None = None,
    ) -> Exception | None:
        """Send every chunk the scheduler hands out; return the error that stopped it, if any.

        A fatal error is a `BitrixBatchError` that makes every further call pointless (a
        revoked webhook), or any other exception (from a callback such as `on_refresh`, or a
        bug). Either way nothing more is sent, not even requests already waiting for the rate
        limiter, and the commands not sent are finalised as skipped.
        """
        with _closing(job.intake):
            return await self._run(job, progress, keep, sink)

    async def _run(
        self,
        job: _Job,
        progress: Progress | None,
        keep: Callable[[list[tuple[int, CommandResult]]], None] | None,
        sink: anyio.abc.ObjectSendStream[CommandResult] | None,
    ) -> Exception | None:
        scheduler, intake, journal = job.scheduler, job.intake, job.journal
        wake_send, wake_receive = anyio.create_memory_object_stream[None](math.inf)
        fatal: list[Exception] = []
        done = 0
        journal_failed = False

        def record(write: Callable[[Any], None], items: Any) -> None:
            """Write to the journal; if it fails, the job stops (what is final stays)."""
            nonlocal journal_failed
            try:
                write(items)
            except Exception as exc:
                journal_failed = True
                stop(exc)

        def gate(request: ChunkRequest) -> Callable[[], None]:
            commands = list(
                zip(request.members, request.keys, request.method_of.values(), strict=True)
            )

            def check() -> None:  # right before each attempt goes on the wire
                if fatal:
                    raise _JobStopped(fatal[0])
                if journal is not None:
                    try:
                        journal.sending(commands)
                    except Exception as exc:  # not recorded: not sent, and the job stops
                        raise _CallbackFailed(exc) from exc

            return check

        def stop(error: Exception) -> None:
            fatal.append(error)
            scheduler.cancel(error)

        async def run_chunk(request: ChunkRequest) -> None:
            try:
                if request.params is None:
                    sections = await self._post_batch(request, gate(request))
                else:
                    sections = await self._post_direct(request, gate(request))
            except _Held:
                scheduler.give_back(request)
            except _JobStopped as exc:
                scheduler.abort(request, exc.cause, ran="unknown" if exc.may_have_run else "no")
            except _CallbackFailed as exc:
                scheduler.abort(request, exc.cause, ran="unknown" if exc.may_have_run else "no")
                stop(exc.cause)
            except BitrixBatchError as exc:
                ran, _ = classify(exc)
                scheduler.abort(request, exc, ran="unknown" if exc.may_have_run else ran)
                if (
                    isinstance(exc, AuthError | RedirectError)
                    or (isinstance(exc, APIError) and exc.status_code in (400, 403, 404))
                    or (
                        isinstance(exc, TransportError)
                        and not self._answered
                        and wrong_address(exc) is not None
                    )
                ):
                    stop(exc)  # every further call would fail the same way
            except Exception as exc:  # not ours: a callback's error or a bug; stop the job
                scheduler.abort(request, exc, ran="unknown")
                stop(exc)
            else:
                scheduler.complete(request, sections)
                if journal is not None and not journal_failed:
                    again = scheduler.still_pending(request)
                    if again:  # refused, so certainly not run: they may be sent again
                        record(journal.requeued, again)
            wake_send.send_nowait(None)

        try:
            async with _single_errors(), anyio.create_task_group() as tg, wake_send, wake_receive:
                if intake is not None and intake.reads_async:
                    tg.start_soon(intake.pump, wake_send.clone())
                fed = -1  # outcomes handed over when the input was last read
                while True:
                    if intake is not None:
                        fed = done
                        with _gc_paused():
                            intake.feed(done)
                    room = self._max_concurrency - scheduler.in_flight
                    for request in scheduler.next_requests(limit=room, held=self._budget.is_held):
                        tg.start_soon(run_chunk, request)
                    # Hand over what became final; sending may wait for the reader, and more
                    # outcomes can become final meanwhile, so drain until nothing is left.
                    while finished := scheduler.take_finished():
                        done += len(finished)
                        if journal is not None and not journal_failed:
                            record(journal.finished, finished)
                        if keep is not None:
                            keep(finished)
                        if sink is not None:
                            for _, outcome in finished:
                                await sink.send(outcome)
                        if progress is not None and not fatal:
                            try:
                                progress(done, job.total)
                            except Exception as exc:  # the caller's callback: stop, keep results
                                stop(exc)
                    if scheduler.finished:
                        break
                    if scheduler.has_ready and scheduler.in_flight < self._max_concurrency:
                        continue  # chunks became ready while results were being handed over
                    if intake is not None and not intake.done and done != fed:
                        continue  # outcomes were handed over: the window has room to read on
                    await self._wait(scheduler, intake, wake_receive)
                    self._note_holds()
                    scheduler.unpark(self._budget.is_held)
                tg.cancel_scope.cancel()  # the pump of an async source, if the job stopped early
        finally:
            # Outcomes that became final just before a cancellation (or a crash of the
            # caller) are recorded too: confirmed writes must not turn unknown on resume.
            if journal is not None and not journal_failed:
                left = scheduler.take_finished()
                if left:
                    with contextlib.suppress(Exception):  # the job ends with an error already
                        journal.finished(left)
        if fatal:
            return fatal[0]
        # The caller's iterator failed: the input ended there, what it gave before has run,
        # and its error is raised as itself.
        return intake.failure if intake is not None else None

    async def _wait(
        self,
        scheduler: Scheduler,
        intake: Intake | None,
        wake: anyio.abc.ObjectReceiveStream[None],
    ) -> None:
        """Wait for something to do: an answer, a hold's end, or more of an async source."""
        source_open = intake is not None and intake.reads_async
        if scheduler.in_flight > 0:
            await self._wait_for_news(scheduler, wake)
        elif scheduler.parked and not (source_open and self._real_clock):
            # Only commands of methods over their operating-time budget are left (and with
            # an injected clock, the source cannot be waited on alongside): sleep until the
            # first hold ends.
            release = self._budget.next_release()
            await self._sleep(0.0 if release is None else release - self._clock())
        elif source_open:
            assert intake is not None
            if intake.holding and scheduler.idle:
                # Nothing to send but requests still filling up: give the source a moment to
                # fill them, then send them as they are.
                with anyio.move_on_after(_SOURCE_GRACE) as scope:
                    await wake.receive()
                if scope.cancelled_caught:
                    intake.flush()
            else:
                await self._wait_for_news(scheduler, wake)
        elif intake is None or intake.done:  # pragma: no cover - a scheduler bug
            raise AssertionError(f"scheduler stalled: {scheduler!r}")

    async def _wait_for_news(
        self, scheduler: Scheduler, wake: anyio.abc.ObjectReceiveStream[None]
    ) -> None:
        """Wait for a request to come back, or for the first hold on parked commands to end."""
        release = self._budget.next_release() if scheduler.parked else None
        if release is None or not self._real_clock:
            # An injected clock cannot be waited on alongside the stream; requests come back
            # soon enough there (tests), so the parked commands go with the next answer.
            await wake.receive()
            return
        with anyio.move_on_after(max(0.0, release - self._clock())):
            await wake.receive()

    # --- HTTP --------------------------------------------------------------------------------

    async def _post_batch(
        self, request: ChunkRequest, gate: Callable[[], None] | None = None
    ) -> BatchSections:
        """Send one chunk; return its decoded answer, the per-command figures observed."""
        payload = {"halt": 1 if request.halt else 0, "cmd": request.cmd}
        body = await self._post(
            "batch", payload, read=not request.writes, also=request.methods, gate=gate
        )
        sections = decode_batch(body, secrets=self._creds.secrets)
        for wire_key, info in sections.result_time.items():
            if wire_key in request.method_of:
                self._budget.observe(request.method_of[wire_key], info)
        for wire_key, err in sections.result_error.items():
            code = str(err.get("error") or "").upper() if isinstance(err, dict) else ""
            if code == "OPERATION_TIME_LIMIT" and wire_key in request.method_of:
                self._budget.observe_blocked(request.method_of[wire_key], None)
                self._note_holds("refused: operating-time limit")
            elif code == "QUERY_LIMIT_EXCEEDED" and self._bucket is not None:
                self._bucket.on_rejected()
        self._note_holds()
        return sections

    async def _post_direct(
        self, request: ChunkRequest, gate: Callable[[], None] | None = None
    ) -> BatchSections:
        """Send one command on its own (planner Rule 7); return its answer as a batch's.

        Nothing is substituted outside a batch, so `Literal` text arrives as written. The
        method's own refusal (a JSON error with a 4xx status, such as ``NOT_FOUND``) is that
        command's failure, as it would be inside a batch; what concerns the call as a whole
        (auth, limits, redirects, 5xx, no answer) is raised as for a batch.
        """
        assert request.params is not None
        ((wire_key, _),) = request.wire.items()
        method = request.method_of[wire_key]
        try:
            # `also`: a hold that began after it was built hands it back, to be parked,
            # instead of sleeping out the hold in a concurrency slot.
            body = await self._post(
                method,
                request.params,
                read=not request.writes,
                also=request.methods,
                gate=gate,
            )
        except APIError as exc:
            if not _is_command_refusal(exc):
                raise
            error = {"error": exc.code, "error_description": exc.description, **exc.extra}
            return BatchSections({}, {wire_key: error}, {}, {}, {}, {})
        info = body.get("time")
        return BatchSections(
            result={wire_key: body["result"]},
            result_error={},
            result_total={wire_key: body["total"]} if "total" in body else {},
            result_next={wire_key: body["next"]} if "next" in body else {},
            result_time={wire_key: info} if isinstance(info, dict) else {},
            time=info if isinstance(info, dict) else {},
        )

    async def _post(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        read: bool,
        also: frozenset[str] = frozenset(),
        gate: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """POST one call with pacing and retries; return the decoded success body.

        `gate` is called right before each attempt goes on the wire; it raises to stop it.
        """
        policy = self._retry
        clock = self._clock
        started = clock()
        maybe_ran = False  # whether any attempt so far may have run on the server

        unreached = 0  # connections of this call that timed out before any answer

        def may_retry(exc: BaseException) -> bool:
            nonlocal maybe_ran, unreached
            ran, transient = classify(exc)
            if transient and not self._answered and wrong_address(exc) is not None:
                # A name that does not resolve, a port nobody listens on, no route: from a
                # portal that never answered, the address is wrong. Once it has answered, the
                # same errors are a restart or a network flap, and retried.
                return False
            if transient and not self._answered and never_reached(exc):
                unreached += 1
                if unreached >= _UNREACHED_ATTEMPTS:
                    return False  # the portal never answered: most likely a wrong address
            maybe_ran = maybe_ran or ran == "unknown"
            if not transient:
                return False
            return ran == "no" or read or policy.resend_unknown_writes

        def scheduled(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            reason = self._describe(error) if error is not None else "unknown"
            self._emit(RetryScheduled(method, state.attempt_number, delay, reason))

        retrying = AsyncRetrying(
            stop=_Stop(policy, clock, started),
            wait=_Wait(policy),
            retry=retry_if_exception(may_retry),
            sleep=self._sleep,
            before_sleep=scheduled,
            reraise=True,
        )

        def tried() -> str:
            n = retrying.statistics.get("attempt_number", 1)
            return f"{n} attempt(s) in {clock() - started:.1f} s"

        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return await self._post_once(method, params, also, gate, number)
        except httpx.HTTPError as exc:
            # It stays the cause (it decides whether the call may have run), masked: a
            # printed traceback shows its text, and the chain below it.
            mask_exception_chain(exc, self._creds.secrets)
            hint = None if self._answered else wrong_address(exc)
            if hint is None and unreached >= _UNREACHED_ATTEMPTS:
                hint = (
                    "the portal's address never answered: check the URL's host, and any"
                    " firewall or proxy on the way"
                )
            check = f"; {hint}" if hint else ""
            error = TransportError(
                f"{self._describe(exc)}{check}; gave up after {tried()}", method=method
            )
            error.attempts = retrying.statistics.get("attempt_number", 1)
            error.may_have_run = maybe_ran
            raise error from exc
        except _NotSent as exc:
            # This attempt was not sent, but an earlier one may have run (a read, or a write
            # re-sent by the caller's choice): the caller must not report it as never sent.
            exc.may_have_run = maybe_ran
            raise
        except BitrixBatchError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            exc.may_have_run = maybe_ran
            exc.add_note(f"bitrix_batch: gave up after {tried()}")
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_once(
        self,
        method: str,
        params: Mapping[str, Any],
        also: frozenset[str],
        gate: Callable[[], None] | None,
        attempt: int = 1,
    ) -> dict[str, Any]:
        # A method inside a batch that went over its operating-time budget since the batch
        # was built: hand the batch back, so that only that method's commands wait (the
        # scheduler parks them) instead of the whole batch holding a concurrency slot.
        self._check_holds(also)
        # The call's own method (`batch` itself, or a direct call) waits for its hold.
        if await self._budget.wait(method):
            self._note_holds()
        try:
            token = await self._creds.current_token(self._http)
        except BitrixBatchError:
            raise
        except Exception as exc:  # the caller's token provider failed: nothing was sent
            raise _CallbackFailed(exc) from exc
        # A token may expire again before its replay arrives (tokens that live fewer requests
        # than are in flight): renew as often as that happens, up to a bound, since each
        # 401 ran nothing and each renewal is single-flight across all requests.
        # Only renewals this call asks for count against the bound: a token another request
        # renewed meanwhile is simply taken up.
        renewals = 0
        for _ in range(_MAX_REPLAYS):
            try:
                return await self._send(method, params, token, gate, also, attempt)
            except AuthError as exc:
                if token is None or not OAuth.is_expired_error(exc) or renewals >= _MAX_RENEWALS:
                    raise
            current = await self._current_token()
            if current is not None and current != token:
                token = current
                continue
            renewals += 1
            token = await self._renew(method, token)
        return await self._send(method, params, token, gate, also, attempt)

    async def _current_token(self) -> str | None:
        try:
            return await self._creds.current_token(self._http)
        except BitrixBatchError:
            raise
        except Exception as exc:  # the caller's token provider failed: nothing was sent
            raise _CallbackFailed(exc) from exc

    async def _renew(self, method: str, stale: str) -> str:
        """A fresh access token after `stale` was refused as expired (single-flight)."""
        try:
            return await self._creds.refresh(stale, self._http)
        except AuthError:
            raise
        except _NotSent:
            raise
        except BitrixBatchError as exc:
            # The call itself was refused (401) and ran nothing: say so, whatever broke the
            # refresh, so that its commands are reported as not run.
            raise AuthError(
                401,
                "expired_token",
                f"the access token expired and could not be renewed: {exc}",
                method=method,
            ) from exc
        except Exception as exc:  # the caller's token provider or on_refresh failed
            raise _CallbackFailed(exc) from exc

    def _check_holds(self, methods: frozenset[str]) -> None:
        """Hand a batch back if a method inside it went over its operating-time budget."""
        held = sorted(name for name in methods if self._budget.is_held(name))
        if held:
            raise _Held(held)

    async def _send(
        self,
        method: str,
        params: Mapping[str, Any],
        token: str | None,
        gate: Callable[[], None] | None = None,
        also: frozenset[str] = frozenset(),
        attempt: int = 1,
    ) -> dict[str, Any]:
        # Tokens rotate: keep the log filter up to date before anything can log a URL.
        protect_logs(self._creds.secrets)
        if token is not None:
            params = {**params, "auth": token}
        if self._bucket is not None:
            waited = await self._bucket.acquire()
            if waited:  # a limiter of the caller's may return None
                self._emit(RateLimitWaited(waited))
        # Holds may have begun while this call waited for the bucket. Checked before the
        # gate: what the gate records (a journal's "sending") must then really go out.
        self._check_holds(also)
        if gate is not None:
            gate()
        query = http_build_query(params) if self._body == "form" else None
        limit = self._input_vars
        if query is not None and (limit is None or query.count("&") < limit):
            content = query.encode("ascii")
            ctype = "application/x-www-form-urlencoded"
        else:
            # JSON, also for a form body that would pass max_input_vars (the access token is
            # one value more than the command was checked with): PHP would cut the values
            # past it, the token last, and PHP does not count the values of a JSON body.
            content = json.dumps(params, ensure_ascii=False).encode()
            ctype = "application/json"
        commands = len(params.get("cmd") or ()) if method == "batch" else 1
        self._emit(RequestSent(method, commands, attempt))
        sent = self._clock()
        url = self._creds.endpoint(method)
        try:
            status, headers, data = await self._exchange(url, content, ctype)
            self._answered = True
        except httpx.HTTPError as exc:
            self._emit(RequestFailed(method, self._describe(exc)))
            raise
        try:
            body = decode_body(
                status,
                headers.get("content-type", ""),
                data,
                method=method,
                secrets=self._creds.secrets,
                location=headers.get("location"),
                url=url,
            )
        except APIError as exc:
            self._emit(RequestAnswered(method, status, self._clock() - sent, exc.code or None))
            if isinstance(exc, RateLimitError) and self._bucket is not None:
                self._bucket.on_rejected()
            elif isinstance(exc, OperationTimeLimitError):
                self._budget.observe_blocked(method, _reset_at(exc.extra))
                self._note_holds("refused: operating-time limit")
            raise
        except BitrixBatchError:
            self._emit(RequestAnswered(method, status, self._clock() - sent, None))
            raise
        self._emit(RequestAnswered(method, status, self._clock() - sent))
        self._budget.observe(method, body.get("time"))
        self._note_holds()
        return body

    async def _exchange(
        self, url: str, content: bytes, ctype: str
    ) -> tuple[int, httpx.Headers, bytes]:
        """POST one body; return the status, the headers and the whole answer.

        Within the call's deadline: `timeout` bounds each read, so an answer dripped a byte at
        a time would otherwise keep a call alive for ever. Past the deadline the call ends as
        a read timeout does (it may have run).
        """
        with anyio.move_on_after(self._deadline):
            return await self._exchange_unbounded(url, content, ctype)
        raise httpx.ReadTimeout(f"no whole answer within the deadline of {self._deadline:g} s")

    async def _exchange_unbounded(
        self, url: str, content: bytes, ctype: str
    ) -> tuple[int, httpx.Headers, bytes]:
        if self._transport is None:
            response = await self._http.post(url, content=content, headers={"Content-Type": ctype})
            return response.status_code, response.headers, response.content
        request = httpx.Request(
            "POST",
            url,
            content=content,
            headers={**_HEADERS, "Content-Type": ctype},
            extensions={"timeout": self._timeout},
        )
        response = await self._transport.handle_async_request(request)
        try:
            data = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.headers, data

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return redact(text, self._creds.secrets)


def _is_command_refusal(exc: APIError) -> bool:
    """Whether a direct call's error is the method's refusal of this one command, as it
    would be inside a batch: a JSON error with a 4xx status (``NOT_FOUND``, ``ACCESS_DENIED``,
    a method outside the token's scope), not one about the call as a whole (credentials,
    limits, redirects)."""
    if type(exc) is APIError:
        return 400 <= exc.status_code < 500
    return isinstance(exc, AuthError) and exc.code.lower() == "insufficient_scope"


def _describe_event(event: Event) -> str:
    """One log line for an event (the events hold no secrets)."""
    match event:
        case RequestSent(method, commands, attempt):
            again = f", attempt {attempt}" if attempt > 1 else ""
            return f"sending {method} ({commands} command(s){again})"
        case RequestAnswered(method, status, seconds, error):
            refused = f" {error}" if error else ""
            return f"{method} answered {status}{refused} in {seconds:.3f} s"
        case RequestFailed(method, error):
            return f"{method} got no answer: {error}"
        case RetryScheduled(method, attempt, delay, reason):
            return f"{method} attempt {attempt} failed ({reason}); retrying in {delay:.1f} s"
        case MethodHeld(method, until, reason):
            at = time.strftime("%H:%M:%S", time.localtime(until))
            return f"{method} held until {at} ({reason})"
        case MethodReleased(method):
            return f"{method} released: its commands go again"
        case RateLimitWaited(seconds):
            return f"waited {seconds:.2f} s for the rate limit"
    return repr(event)  # pragma: no cover - every event is matched above


class _Stop(stop_base):
    """Stop after the policy's attempts, or once its total time is spent (on our clock)."""

    def __init__(self, policy: RetryPolicy, clock: Clock, started: float) -> None:
        self._policy = policy
        self._clock = clock
        self._started = started

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self._policy.attempts:
            return True
        return self._clock() - self._started >= self._policy.timeout


class _Wait(wait_base):
    """Exponential backoff with jitter between attempts.

    Server hints are honoured elsewhere: a 503 fills the rate limiter and a 429 holds the
    method in the operating-time budget, and every attempt waits on both before sending.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        return self._policy.backoff(retry_state.attempt_number)


def _reset_at(extra: Mapping[str, Any]) -> float | None:
    return as_float(extra.get("operating_reset_at"))


class _Held(_NotSent):
    """Raised before sending a batch holding a method that is now over its budget (private)."""

    def __init__(self, methods: list[str]) -> None:
        super().__init__(f"not sent: {', '.join(methods)} over the operating-time budget")


class _CallbackFailed(_NotSent):
    """The caller's token provider or `on_refresh` raised before anything was sent (private)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"not sent: a callback failed ({type(cause).__name__})")
        self.cause = cause


class _JobStopped(_NotSent):
    """Raised inside a request that was about to be sent after the job stopped (private)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"not sent: the job stopped ({cause})")
        self.cause = cause


class _Outcomes(AsyncIterator[CommandResult]):
    """A stream's outcomes as they become final; then the error that ended the job, if any."""

    def __init__(self, receive: anyio.abc.ObjectReceiveStream[CommandResult]) -> None:
        self._receive = receive
        self.failure: Exception | None = None
        self.raised = False

    async def __anext__(self) -> CommandResult:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            if self.failure is not None and not self.raised:
                self.raised = True
                raise self.failure from None
            raise StopAsyncIteration from None


@contextlib.contextmanager
def _closing(intake: Intake | None) -> Iterator[None]:
    """Stop reading a stream when its job ends, however it ends."""
    try:
        yield
    finally:
        if intake is not None:
            intake.close()


@asynccontextmanager
async def _single_errors() -> AsyncIterator[None]:
    """Let a single error out of a task group as itself, not as an ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
