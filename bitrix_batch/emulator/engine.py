"""Running one method call the way ``CRestServer::processCall`` does.

Shared by top-level requests and batch sub-commands: method lookup, scope check, the
operating-time check and charge, the processing-time model and the ``time`` object.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import errors
from .config import EmulatorConfig
from .limits import OperatingLimiter
from .php import PhpKey
from .stats import Stats
from .store import Store

__all__ = [
    "CallContext",
    "CallOutcome",
    "Caller",
    "Engine",
    "Handler",
    "MethodResult",
    "MethodSpec",
    "Timeline",
]


@dataclass(frozen=True)
class Caller:
    """Who is calling: every sub-command of a batch runs as the outer caller."""

    user_id: int
    kind: Literal["webhook", "oauth"]
    #: The operating limiter's key: the webhook or the OAuth application.
    credential: str
    scopes: frozenset[str] | None


@dataclass
class MethodResult:
    """What a handler returns; ``next``/``total`` go to the envelope's top level."""

    result: Any
    next: int | None = None
    total: int | None = None
    #: Rows touched, for the per-row part of the cost model.
    rows: int = 0
    #: Overrides the cost model (the batch reports the sum of its commands).
    processing: float | None = None


class Timeline:
    """Virtual time of one request: starts at the clock, advances by modelled costs."""

    def __init__(self, start: float, limit: float | None = None) -> None:
        self.start = start
        self.cursor = start
        #: The cloud's per-request cap (seconds); past it the request is cut off.
        self.limit = limit
        #: Operating time the batch commands of this request spent per (credential, method).
        #: The server counts a request's time for a method when the request ends, and only if
        #: it is over the 0.1 s floor (§4.2), so it is charged in `Engine.settle`.
        self.charges: dict[tuple[str, str], float] = {}

    @property
    def timed_out(self) -> bool:
        """True once the request has run past its cap."""
        return self.limit is not None and self.cursor - self.start > self.limit

    def advance(self, seconds: float) -> tuple[float, float]:
        """Spend ``seconds``; returns (start, finish) of that span."""
        begin = self.cursor
        self.cursor += seconds
        return begin, self.cursor


@dataclass
class CallContext:
    """Everything a handler may use."""

    engine: Engine
    caller: Caller
    timeline: Timeline
    in_batch: bool = False
    #: For ``batch``: per command key, the modelled seconds the command took.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        """The data store."""
        return self.engine.store

    @property
    def config(self) -> EmulatorConfig:
        """The emulator configuration."""
        return self.engine.config

    @property
    def stats(self) -> Stats:
        """The counters."""
        return self.engine.stats

    def now_iso(self) -> str:
        """The current virtual time as Bitrix prints dates."""
        return self.engine.iso(self.timeline.cursor)


Handler = Callable[[CallContext, dict[PhpKey, Any]], MethodResult]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its handler and the scope it needs (None = any)."""

    name: str
    handler: Handler
    scope: str | None


@dataclass
class CallOutcome:
    """A finished call: either a result with its time, or an error."""

    result: Any = None
    next: int | None = None
    total: int | None = None
    time: dict[str, Any] | None = None
    error: errors.RestError | None = None
    #: Virtual seconds the call took (0 for calls refused before running).
    seconds: float = 0.0


class Engine:
    """Method registry plus the per-call machinery."""

    def __init__(
        self,
        config: EmulatorConfig,
        store: Store,
        stats: Stats,
        lock: threading.RLock,
    ) -> None:
        self.config = config
        self.store = store
        self.stats = stats
        self.lock = lock
        self.limiter = OperatingLimiter(config)
        self.methods: dict[str, MethodSpec] = {}

    def register(self, name: str, handler: Handler, scope: str | None) -> None:
        """Add a method (names are stored lowercase)."""
        self.methods[name.lower()] = MethodSpec(name.lower(), handler, scope)

    def lookup(self, name: str) -> MethodSpec | None:
        """Lowercase first, then the original spelling (as the router does)."""
        return self.methods.get(name.lower()) or self.methods.get(name)

    def settle(self, timeline: Timeline) -> None:
        """Charge what a finished request's batch commands spent, per method, over the floor."""
        for (credential, method), seconds in timeline.charges.items():
            self.limiter.charge(credential, method, seconds)
        timeline.charges.clear()

    def iso(self, timestamp: float) -> str:
        """``date('c')`` in the configured time zone."""
        return datetime.fromtimestamp(timestamp, self.config.tz).isoformat(timespec="seconds")

    def _charged(self, method: str, in_batch: bool) -> tuple[bool, float]:
        """Whether this call is checked/charged by the operating limiter, and its weight."""
        if not self.config.operating_limit:
            return False, 1.0
        mode = self.config.batch_charge
        if method == "batch":
            return mode in ("batch", "both"), self.config.batch_weight
        if in_batch:
            return mode in ("submethods", "both"), 1.0
        return True, 1.0

    def call(
        self,
        name: str,
        params: dict[PhpKey, Any],
        caller: Caller,
        timeline: Timeline,
        in_batch: bool = False,
    ) -> CallOutcome:
        """Run one call; never raises a RestError (it comes back in the outcome)."""
        spec = self.lookup(name)
        if spec is None:
            return self._fail(errors.method_not_found(), in_batch)
        return self.call_spec(spec, params, caller, timeline, in_batch)

    def call_spec(
        self,
        spec: MethodSpec,
        params: dict[PhpKey, Any],
        caller: Caller,
        timeline: Timeline,
        in_batch: bool = False,
    ) -> CallOutcome:
        """Run an already looked-up method."""
        if spec.scope is not None and caller.scopes is not None:
            granted = caller.scopes
            if spec.scope not in granted and not (spec.scope == "user" and "user_basic" in granted):
                kind = None if in_batch else caller.kind
                return self._fail(errors.insufficient_scope(kind), in_batch)
        charged, weight = self._charged(spec.name, in_batch)
        if charged:
            state = self.limiter.state(caller.credential, spec.name)
            if state.blocked:
                if in_batch:
                    self.stats.operation_time_limit_commands += 1
                else:
                    self.stats.operation_time_limit += 1
                return self._fail(errors.operation_time_limit(), in_batch)
        ctx = CallContext(self, caller, timeline, in_batch)
        begin = timeline.cursor
        self.stats.commands[spec.name] += 1
        try:
            produced = spec.handler(ctx, params)
        except errors.RestError as exc:
            seconds = self.config.cost_of(spec.name).seconds(0)
            timeline.advance(seconds)
            return self._fail(exc, in_batch, seconds)
        if produced.processing is None:
            processing = self.config.cost_of(spec.name).seconds(produced.rows)
            timeline.advance(processing)
        else:
            processing = produced.processing
        finish = timeline.cursor
        duration = finish - begin
        pending = 0.0  # this request's batch time on the method, once over the floor
        if charged and in_batch:
            key = (caller.credential, spec.name)
            pending = timeline.charges.get(key, 0.0) + duration * weight
            timeline.charges[key] = pending
            if pending <= self.config.operating_floor_seconds:
                pending = 0.0
        elif charged:  # a top-level call is a request of its own
            self.limiter.charge(caller.credential, spec.name, duration * weight)
        # With the limit off nothing is charged, so `operating` reads 0: the cloud's shape,
        # without a budget a client would have to respect.
        state = self.limiter.state(caller.credential, spec.name)
        operating = state.operating + pending
        # Portals report an uncharged method as `"operating": 0` (an int) with the reset ten
        # minutes after the request's start, as if it opened a basket (real captures, R1). The
        # request's start, not the command's: a command's modelled start can lie far ahead.
        reset_at = state.reset_at
        if reset_at is None:
            reset_at = math.floor(timeline.start + self.config.operating_window_seconds)
        time_obj = {
            "start": begin,
            "finish": finish,
            "duration": duration,
            "processing": processing,
            "date_start": self.iso(begin),
            "date_finish": self.iso(finish),
            "operating_reset_at": reset_at,
            "operating": operating if operating else 0,
        }
        return CallOutcome(
            result=produced.result,
            next=produced.next,
            total=produced.total,
            time=time_obj,
            seconds=duration,
        )

    def _fail(self, error: errors.RestError, in_batch: bool, seconds: float = 0.0) -> CallOutcome:
        self.stats.command_errors[error.code or "(empty)"] += 1
        del in_batch  # the same error shape either way; only the HTTP status is dropped
        return CallOutcome(error=error, seconds=seconds)
