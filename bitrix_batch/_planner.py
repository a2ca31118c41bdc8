"""The planner: packs a checked command list into HTTP requests ("chunks"). No I/O.

Theory of operation
-------------------
Commands and their references form a graph. The planner orders it (a topological order that
keeps the caller's order wherever the references allow), then packs the commands into chunks,
each sent as one ``batch`` call. The rules, which the tests cite by number:

Rule 1. A chunk holds at most 50 commands (``CRestUtil::BATCH_MAX_LENGTH``; the server runs the
        first 50 and fails the rest, so a client must never send more).
Rule 2. A reference points to a command in an earlier chunk, or earlier in the same chunk.
        Across chunks the client substitutes the value before sending; inside a chunk the
        server does.
Rule 3. A reference is left to the server only when the command holding it *reads*. If the
        referenced command fails, or the path does not resolve, the server silently
        substitutes garbage; a read run with garbage changes nothing, and its result is thrown
        away and reported. A command that writes always goes to a later chunk than the
        commands it refers to, so the client can check the value first.
Rule 4. A command whose dependency failed, was not run, or does not resolve is never sent
        (the scheduler enforces this when it builds each request).
Rule 5. The plan is deterministic: the same input gives the same chunks.
Rule 6. ``halt=True``: chunks are consecutive slices of the caller's order, sent one at a time
        with the server's ``halt=1``, and a reference must point backwards. After a chunk that
        holds a server-side reference, no write may follow in the same chunk, so that when the
        reference turns out unresolved only reads have run past it, and their results are
        thrown away: after the first failure, nothing later in the caller's order has run.
Rule 7. A command marked ``direct`` (it holds `Literal` text the server would substitute inside
        a batch) is a chunk of its own, sent as a direct call, never a ``batch``: nothing shares
        its request, and its references, and those of the commands that use its result, are
        resolved by the client. With ``halt`` it is a slice of its own, in its place.

Without ``halt``, packing is greedy by *level*: a command with no references is on level 0; a
read referring to commands whose deepest level is L joins the chunk of those level-L commands if
they share one chunk with room; otherwise a command goes on level L + 1. Each level fills one
chunk at a time. A chunk waits only for the chunks its commands refer to, so independent chunks
run at once and dependent ones start as soon as their producers finish.

The `Packer` does this incrementally, one command at a time in an order where producers come
first (the caller's order for a stream; a topological order for a whole list). A chunk is handed
over when it is full and the chunks it refers to have been handed over, or when the packer is
flushed; so a whole list is packed exactly as one pass would, and a stream is packed the same way
as long as its window holds the commands that could share a chunk. A command referring to one
already handed over is placed as if that producer were on level 0: it waits for it in the
scheduler, and the client substitutes the value.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._commands import Entry
from ._errors import DependencyCycleError, InvalidReferenceError
from ._types import Key

__all__ = ["MAX_BATCH", "Chunk", "Packer", "Plan", "plan"]

#: The most commands one ``batch`` call may carry.
MAX_BATCH = 50


@dataclass(slots=True, eq=False)
class Chunk:
    """One planned HTTP request: the commands it carries, in order, and what it waits for.

    `after` (the ids of the chunks it waits for) is filled in by `plan`, for a whole list; the
    scheduler works it out itself from the commands' references.
    """

    id: int
    entries: list[Entry] = field(default_factory=list)
    after: set[int] = field(default_factory=set)
    level: int = 0
    #: One command sent on its own as a direct call (Rule 7): nothing else may join it.
    direct: bool = False

    @property
    def members(self) -> list[int]:
        """The commands' indexes, in order."""
        return [e.index for e in self.entries]


@dataclass(slots=True)
class Plan:
    """The chunks for a whole command list, and where each command went."""

    entries: list[Entry]
    chunks: list[Chunk]
    chunk_of: list[int]
    halt: bool

    @property
    def rounds(self) -> int:
        """The length of the longest chain of chunks: the fewest sequential round trips."""
        depth: dict[int, int] = {}
        for chunk in self.chunks:  # chunks only wait for chunks with smaller ids
            depth[chunk.id] = 1 + max((depth[a] for a in chunk.after), default=0)
        return max(depth.values(), default=0)

    def server_side(self, index: int, target: int) -> bool:
        """True when command `index` leaves its reference to `target` to the server."""
        return self.chunk_of[index] == self.chunk_of[target]


def plan(
    entries: Sequence[Entry], *, halt: bool = False, max_batch: int = MAX_BATCH
) -> Plan:
    """Pack a whole checked list (indexes ``0..n-1``) into chunks following Rules 1 to 6.

    Raises:
        DependencyCycleError: the references form a cycle (named in the message).
        InvalidReferenceError: with ``halt=True``, a reference points forwards.
    """
    entries = list(entries)
    backwards = all(d < e.index for e in entries for d in e.deps)
    if halt and not backwards:
        e = next(e for e in entries if any(d >= e.index for d in e.deps))
        target = entries[next(d for d in e.deps if d >= e.index)]
        raise InvalidReferenceError(
            e.key,
            e.method,
            f"$result[{target.skey}]",
            "points forwards; with halt=True a command may only refer to an earlier one",
        )
    # Kahn's order keeps the caller's order where it can: when every reference points
    # backwards that *is* the caller's order, and no cycle is possible.
    order: Iterable[int] = range(len(entries)) if backwards else _topological_order(entries)
    packer = Packer(halt=halt, max_batch=max_batch)
    chunks: list[Chunk] = []
    for i in order:
        chunks.extend(packer.add(entries[i]))
    chunks.extend(packer.flush())
    chunk_of = [-1] * len(entries)
    for chunk in chunks:
        for e in chunk.entries:
            chunk_of[e.index] = chunk.id
    for chunk in chunks:
        if halt and chunk.id:
            chunk.after.add(chunk.id - 1)  # Rule 6: one slice after the other
        for e in chunk.entries:
            for d in e.deps:
                if chunk_of[d] != chunk.id:
                    chunk.after.add(chunk_of[d])
    return Plan(entries, chunks, chunk_of, halt)


class Packer:
    """Packs commands into chunks as they come; producers must come before their users.

    `add` and `flush` return the chunks handed over, numbered in the order they are: a chunk
    only ever refers to chunks handed over before it.
    """

    def __init__(self, *, halt: bool = False, max_batch: int = MAX_BATCH) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        self._halt = halt
        self._max = max_batch
        self._next_id = 0
        #: The chunk being filled on each level (halt: on level 0, the current slice).
        self._filling: dict[int, Chunk] = {}
        #: Each command not handed over yet, and its chunk.
        self._home: dict[int, Chunk] = {}
        #: Full chunks still waiting for chunks they refer to: how many, and who waits.
        self._missing: dict[int, int] = {}
        self._waiters: dict[int, list[Chunk]] = {}
        self._server_ref = False  # halt: the current slice holds a server-side reference

    @property
    def held(self) -> int:
        """Commands added but not handed over yet."""
        return len(self._home)

    def add(self, entry: Entry) -> list[Chunk]:
        """Place one command; return the chunks this completes and hands over."""
        if self._halt:
            return self._add_in_order(entry)
        home = self._home
        held = [home[d] for d in entry.deps if d in home]
        if entry.direct:  # Rule 7
            level = max((c.level for c in held), default=0) + 1 if entry.deps else 0
            return self._alone(entry, level)
        chunk: Chunk | None = None
        if not entry.deps:
            chunk = self._open_at(0)
        elif not held:
            # Its producers are handed over already: the client substitutes their values, so
            # it never shares their request (and never holds back level 0 while they run).
            chunk = self._open_at(1)
        else:
            deepest = max(c.level for c in held)
            homes = {id(c): c for c in held if c.level == deepest}
            if entry.read and len(held) == len(entry.deps) and len(homes) == 1:
                (only,) = homes.values()
                if len(only.entries) < self._max and not only.direct:
                    chunk = only  # Rule 3: a read may share its producer's request
            if chunk is None:
                chunk = self._open_at(deepest + 1)
        return self._place(entry, chunk)

    def _alone(self, entry: Entry, level: int) -> list[Chunk]:
        """Rule 7: a direct command in a chunk of its own, complete at once."""
        chunk = Chunk(-1, [entry], level=level, direct=True)
        self._home[entry.index] = chunk
        return self._complete(chunk)

    def _place(self, entry: Entry, chunk: Chunk) -> list[Chunk]:
        chunk.entries.append(entry)
        self._home[entry.index] = chunk
        if len(chunk.entries) >= self._max:
            if self._filling.get(chunk.level) is chunk:
                del self._filling[chunk.level]
            return self._complete(chunk)
        return []

    def flush(self) -> list[Chunk]:
        """Hand over every chunk, full or not (the input ended, or the job must not wait)."""
        out: list[Chunk] = []
        for level in sorted(self._filling):  # producers' levels first
            chunk = self._filling.pop(level)
            out.extend(self._complete(chunk))
        self._server_ref = False
        return out

    def _open_at(self, level: int) -> Chunk:
        chunk = self._filling.get(level)
        if chunk is None:
            chunk = self._filling[level] = Chunk(-1, level=level)
        return chunk

    def _add_in_order(self, entry: Entry) -> list[Chunk]:
        """halt=True: consecutive slices of the caller's order (Rule 6)."""
        out: list[Chunk] = []
        if entry.direct:  # Rule 7: a slice of its own, in its place
            out = self.flush()
            chunk = Chunk(-1, [entry], direct=True)
            self._home[entry.index] = chunk
            return out + self._complete(chunk)
        current = self._filling.get(0)
        here = current is not None and any(self._home.get(d) is current for d in entry.deps)
        if current is not None and (
            len(current.entries) >= self._max or (not entry.read and (here or self._server_ref))
        ):
            out = self.flush()
            here = False
        chunk = self._open_at(0)
        chunk.entries.append(entry)
        self._home[entry.index] = chunk
        self._server_ref = self._server_ref or here
        return out

    def _complete(self, chunk: Chunk) -> list[Chunk]:
        """A chunk takes no more commands: hand it over once what it refers to is."""
        producers = {
            id(c): c
            for e in chunk.entries
            for d in e.deps
            if (c := self._home.get(d)) is not None and c is not chunk
        }
        if producers:
            self._missing[id(chunk)] = len(producers)
            for c in producers.values():
                self._waiters.setdefault(id(c), []).append(chunk)
            return []
        out: list[Chunk] = []
        ready = [chunk]
        while ready:
            c = ready.pop()
            c.id = self._next_id
            self._next_id += 1
            for e in c.entries:
                del self._home[e.index]
            out.append(c)
            for w in self._waiters.pop(id(c), ()):
                self._missing[id(w)] -= 1
                if self._missing[id(w)] == 0:
                    del self._missing[id(w)]
                    ready.append(w)
        return out


def _topological_order(entries: list[Entry]) -> list[int]:
    """Kahn's algorithm, always taking the ready command the caller listed first.

    The caller's order is swept once; only a command that refers forwards waits (in a heap,
    by index) until what it refers to is placed. That is the same order as Kahn's algorithm
    with every ready command in a heap, at a fraction of the cost for a list whose references
    mostly point backwards.
    """
    placed = bytearray(len(entries))
    missing: dict[int, int] = {}
    waiters: dict[int, list[int]] = {}
    released: list[int] = []
    order: list[int] = []

    def place(i: int) -> None:
        order.append(i)
        placed[i] = 1
        for w in waiters.pop(i, ()):
            missing[w] -= 1
            if missing[w] == 0:
                heapq.heappush(released, w)

    for e in entries:
        while released:  # commands released so far precede this one (they come earlier)
            place(heapq.heappop(released))
        later = [d for d in e.deps if not placed[d]]
        if later:
            missing[e.index] = len(later)
            for d in later:
                waiters.setdefault(d, []).append(e.index)
        else:
            place(e.index)
    while released:
        place(heapq.heappop(released))
    if len(order) < len(entries):
        raise DependencyCycleError(_find_cycle(entries, placed))
    return order


def _find_cycle(entries: list[Entry], placed: bytearray) -> list[Key]:
    """Name one cycle among the commands Kahn's algorithm could not order."""
    # Every command left over has a dependency left over, so walking dependencies must
    # come back to a command already on the walk.
    start = placed.index(0)
    seen: dict[int, int] = {}
    walk: list[int] = []
    i = start
    while i not in seen:
        seen[i] = len(walk)
        walk.append(i)
        i = min(d for d in entries[i].deps if not placed[d])
    loop = walk[seen[i] :]  # each command refers to the next, the last to the first
    return [entries[j].key for j in (*loop, loop[0])]
