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

Without ``halt``, packing is greedy by *level*: a command with no references is on level 0; a
read referring to commands whose deepest level is L joins the chunk of those level-L commands if
they share one chunk with room; otherwise a command goes on level L + 1. Each level fills one
chunk at a time. A chunk waits only for the chunks its commands refer to, so independent chunks
run at once and dependent ones start as soon as their producers finish.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._commands import Entry
from ._errors import DependencyCycleError, InvalidReferenceError
from ._types import Key

__all__ = ["MAX_BATCH", "Chunk", "Plan", "plan"]

#: The most commands one ``batch`` call may carry.
MAX_BATCH = 50


@dataclass(slots=True)
class Chunk:
    """One planned HTTP request: the commands it carries, in order, and what it waits for."""

    id: int
    members: list[int] = field(default_factory=list)
    after: set[int] = field(default_factory=set)
    level: int = 0


@dataclass(slots=True)
class Plan:
    """The chunks for a command list, and where each command went."""

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
    """Pack checked entries into chunks following Rules 1 to 6.

    Raises:
        DependencyCycleError: the references form a cycle (named in the message).
        InvalidReferenceError: with ``halt=True``, a reference points forwards.
    """
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
    entries = list(entries)
    order = _topological_order(entries)
    if halt:
        chunks, chunk_of = _pack_sequential(entries, max_batch)
    else:
        chunks, chunk_of = _pack_levels(entries, order, max_batch)
        chunks, chunk_of = _number_by_level(chunks, chunk_of)
    for chunk in chunks:
        for i in chunk.members:
            for d in entries[i].deps:
                if chunk_of[d] != chunk.id:
                    chunk.after.add(chunk_of[d])
    return Plan(entries, chunks, chunk_of, halt)


def _topological_order(entries: list[Entry]) -> list[int]:
    """Kahn's algorithm, always taking the ready command the caller listed first."""
    waiting = [len(set(e.deps)) for e in entries]
    users: list[list[int]] = [[] for _ in entries]
    for e in entries:
        for d in set(e.deps):
            users[d].append(e.index)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(entries):
        raise DependencyCycleError(_find_cycle(entries, set(order)))
    return order


def _find_cycle(entries: list[Entry], done: set[int]) -> list[Key]:
    """Name one cycle among the commands Kahn's algorithm could not order."""
    # Every command left over has a dependency left over, so walking dependencies must
    # come back to a command already on the walk.
    start = min(i for i in range(len(entries)) if i not in done)
    seen: dict[int, int] = {}
    walk: list[int] = []
    i = start
    while i not in seen:
        seen[i] = len(walk)
        walk.append(i)
        i = min(d for d in entries[i].deps if d not in done)
    loop = walk[seen[i] :]  # each command refers to the next, the last to the first
    return [entries[j].key for j in (*loop, loop[0])]


def _pack_levels(
    entries: list[Entry], order: list[int], max_batch: int
) -> tuple[list[Chunk], list[int]]:
    chunks: list[Chunk] = []
    chunk_of = [-1] * len(entries)
    level = [0] * len(entries)
    open_chunk: dict[int, Chunk] = {}

    def place(i: int, chunk: Chunk) -> None:
        chunk.members.append(i)
        chunk_of[i] = chunk.id
        level[i] = chunk.level

    def open_at(lvl: int) -> Chunk:
        chunk = open_chunk.get(lvl)
        if chunk is None or len(chunk.members) >= max_batch:
            chunk = Chunk(len(chunks), level=lvl)
            chunks.append(chunk)
            open_chunk[lvl] = chunk
        return chunk

    for i in order:
        e = entries[i]
        if not e.deps:
            place(i, open_at(0))
            continue
        deepest = max(level[d] for d in e.deps)
        if e.read:
            homes = {chunk_of[d] for d in e.deps if level[d] == deepest}
            if len(homes) == 1:
                home = chunks[homes.pop()]
                if len(home.members) < max_batch:
                    place(i, home)  # Rule 3: a read may share its producer's request
                    continue
        place(i, open_at(deepest + 1))
    return chunks, chunk_of


def _number_by_level(
    chunks: list[Chunk], chunk_of: list[int]
) -> tuple[list[Chunk], list[int]]:
    """Renumber chunks level by level, so that a chunk only waits for smaller ids."""
    ordered = sorted(chunks, key=lambda c: (c.level, c.id))
    new_id = {c.id: n for n, c in enumerate(ordered)}
    for c in ordered:
        c.id = new_id[c.id]
    return ordered, [new_id[c] for c in chunk_of]


def _pack_sequential(entries: list[Entry], max_batch: int) -> tuple[list[Chunk], list[int]]:
    chunks: list[Chunk] = []
    chunk_of = [-1] * len(entries)
    current = Chunk(0)
    server_ref_seen = False
    for e in entries:
        for d in e.deps:
            if d >= e.index:
                target = entries[d]
                raise InvalidReferenceError(
                    e.key,
                    e.method,
                    f"$result[{target.skey}]",
                    "points forwards; with halt=True a command may only refer to an earlier one",
                )
        local = any(chunk_of[d] == current.id for d in e.deps)
        must_cut = len(current.members) >= max_batch or (
            not e.read and (local or server_ref_seen)
        )
        if must_cut and current.members:
            chunks.append(current)
            current = Chunk(len(chunks), after={len(chunks) - 1})
            server_ref_seen = False
            local = False
        current.members.append(e.index)
        chunk_of[e.index] = current.id
        server_ref_seen = server_ref_seen or local
    if current.members:
        chunks.append(current)
    return chunks, chunk_of
