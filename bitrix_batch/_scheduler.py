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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ._commands import (
    Entry,
    ServerSide,
    Unresolved,
    render_command,
    render_direct,
    resolve_value,
)
from ._errors import CommandError, OutcomeUnknownError
from ._planner import Chunk, Plan
from ._refs import Token, segment_is_safe
from ._response import BatchSections, as_int
from ._result import CommandResult, CommandTime, Skip, SkipReason, Status
from ._types import Key

__all__ = ["ChunkRequest", "Scheduler", "Verdict"]

#: What to do with a command that failed inside a batch (see `_retry.command_verdict`).
Verdict = Literal["retry", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """One ``batch`` call ready to send: ``cmd`` maps wire keys to command strings.

    Or one command sent on its own, as a direct call of its method (planner Rule 7): then
    ``params`` holds its parameters, every reference resolved, and ``cmd`` is empty. Its
    answer is handed to `Scheduler.complete` as the batch answer of its one command.
    """

    chunk_id: int
    halt: bool
    cmd: dict[str, str]
    members: tuple[int, ...]
    wire: dict[str, int]
    #: Each command's method, by wire key (to read the budget figures of the answer).
    method_of: dict[str, str]
    writes: bool
    #: The caller's keys of the commands it carries, in the order they are sent.
    keys: tuple[Key, ...] = ()
    #: A direct call's parameters (None for a ``batch``).
    params: dict[str, Any] | None = None

    @property
    def methods(self) -> frozenset[str]:
        """The methods inside this batch, in lower case (the budget's keys)."""
        return frozenset(m.lower() for m in self.method_of.values())


#: How a producer that is not ok ended, in words.
_ENDED = {
    Status.FAILED: "failed",
    Status.SKIPPED: "was not run",
    Status.UNKNOWN: "has an unknown outcome",
}


class _DependencyFailed(Unresolved):
    pass


class Scheduler:
    """Feeds chunks to the executor in dependency order and records every outcome.

    A whole command list is one `Plan`. A stream's chunks arrive from the `Packer` as they
    fill (`extend`), until `close`. The scheduler keeps only what is still pending, and of the
    final outcomes only those a pending command refers to and those within `lookback` of the
    last command read (``keep=False``; ``keep=True`` keeps every outcome for `results`).
    """

    def __init__(
        self,
        plan: Plan | None = None,
        *,
        verdict: Callable[[Entry, CommandError], Verdict] = lambda entry, error: "failed",
        command_attempts: int = 1,
        halt: bool | None = None,
        keep: bool = True,
        lookback: int | None = None,
    ) -> None:
        self.halt = plan.halt if plan is not None else bool(halt)
        self._verdict = verdict
        self._command_attempts = command_attempts
        self._keep = keep
        self._lookback = lookback
        # Per pending command (deleted once it is final): its entry, the chunk it travels in
        # now (it decides which references the server resolves) and the chunk it was planned
        # in (readiness counts by that one), and how often the server refused it.
        self._entries: dict[int, Entry] = {}
        self._chunk_of: dict[int, int] = {}
        self._planned: dict[int, int] = {}
        self._attempts: dict[int, int] = {}
        # Final outcomes still needed, and how many pending commands refer to each command.
        self._outcomes: dict[int, CommandResult] = {}
        self._waiters: dict[int, int] = {}
        self._count = 0  # one past the highest index taken in
        self._swept = 0  # outcomes below this index have been considered for release
        self._closed = False
        # Per chunk: its members (until built), members not yet final, producer chunks not
        # yet final, and the chunks waiting for it. Retries and parked commands get chunks of
        # their own, numbered on from the planned ones.
        self._members: dict[int, list[int]] = {}
        self._open: dict[int, int] = {}
        self._blocking: dict[int, int] = {}
        self._users: dict[int, list[int]] = {}
        self._next_chunk = 0
        self._parked: list[int] = []
        self._first = 0  # no command before this index is pending
        self._cancelled = False
        self._cancel_error: BaseException | None = None
        self._ready: deque[int] = deque()
        self._new: list[tuple[int, CommandResult]] = []
        self._in_flight = 0
        self._handed: set[int] = set()  # commands in a request that has not come back yet
        self._halted = False
        self._read = 0  # commands of a stream read so far (the look-back's reference point)
        self._last_planned: int | None = None
        if plan is not None:
            self.extend(plan.chunks)
            self.close()

    # --- taking work in -------------------------------------------------------------------

    def refer(self, entry: Entry) -> None:
        """Note, when a stream's command is read, that it needs what it refers to kept (its
        chunk may be handed over much later); then `extend` it with ``referred=True``."""
        for d in entry.deps:
            self._waiters[d] = self._waiters.get(d, 0) + 1

    def extend(self, chunks: Iterable[Chunk], *, referred: bool = False) -> None:
        """Take in planned chunks; each refers only to chunks taken in before or to itself.

        ``referred``: the commands' references were counted already (`refer`).
        """
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        for chunk in chunks:
            cid = self._next_chunk
            self._next_chunk += 1
            members = []
            for entry in chunk.entries:
                i = entry.index
                members.append(i)
                self._entries[i] = entry
                self._chunk_of[i] = self._planned[i] = cid
                if not referred:
                    self.refer(entry)
                if i >= self._count:
                    self._count = i + 1
            self._members[cid] = members
            self._open[cid] = len(members)
            after = set()
            for entry in chunk.entries:  # producers in other chunks that are not final yet
                for d in entry.deps:
                    if d in self._entries and self._planned[d] != cid:
                        after.add(self._planned[d])
            if self.halt and self._last_planned is not None and self._last_planned in self._open:
                after.add(self._last_planned)  # Rule 6: one slice after the other
            self._last_planned = cid
            for a in after:
                self._users.setdefault(a, []).append(cid)
            if after:
                self._blocking[cid] = len(after)
            else:
                self._ready.append(cid)
        if self._cancelled:
            self._skip_rest(SkipReason.REQUEST_FAILED, str(self._cancel_error), self._cancel_error)
        elif self._halted:
            self._skip_rest(SkipReason.HALTED, "an earlier command failed and halt=True")
        self._release_old()

    def read_up_to(self, count: int) -> None:
        """Say how many commands of a stream have been read: the look-back counts from there."""
        self._read = max(self._read, count)
        self._release_old()

    def add_skipped(
        self,
        index: int,
        key: Key,
        method: str | None,
        reason: SkipReason,
        detail: str,
        cause: BaseException | None = None,
    ) -> None:
        """Record command `index` of a stream as never sent (invalid, or read after a halt)."""
        skip = Skip(key, method or "", reason, detail, cause)
        self._add_final(index, CommandResult(key, method or "", Status.SKIPPED, skip=skip))

    def add_known(self, index: int, outcome: CommandResult) -> None:
        """Record command `index` of a stream as final with the outcome an earlier run of
        the job recorded: it is not sent, and commands read later may refer to it. With halt,
        a known failure stops the rest, as it did in that run."""
        self._add_final(index, outcome)
        if self.halt and outcome.status is not Status.OK and not self._halted:
            self._halt_rest()

    def _add_final(self, index: int, outcome: CommandResult) -> None:
        self._count = max(self._count, index + 1)
        self._new.append((index, outcome))
        self._outcomes[index] = outcome  # kept like any outcome: its dependents read it
        self._release_old()

    def preset(self, known: Iterable[tuple[int, CommandResult]]) -> None:
        """Make commands taken in and not handed out final with known outcomes (those an
        earlier run of the same job recorded): they are not sent, and the commands that
        refer to them get their values from those outcomes, substituted by the client.
        With halt, a known failure then stops the rest, as it did in that run."""
        failed = False
        for index, outcome in known:
            if index not in self._entries or index in self._handed:
                raise ValueError(f"command #{index} is not pending")
            self._finalize(index, outcome)
            failed = failed or outcome.status is not Status.OK
        if self.halt and failed and not self._halted:
            self._halt_rest()

    def still_pending(self, request: ChunkRequest) -> list[tuple[int, Key, str]]:
        """``(index, key, method)`` of the commands of `request` that are not final after
        its answer: refused commands (and their readers) that go again in a later request."""
        entries = self._entries
        return [(i, entries[i].key, entries[i].method) for i in request.members if i in entries]

    def close(self) -> None:
        """No more commands will come: every outcome nobody refers to can go."""
        self._closed = True
        self._release_old()

    # --- state ------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the input is closed and every command has a final outcome."""
        return self._closed and not self._entries

    @property
    def in_flight(self) -> int:
        """Requests handed out and not yet completed or aborted."""
        return self._in_flight

    @property
    def stopped(self) -> bool:
        """True after a fatal error or a halt: nothing taken in from now on is sent."""
        return self._cancelled or self._halted

    @property
    def idle(self) -> bool:
        """True when nothing is in flight and nothing is ready to go."""
        return self._in_flight == 0 and not self.has_ready

    def outcome(self, index: int) -> CommandResult | None:
        """The final outcome of command `index` if it is kept, or None (pending, or released)."""
        return self._outcomes.get(index)

    def results(self) -> list[CommandResult]:
        """Every kept final outcome, in the caller's order."""
        return [self._outcomes[i] for i in sorted(self._outcomes)]

    def take_finished(self) -> list[tuple[int, CommandResult]]:
        """``(index, outcome)`` for the outcomes that became final since the last call."""
        new, self._new = self._new, []
        return new

    def __repr__(self) -> str:
        return (
            f"<Scheduler ready={len(self._ready)} in_flight={self._in_flight}"
            f" pending={len(self._entries)} added={self._count}>"
        )

    # --- handing out work -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Commands taken in without a final outcome yet."""
        return len(self._entries)

    @property
    def has_ready(self) -> bool:
        """True when `next_requests` has something to hand out."""
        if self._cancelled or not self._ready:
            return False
        if self.halt:
            first = self._first_pending()
            return first is not None and self._chunk_of[first] in self._ready
        return True

    def _first_pending(self) -> int | None:
        # Outcomes only ever become final, so the first pending command only moves forward.
        entries = self._entries
        while self._first < self._count and self._first not in entries:
            self._first += 1
        return self._first if self._first < self._count else None

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

    def _pending_members(self, chunk_id: int) -> list[int]:
        chunk_of = self._chunk_of
        return [i for i in self._members[chunk_id] if chunk_of.get(i) == chunk_id]

    def _can_go(self, chunk_id: int, held: Callable[[str], bool]) -> bool:
        """Whether building the parked chunk again would send something: one of the commands
        that wait for nothing else in it (with halt, its first command) is no longer held."""
        entries = self._entries
        members = self._pending_members(chunk_id)
        if not members:
            return True
        if self.halt:
            return not held(entries[members[0]].method)
        inside = set(members)
        return any(
            not held(entries[i].method)
            for i in members
            if not any(d in inside for d in entries[i].deps)
        )

    def _producers_final(self, chunk_id: int) -> bool:
        for i in self._pending_members(chunk_id):
            for d in self._entries[i].deps:
                if d in self._entries and self._chunk_of[d] != chunk_id:
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
        if self.halt:
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
        chunk_id = self._next_chunk
        self._next_chunk += 1
        self._members[chunk_id] = members
        for i in members:
            self._chunk_of[i] = chunk_id
        return chunk_id

    def _build(
        self, chunk_id: int, held: Callable[[str], bool] | None = None
    ) -> ChunkRequest | None:
        if chunk_id not in self._members:
            return None  # every member became final before it was built
        members = self._pending_members(chunk_id)
        entries = self._entries
        if len(members) == 1 and entries[members[0]].direct:
            return self._build_direct(chunk_id, members[0], held)
        # (A direct command among others cannot occur, by Rule 7; `render_command` would
        # refuse it, and it would be skipped, never sent inside a batch.)
        wire = _wire_keys([entries[i] for i in members])
        sending: dict[int, str] = {}
        cmd: dict[str, str] = {}
        parked: list[int] = []
        for i in members:
            entry = entries.get(i)
            if entry is None:  # halted while this chunk was being built
                continue
            if parked and (self.halt or any(d in parked for d in entry.deps)):
                parked.append(i)
                continue
            if held is not None and held(entry.method):
                parked.append(i)
                continue

            def resolve(token: Token, here: Entry = entry) -> Any:
                target = here.targets[token.target]
                if target in self._entries and self._chunk_of[target] == chunk_id:
                    if target not in sending:
                        raise _DependencyFailed(f"command {entries[target].key!r} is not sent")
                    return ServerSide(token.render(sending[target]))
                return self._value(target, token)

            try:
                command = render_command(entry, resolve)
            except Unresolved as exc:
                self._skip_unresolved(i, exc)
                if self.halt:
                    self._halt_rest()
                continue
            sending[i] = wire[i]
            self._handed.add(i)
            cmd[wire[i]] = command
        whole = bool(parked) and not sending and len(parked) == len(members)
        if whole:
            self._parked.append(chunk_id)  # built again, whole, when its hold ends
        else:
            del self._members[chunk_id]
            if parked:
                self._parked.append(self._new_chunk(parked))
        if not sending:
            return None
        return ChunkRequest(
            chunk_id=chunk_id,
            halt=self.halt,
            cmd=cmd,
            members=tuple(sending),
            wire={w: i for i, w in sending.items()},
            method_of={w: entries[i].method for i, w in sending.items()},
            writes=not all(entries[i].read for i in sending),
            keys=tuple(entries[i].key for i in sending),
        )

    def _build_direct(
        self, chunk_id: int, index: int, held: Callable[[str], bool] | None
    ) -> ChunkRequest | None:
        """A direct call (Rule 7): every reference resolved here, nothing left to the server."""
        entry = self._entries[index]
        if held is not None and held(entry.method):
            self._parked.append(chunk_id)  # built again when its hold ends
            return None
        del self._members[chunk_id]
        try:
            params = render_direct(
                entry, lambda token: self._value(entry.targets[token.target], token)
            )
        except Unresolved as exc:
            self._skip_unresolved(index, exc)
            if self.halt:
                self._halt_rest()
            return None
        wire_key = _wire_keys([entry])[index]
        self._handed.add(index)
        return ChunkRequest(
            chunk_id=chunk_id,
            halt=False,
            cmd={},
            members=(index,),
            wire={wire_key: index},
            method_of={wire_key: entry.method},
            writes=not entry.read,
            keys=(entry.key,),
            params=params,
        )

    def _value(self, target: int, token: Token) -> Any:
        """The value a token stands for, from a final outcome, with the server's walk."""
        outcome = self._outcomes.get(target)
        if outcome is None:  # pragma: no cover - the plan orders producers first
            raise AssertionError("a producer is not final")
        if token.kind == "error":
            if outcome.status is not Status.FAILED or outcome.error is None:
                raise Unresolved(f"$error refers to command {outcome.key!r}, which did not fail")
            return resolve_value(outcome.error.as_dict(), token.path)
        if outcome.status is not Status.OK:
            raise _DependencyFailed(
                f"the command it refers to, {outcome.key!r}, "
                + _ENDED.get(outcome.status, outcome.status.value)
            )
        if token.kind == "result":
            return resolve_value(outcome.result, token.path)
        time = None if outcome.time is None else dict(outcome.time)
        base = {"next": outcome.next, "total": outcome.total, "time": time}[token.kind]
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
        halt = self.halt
        stopped = False  # with halt=1 the server (or Rule 6) stopped at a failure
        again: list[int] = []
        for wire_key, i in request.wire.items():
            entry = self._entries[i]
            ran = wire_key in sections.result or wire_key in sections.result_error
            if again and ((halt and not ran) or any(d in again for d in entry.deps)):
                # Not run (the server halted at the refusal), or run on a value that is about
                # to change (a read, Rule 3): it goes again with the refused command. A command
                # that ran stays as it is, whatever: it is never sent twice.
                again.append(i)
                continue
            if stopped and not ran:
                self._skip(i, SkipReason.HALTED, "an earlier command failed and halt=True")
                continue
            # (A command the answer shows ran, even after a failure with halt=1 by a server
            # that ignored it, is reported with its outcome: what ran is never "not run".)
            outcome = self._read_outcome(entry, wire_key, sections)
            if outcome.error is not None:
                verdict = self._verdict(entry, outcome.error)
                attempts = self._attempts.get(i, 0)
                if (
                    verdict == "retry"
                    and not self._cancelled
                    and attempts + 1 < self._command_attempts
                ):
                    self._attempts[i] = attempts + 1
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
            if outcome.status is not Status.UNKNOWN and entry.deps:
                problem = self._check_server_refs(entry, request)
                if problem is not None:
                    self._skip_unresolved(
                        i, problem, suffix="; it ran on a garbage value, its result is discarded"
                    )
                    stopped = halt
                    continue
            self._finalize(i, outcome)
            stopped = stopped or (halt and outcome.status is not Status.OK)
        if again:
            self._ready.appendleft(self._new_chunk(again))
        if stopped:
            self._halt_rest()

    def _read_outcome(
        self, entry: Entry, wire_key: str, sections: BatchSections
    ) -> CommandResult:
        if wire_key in sections.result:
            # Positional arguments: this runs once per command of the job.
            return CommandResult(
                entry.key,
                entry.method,
                Status.OK,
                sections.result[wire_key],
                None,
                as_int(sections.result_total.get(wire_key)),
                as_int(sections.result_next.get(wire_key)),
                CommandTime.of(sections.result_time.get(wire_key), sections.strings),
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

    def _check_server_refs(self, entry: Entry, request: ChunkRequest) -> Unresolved | None:
        for site in entry.sites:
            for token in site.tokens:
                target = entry.targets[token.target]
                if target not in request.members:
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
        error as the cause. ``ran="unknown"``: the server may have run them; the writes'
        outcome is unknown and they are never re-sent. The reads of such a request that do not
        depend on one of its writes go again in a request of their own (their answer was
        lost, not their input), as often as the command attempts allow.
        """
        self._in_flight -= 1
        self._handed.difference_update(request.members)
        again = self._reads_to_resend(request) if ran == "unknown" else []
        if again:
            for i in again:
                self._attempts[i] = self._attempts.get(i, 0) + 1
            self._ready.appendleft(self._new_chunk(again))
        resent = set(again)
        for i in request.members:
            if i in resent:
                continue
            entry = self._entries[i]
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
        if self.halt:
            self._halt_rest()

    def _reads_to_resend(self, request: ChunkRequest) -> list[int]:
        """The reads of a request whose outcome is unknown that may simply be sent again:
        those that hold writes beside them, and refer to none of those writes (nor to reads
        that do)."""
        if not request.writes or self.halt or self._cancelled:
            return []  # an all-read request was retried already; halt keeps its order
        entries, blocked, again = self._entries, set(), []
        for i in request.members:  # in plan order: producers before their readers
            entry = entries[i]
            if (
                entry.read
                and not any(d in blocked for d in entry.deps)
                and self._attempts.get(i, 0) + 1 < self._command_attempts
            ):
                again.append(i)
            else:
                blocked.add(i)
        return again

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

        Nothing is handed out after this, refused commands are no longer sent again, and
        commands added later are skipped at once.
        """
        self._cancelled = True
        self._cancel_error = error
        self._ready.clear()
        self._parked.clear()
        self._skip_rest(SkipReason.REQUEST_FAILED, str(error), error)

    # --- bookkeeping -------------------------------------------------------------------------

    def _halt_rest(self) -> None:
        self._halted = True
        self._ready.clear()
        self._skip_rest(SkipReason.HALTED, "an earlier command failed and halt=True")

    def _skip_rest(
        self, reason: SkipReason, detail: str, cause: BaseException | None = None
    ) -> None:
        for i in sorted(self._entries):
            if i not in self._handed:
                self._skip(i, reason, detail, cause)

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
        entry = self._entries[index]
        skip = Skip(entry.key, entry.method, reason, detail, cause)
        self._finalize(index, CommandResult(entry.key, entry.method, Status.SKIPPED, skip=skip))

    def _finalize(self, index: int, outcome: CommandResult) -> None:
        entry = self._entries.pop(index, None)
        if entry is None:  # pragma: no cover - a bug, not an input
            raise AssertionError(f"command {outcome.key!r} finalised twice")
        del self._chunk_of[index]
        if self._attempts:
            self._attempts.pop(index, None)
        self._new.append((index, outcome))
        chunk_id = self._planned.pop(index)  # readiness counts by the planned chunk
        self._open[chunk_id] -= 1
        if self._open[chunk_id] == 0:
            del self._open[chunk_id]
            for user in self._users.pop(chunk_id, ()):
                self._blocking[user] -= 1
                if self._blocking[user] == 0:
                    del self._blocking[user]
                    if not self._halted:
                        self._ready.append(user)
        horizon = self._horizon()
        for d in entry.deps:
            left = self._waiters[d] - 1
            if left:
                self._waiters[d] = left
            else:
                del self._waiters[d]
                if not self._keep and d < horizon:
                    self._outcomes.pop(d, None)
        if self._keep or index >= horizon or index in self._waiters:
            self._outcomes[index] = outcome  # still needed (or every outcome is kept)

    def _horizon(self) -> int:
        """Outcomes below this index are kept only while a pending command refers to them."""
        if self._closed:
            return self._count
        if self._lookback is None:
            return 0
        return self._read - self._lookback

    def _release_old(self) -> None:
        """Let go of final outcomes that fell behind the look-back and that nobody needs."""
        if self._keep:
            return
        horizon = self._horizon()
        if horizon <= self._swept:
            return
        outcomes, waiters = self._outcomes, self._waiters
        if horizon - self._swept > len(outcomes):
            for i in [i for i in outcomes if i < horizon and i not in waiters]:
                del outcomes[i]
        else:
            for i in range(self._swept, horizon):
                if i in outcomes and i not in waiters:
                    del outcomes[i]
        self._swept = horizon


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
