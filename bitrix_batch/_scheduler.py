"""The scheduler: a state machine that turns a `Plan` into requests and results. No I/O.

The executor drives it in a loop, much like `graphlib.TopologicalSorter`:

    scheduler = Scheduler(plan)
    while not scheduler.finished:
        for request in scheduler.next_requests():   # chunks whose producers are all final
            ... send request.cmd, then scheduler.complete(request, sections)
            ... or, if the HTTP call failed for good, scheduler.abort(request, error, ran=...)
        results = scheduler.take_finished()        # outcomes that became final, for streaming

Building a request is where Rule 4 holds: every reference to a command in another chunk is
resolved from that command's final outcome with the server's rules, and a command whose input
cannot be resolved is finalised as skipped and never sent. Completing a request checks each
server-side reference after the fact (Rule 3) and throws away the result of a read that ran on
garbage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._commands import Entry, ServerSide, Unresolved, render_params, resolve_value
from ._encoding import encode_command
from ._errors import CommandError, OutcomeUnknownError
from ._planner import Plan
from ._refs import Token, segment_is_safe
from ._response import BatchSections, as_int
from ._result import CommandResult, Skip, SkipReason, Status

__all__ = ["ChunkRequest", "Scheduler", "Verdict"]

#: What to do with a command that failed inside a batch (see `_retry.command_verdict`).
Verdict = Literal["retry", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """One ``batch`` call ready to send: ``cmd`` maps wire keys to command strings."""

    chunk_id: int
    halt: bool
    cmd: dict[str, str]
    members: tuple[int, ...]
    wire: dict[str, int]
    #: Each command's method, by wire key (to read the budget figures of the answer).
    method_of: dict[str, str]
    writes: bool

    @property
    def methods(self) -> frozenset[str]:
        """The methods inside this batch, in lower case (the budget's keys)."""
        return frozenset(m.lower() for m in self.method_of.values())


class _DependencyFailed(Unresolved):
    pass


class Scheduler:
    """Feeds chunks to the executor in dependency order and records every outcome."""

    def __init__(
        self,
        plan: Plan,
        *,
        encode: Callable[[str, dict[str, Any]], str] = encode_command,
        verdict: Callable[[Entry, CommandError], Verdict] = lambda entry, error: "failed",
        command_attempts: int = 1,
    ) -> None:
        self.plan = plan
        self._encode = encode
        self._verdict = verdict
        self._command_attempts = command_attempts
        entries = plan.entries
        self._outcomes: list[CommandResult | None] = [None] * len(entries)
        # The planner's chunks are fixed; retries and parked commands get chunks of their own,
        # appended here. `_chunk_of` says which chunk a command travels in now (it decides
        # which references the server resolves); readiness still counts by the planned chunk.
        self._members: list[list[int]] = [list(c.members) for c in plan.chunks]
        self._chunk_of = list(plan.chunk_of)
        self._attempts = [0] * len(entries)
        self._parked: list[int] = []
        self._first = 0  # no command before this index is pending
        self._cancelled = False
        self._cancel_error: BaseException | None = None
        self._open = [len(c.members) for c in plan.chunks]  # members not yet final
        self._blocking = [len(c.after) for c in plan.chunks]  # producer chunks not final
        self._users: list[list[int]] = [[] for _ in plan.chunks]
        for chunk in plan.chunks:
            for a in chunk.after:
                self._users[a].append(chunk.id)
        self._ready: deque[int] = deque(c.id for c in plan.chunks if not c.after)
        self._new: list[CommandResult] = []
        self._final = 0
        self._in_flight = 0
        self._handed: set[int] = set()  # commands in a request that has not come back yet
        self._halted = False

    # --- state ------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every command has a final outcome."""
        return self._final == len(self.plan.entries)

    @property
    def in_flight(self) -> int:
        """Requests handed out and not yet completed or aborted."""
        return self._in_flight

    def outcome(self, index: int) -> CommandResult | None:
        """The final outcome of command `index`, or None while it is pending."""
        return self._outcomes[index]

    def results(self) -> list[CommandResult]:
        """Every final outcome, in the caller's order."""
        return [r for r in self._outcomes if r is not None]

    def take_finished(self) -> list[CommandResult]:
        """The outcomes that became final since the last call, in the order they did."""
        new, self._new = self._new, []
        return new

    def __repr__(self) -> str:
        return (
            f"<Scheduler ready={len(self._ready)} in_flight={self._in_flight}"
            f" done={self._final}/{len(self.plan.entries)}>"
        )

    # --- handing out work -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Commands without a final outcome yet."""
        return len(self.plan.entries) - self._final

    @property
    def has_ready(self) -> bool:
        """True when `next_requests` has something to hand out."""
        if self._cancelled or not self._ready:
            return False
        if self.plan.halt:
            first = self._first_pending()
            return first is not None and self._chunk_of[first] in self._ready
        return True

    def _first_pending(self) -> int | None:
        # Outcomes only ever become final, so the first pending command only moves forward.
        outcomes = self._outcomes
        while self._first < len(outcomes) and outcomes[self._first] is not None:
            self._first += 1
        return self._first if self._first < len(outcomes) else None

    @property
    def parked(self) -> bool:
        """True while some commands wait for their method's operating-time hold to end."""
        return bool(self._parked)

    def unpark(self, held: Callable[[str], bool] | None = None) -> None:
        """Make parked commands ready again (the executor calls this when a hold may be over).

        A parked chunk stays parked while a method in it is still `held`, or while a command
        it refers to is still in flight (it was parked out of the very request that carries
        its producer).
        """
        waiting = []
        for chunk_id in self._parked:
            if self._producers_final(chunk_id) and (held is None or self._can_go(chunk_id, held)):
                self._ready.append(chunk_id)
            else:
                waiting.append(chunk_id)
        self._parked = waiting

    def _can_go(self, chunk_id: int, held: Callable[[str], bool]) -> bool:
        """Whether building the parked chunk again would send something: one of the commands
        that wait for nothing else in it (with halt, its first command) is no longer held."""
        entries = self.plan.entries
        members = [
            i
            for i in self._members[chunk_id]
            if self._outcomes[i] is None and self._chunk_of[i] == chunk_id
        ]
        if not members:
            return True
        if self.plan.halt:
            return not held(entries[members[0]].method)
        inside = set(members)
        return any(
            not held(entries[i].method)
            for i in members
            if not any(d in inside for d in entries[i].deps)
        )

    def _producers_final(self, chunk_id: int) -> bool:
        for i in self._members[chunk_id]:
            if self._outcomes[i] is None:
                for d in self.plan.entries[i].deps:
                    if self._chunk_of[d] != chunk_id and self._outcomes[d] is None:
                        return False
        return True

    def next_requests(
        self, limit: int | None = None, held: Callable[[str], bool] | None = None
    ) -> list[ChunkRequest]:
        """Build requests for chunks whose producers are all final, at most `limit` of them.

        Commands whose method `held` says is over its operating-time budget are parked in a
        chunk of their own (with the commands that read them server-side) instead of
        delaying the rest; with halt, the rest of the chunk is parked to keep the order.
        """
        out: list[ChunkRequest] = []
        if self._cancelled:
            return out
        if self.plan.halt:
            return self._next_in_order(held)
        while self._ready and (limit is None or len(out) < limit):
            request = self._build(self._ready.popleft(), held)
            if request is not None:
                self._in_flight += 1
                out.append(request)
        return out

    def _next_in_order(self, held: Callable[[str], bool] | None) -> list[ChunkRequest]:
        """halt=True: one request at a time, always the chunk holding the earliest command
        still pending; if that chunk is parked (its method on hold), nothing goes."""
        if self._in_flight:
            return []
        first = self._first_pending()
        if first is None:
            return []
        chunk_id = self._chunk_of[first]
        if chunk_id not in self._ready:
            return []  # parked, or its producers are not final yet
        self._ready.remove(chunk_id)
        request = self._build(chunk_id, held)
        if request is None:
            return []
        self._in_flight += 1
        return [request]

    def _new_chunk(self, members: list[int]) -> int:
        chunk_id = len(self._members)
        self._members.append(members)
        for i in members:
            self._chunk_of[i] = chunk_id
        return chunk_id

    def _build(
        self, chunk_id: int, held: Callable[[str], bool] | None = None
    ) -> ChunkRequest | None:
        plan = self.plan
        members = [
            i
            for i in self._members[chunk_id]
            if self._outcomes[i] is None and self._chunk_of[i] == chunk_id
        ]
        wire = _wire_keys([plan.entries[i] for i in members])
        sending: dict[int, str] = {}
        cmd: dict[str, str] = {}
        parked: list[int] = []
        for i in members:
            entry = plan.entries[i]
            if self._outcomes[i] is not None:  # halted while this chunk was being built
                continue
            if parked and (plan.halt or any(d in parked for d in entry.deps)):
                parked.append(i)
                continue
            if held is not None and held(entry.method):
                parked.append(i)
                continue

            def resolve(token: Token, here: int = i) -> Any:
                target = self._target(here, token)
                if self._chunk_of[target] == chunk_id:
                    if target not in sending:
                        raise _DependencyFailed(f"command {plan.entries[target].key!r} is not sent")
                    return ServerSide(token.render(sending[target]))
                return self._value(target, token)

            try:
                params = render_params(entry, resolve)
            except Unresolved as exc:
                self._skip_unresolved(i, exc)
                if plan.halt:
                    self._halt_rest()
                continue
            sending[i] = wire[i]
            self._handed.add(i)
            cmd[wire[i]] = self._encode(entry.method, params)
        if parked:
            whole = not sending and len(parked) == len(members)
            self._parked.append(chunk_id if whole else self._new_chunk(parked))
        if not sending:
            return None
        entries = [plan.entries[i] for i in sending]
        return ChunkRequest(
            chunk_id=chunk_id,
            halt=plan.halt,
            cmd=cmd,
            members=tuple(sending),
            wire={w: i for i, w in sending.items()},
            method_of={w: plan.entries[i].method for i, w in sending.items()},
            writes=not all(e.read for e in entries),
        )

    def _target(self, index: int, token: Token) -> int:
        return self.plan.entries[index].targets[token.target]

    def _value(self, target: int, token: Token) -> Any:
        """The value a token stands for, from a final outcome, with the server's walk."""
        outcome = self._outcomes[target]
        if outcome is None:  # pragma: no cover - the plan orders producers first
            raise AssertionError("a producer is not final")
        if token.kind == "error":
            if outcome.status is not Status.FAILED or outcome.error is None:
                raise Unresolved(f"$error refers to command {outcome.key!r}, which did not fail")
            return resolve_value(outcome.error.as_dict(), token.path)
        if outcome.status is not Status.OK:
            raise _DependencyFailed(
                f"command {outcome.key!r} it refers to is {outcome.status.value}"
            )
        if token.kind == "result":
            return resolve_value(outcome.result, token.path)
        base = {"next": outcome.next, "total": outcome.total, "time": outcome.time}[token.kind]
        if base is None:
            raise Unresolved(f"command {outcome.key!r} has no {token.kind}")
        return resolve_value(base, token.path)

    # --- taking answers -----------------------------------------------------------------------

    def complete(self, request: ChunkRequest, sections: BatchSections) -> None:
        """Record the server's answer to `request` and check its server-side references.

        A command that failed with a retryable error (see `retry_command`) is not final: it
        goes into a new chunk with the commands that read it server-side, keeping its key and
        references, and is sent again.
        """
        self._in_flight -= 1
        self._handed.difference_update(request.members)
        plan = self.plan
        stopped = False  # with halt=1 the server (or Rule 6) stopped at a failure
        again: list[int] = []
        for wire_key, i in request.wire.items():
            entry = plan.entries[i]
            ran = wire_key in sections.result or wire_key in sections.result_error
            if again and (
                (plan.halt and not ran) or any(d in again for d in entry.deps)
            ):
                # Not run (the server halted at the refusal), or run on a value that is about
                # to change (a read, Rule 3): it goes again with the refused command. A command
                # that ran stays as it is, whatever: it is never sent twice.
                again.append(i)
                continue
            if stopped:
                self._skip(i, SkipReason.HALTED, "an earlier command failed and halt=True")
                continue
            outcome = self._read_outcome(entry, wire_key, sections)
            if outcome.error is not None:
                verdict = self._verdict(entry, outcome.error)
                if (
                    verdict == "retry"
                    and not self._cancelled
                    and self._attempts[i] + 1 < self._command_attempts
                ):
                    self._attempts[i] += 1
                    again.append(i)
                    continue
                if verdict == "unknown":
                    outcome = CommandResult(
                        entry.key,
                        entry.method,
                        Status.UNKNOWN,
                        error=outcome.error,
                        uncertain=OutcomeUnknownError(
                            entry.key,
                            entry.method,
                            f"{outcome.error.code}: it may have run in part",
                        ),
                    )
            if outcome.status is not Status.UNKNOWN:
                problem = self._check_server_refs(i, request)
                if problem is not None:
                    self._skip_unresolved(
                        i, problem, suffix="; it ran on a garbage value, its result is discarded"
                    )
                    stopped = plan.halt
                    continue
            self._finalize(i, outcome)
            stopped = plan.halt and outcome.status is not Status.OK
        if again:
            self._ready.appendleft(self._new_chunk(again))
        if stopped:
            self._halt_rest()

    def _read_outcome(
        self, entry: Entry, wire_key: str, sections: BatchSections
    ) -> CommandResult:
        if wire_key in sections.result:
            return CommandResult(
                entry.key,
                entry.method,
                Status.OK,
                result=sections.result[wire_key],
                total=as_int(sections.result_total.get(wire_key)),
                next=as_int(sections.result_next.get(wire_key)),
                time=sections.result_time.get(wire_key),
            )
        if wire_key in sections.result_error:
            err = sections.result_error[wire_key]
            err = err if isinstance(err, dict) else {"error": str(err)}
            error = CommandError(
                entry.key,
                entry.method,
                str(err.get("error") or ""),
                str(err.get("error_description") or ""),
                {k: v for k, v in err.items() if k not in ("error", "error_description")},
            )
            return CommandResult(entry.key, entry.method, Status.FAILED, error=error)
        # No entry at all, and no failure before it that would explain a halt: the answer is
        # incomplete, so whether this command ran is unknown.
        return CommandResult(
            entry.key,
            entry.method,
            Status.UNKNOWN,
            uncertain=OutcomeUnknownError(
                entry.key, entry.method, "the server's answer has no entry for it"
            ),
        )

    def _check_server_refs(self, index: int, request: ChunkRequest) -> Unresolved | None:
        entry = self.plan.entries[index]
        for site in entry.sites:
            for token in site.tokens:
                target = self._target(index, token)
                if self._chunk_of[target] != request.chunk_id:
                    continue
                try:
                    value = self._value(target, token)
                except Unresolved as exc:
                    return exc
                if not site.whole and not isinstance(value, str | int | float):
                    return Unresolved(
                        f"an embedded reference resolves to a {type(value).__name__}"
                    )
                if isinstance(value, bool) and not site.whole:
                    return Unresolved("an embedded reference resolves to a bool")
        return None

    def abort(
        self, request: ChunkRequest, error: BaseException, *, ran: Literal["no", "unknown"]
    ) -> None:
        """Record that `request` failed for good.

        ``ran="no"``: the server certainly ran nothing; the commands are skipped with the
        error as the cause. ``ran="unknown"``: the server may have run them; their outcome is
        unknown and they are never re-sent.
        """
        self._in_flight -= 1
        self._handed.difference_update(request.members)
        for i in request.members:
            entry = self.plan.entries[i]
            if ran == "no":
                self._skip(i, SkipReason.REQUEST_FAILED, str(error), cause=error)
            else:
                self._finalize(
                    i,
                    CommandResult(
                        entry.key,
                        entry.method,
                        Status.UNKNOWN,
                        uncertain=OutcomeUnknownError(entry.key, entry.method, str(error)),
                    ),
                )
        if self.plan.halt:
            self._halt_rest()

    def give_back(self, request: ChunkRequest) -> None:
        """Take back a request that was not sent; its commands are built again later.

        After `cancel` nothing is built again: the commands are skipped with the fatal error.
        """
        self._in_flight -= 1
        self._handed.difference_update(request.members)
        if self._cancelled:
            for i in request.members:
                self._skip(
                    i, SkipReason.REQUEST_FAILED, str(self._cancel_error), self._cancel_error
                )
            return
        self._ready.appendleft(self._new_chunk(list(request.members)))

    def cancel(self, error: BaseException) -> None:
        """Finalise every command not yet handed out as skipped with `error` (a fatal error).

        Nothing is handed out after this, and refused commands are no longer sent again.
        """
        self._cancelled = True
        self._cancel_error = error
        self._ready.clear()
        self._parked.clear()
        for i, outcome in enumerate(self._outcomes):
            if outcome is None and i not in self._handed:
                self._skip(i, SkipReason.REQUEST_FAILED, str(error), cause=error)

    # --- bookkeeping -------------------------------------------------------------------------

    def _halt_rest(self) -> None:
        self._halted = True
        self._ready.clear()
        for i, outcome in enumerate(self._outcomes):
            if outcome is None and i not in self._handed:
                self._skip(i, SkipReason.HALTED, "an earlier command failed and halt=True")

    def _skip_unresolved(self, index: int, exc: Unresolved, suffix: str = "") -> None:
        reason = (
            SkipReason.DEPENDENCY_FAILED
            if isinstance(exc, _DependencyFailed)
            else SkipReason.UNRESOLVED_REFERENCE
        )
        self._skip(index, reason, f"{exc}{suffix}")

    def _skip(
        self, index: int, reason: SkipReason, detail: str, cause: BaseException | None = None
    ) -> None:
        entry = self.plan.entries[index]
        skip = Skip(entry.key, entry.method, reason, detail, cause)
        self._finalize(index, CommandResult(entry.key, entry.method, Status.SKIPPED, skip=skip))

    def _finalize(self, index: int, outcome: CommandResult) -> None:
        if self._outcomes[index] is not None:  # pragma: no cover - a bug, not an input
            raise AssertionError(f"command {outcome.key!r} finalised twice")
        self._outcomes[index] = outcome
        self._new.append(outcome)
        self._final += 1
        chunk_id = self.plan.chunk_of[index]  # readiness counts by the planned chunk
        self._open[chunk_id] -= 1
        if self._open[chunk_id] == 0:
            for user in self._users[chunk_id]:
                self._blocking[user] -= 1
                if self._blocking[user] == 0 and not self._halted:
                    self._ready.append(user)


def _wire_keys(entries: list[Entry]) -> dict[int, str]:
    """The key each command has on the wire: its own key where the server can read it back."""
    used: set[str] = set()
    wire: dict[int, str] = {}
    for e in entries:
        key = e.skey
        if segment_is_safe(key) and "$" not in key and key not in used:
            wire[e.index] = key
            used.add(key)
    n = 0
    for e in entries:
        if e.index not in wire:
            while f"_{n}" in used:
                n += 1
            wire[e.index] = f"_{n}"
            used.add(f"_{n}")
    return {e.index: wire[e.index] for e in entries}


