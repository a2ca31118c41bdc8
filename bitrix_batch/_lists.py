"""Whole-list export and lookups by ID, built on the public `BitrixClient` API only.

`list_all` walks a list method with the ID cursor of Bitrix24's own bulk-export recipe
(``order {ID: ASC}``, ``filter {">ID": last}``, ``start=-1``: no COUNT query) and chains up to
50 pages inside one ``batch`` call with ``$result[page][49][ID]`` references, so one request
reads up to 2,500 rows. A page after a short one references a row that does not exist: the
server runs it on a garbage value in the same request, and the engine discards its result
(skipped, `SkipReason.UNRESOLVED_REFERENCE`), so the end of a range costs no request of its
own. The ID span is cut into ranges (``>ID`` / ``<=ID``)
walked concurrently, each range one chain; chains that are near their end share a request.

`get_by_ids` reads many records by ID with an ID-in filter, up to 50 IDs per list command and
50 commands per request, far cheaper than one ``*.get`` per ID.

The engine does not import this module; `BitrixClient.list_all` and `get_by_ids` import it
when first called. Only `batch`, `request` and `plan` of the client are used here.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._errors import BitrixBatchError, InvalidCommandError, InvalidResponseError
from ._planner import MAX_BATCH
from ._refs import Ref
from ._result import BatchResult, CommandResult, Status

if TYPE_CHECKING:
    from ._client import BitrixClient

__all__ = ["FoundRows", "ListExport", "ListShape", "get_by_ids"]

#: Rows per page on every Bitrix24 list method (``IRestService::LIST_LIMIT``).
PAGE_SIZE: Final = 50

#: How many ID ranges `list_all` walks at once by default.
DEFAULT_CONCURRENCY: Final = 8

#: Pages a range that nothing has been read from yet is given in its first request: a range
#: cut from an estimate may turn out empty (a gap in the IDs), and a few pages sharing a
#: request with other ranges cost little; a full request of 50 would be wasted.
_FRESH_PAGES: Final = 10

#: Pages short of whole requests a split range is sized for (see `ListExport._split`).
_SLACK_PAGES: Final = 2


@dataclass(frozen=True, slots=True)
class ListShape:
    """Where a list method puts its rows and what its ID field is called.

    Args:
        items_key: the rows sit under ``result[items_key]`` (``"items"`` for
            ``crm.item.list``, ``"tasks"`` for ``tasks.task.list``); None when ``result`` is
            the list itself (``crm.lead.list`` and the other legacy methods).
        id_param: the ID field's name in ``filter``, ``order`` and ``select``.
        id_key: the ID field's name in each row (``tasks.task.list`` filters on ``ID`` but
            prints ``id``).
        in_operator: the filter prefix that means "one of these IDs" (``get_by_ids``):
            ``""`` for legacy methods (``{"ID": [1, 2]}``), ``"@"`` for the ORM-style
            ``crm.item.list`` (``{"@id": [1, 2]}``).
    """

    items_key: str | None = None
    id_param: str = "ID"
    id_key: str = "ID"
    in_operator: str = ""


#: Methods whose answer is not the legacy shape (a list of rows with an ``ID``).
KNOWN_SHAPES: Final[Mapping[str, ListShape]] = {
    "crm.item.list": ListShape("items", "id", "id", "@"),
    "crm.type.list": ListShape("types", "id", "id", "@"),
    "crm.item.productrow.list": ListShape("productRows", "id", "id", "@"),
    "tasks.task.list": ListShape("tasks", "ID", "id", ""),
}

#: Methods that cannot take the cursor's ``order`` map (``user.get`` and ``user.search`` sort
#: by ``sort``/``order`` strings, ``department.get`` takes its filter fields flat): `list_all`
#: pages them with start/next unless told otherwise.
OFFSET_ONLY: Final = frozenset({"user.get", "user.search", "department.get"})

#: ``*.get`` methods whose records `get_by_ids` reads through a list method instead.
GET_TO_LIST: Final[Mapping[str, str]] = {
    **{f"crm.{e}.get": f"crm.{e}.list" for e in ("lead", "deal", "contact", "company", "quote")},
    "crm.item.get": "crm.item.list",
    "tasks.task.get": "tasks.task.list",
}

_BOUND = re.compile(r"(>=|<=|>|<)(.*)\Z", re.DOTALL)
_DIGITS = re.compile(r"[0-9]+")


def shape_of(method: str, shape: ListShape | None = None) -> ListShape:
    """The shape of `method`'s answer: `shape` if given, else the known table's, else legacy."""
    if shape is not None:
        if not isinstance(shape, ListShape):
            raise TypeError(f"shape must be a ListShape, not {type(shape).__name__}")
        return shape
    return KNOWN_SHAPES.get(method.lower(), ListShape())


# --- list_all ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Range:
    """IDs ``after < ID <= upto`` still to read (``None``: unbounded on that side)."""

    after: int | None
    upto: int | None
    density: float | None = None  # rows per unit of ID, as last observed
    fresh: bool = False  # cut from an estimate, nothing read from it yet
    first: int = MAX_BATCH  # the pages of its first request, while fresh


@dataclass(slots=True, eq=False)
class _Chain:
    """One range's pages inside one request: how many, and their keys once built."""

    range: _Range
    pages: int
    keys: list[str] = field(default_factory=list)


class ListExport:
    """The rows of one list method, read as fast as the portal allows.

    Iterate it (``async for row in export``) to get rows as they are read, a few thousand at a
    time in bounded memory; or ``await`` it for a list of all rows. Each iteration (or await)
    runs the export afresh.

    **With the ID cursor** (the default for methods that take ``filter``/``order``): rows come
    in ascending ID order within each ID range; ranges are walked concurrently, so iteration
    interleaves them, while ``await`` returns every row sorted by ID. The guarantee: every row
    that exists for the whole walk comes **exactly once**, whatever the gaps in the IDs, the
    page lengths, or the rows added and deleted meanwhile; a row added or deleted during the
    walk may come or not (one above the highest ID matching when the walk began does not),
    **never twice**. The caller's ``filter`` is kept (its ``>ID``,
    ``>=ID``, ``<ID`` and ``<=ID`` bounds are folded into the cursor); ``select`` gets the ID
    field added if it lacks it (the field then stays in the rows, as the server prints it
    anyway); an ``order`` other than ``{ID: "ASC"}`` is refused. About ``rows / 2,500``
    requests, plus a few at the ends of the ranges.

    **With start/next paging** (``by_id=False``, and by default for ``user.get``,
    ``user.search`` and ``department.get``): rows come in the server's order (the caller's
    ``order`` is kept), pages fetched 50 per request, concurrently. Offset paging is only as
    exact as the list is still: a row added or deleted during the walk shifts the pages, so
    another row may be skipped or come twice.

    A page that fails raises its `CommandError` (rows already yielded stay yielded).
    """

    def __init__(
        self,
        client: BitrixClient,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        by_id: bool | None = None,
        shape: ListShape | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if not isinstance(method, str) or not method:
            raise InvalidCommandError(None, None, f"method must be a non-empty str: {method!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, not {concurrency!r}")
        self._client = client
        self.method = method
        self.shape = shape_of(method, shape)
        self.by_id = method.lower() not in OFFSET_ONLY if by_id is None else bool(by_id)
        self._concurrency = concurrency
        self._names, rest = _control_keys(method, params)
        if "start" in self._names:
            raise InvalidCommandError(
                None, method, "list_all does the paging itself: leave 'start' out"
            )
        self._base = rest
        self._filter = _mapping_param(method, params, self._names.get("filter"), "filter")
        self._select = _select_param(method, params, self._names.get("select"))
        order = _mapping_param(method, params, self._names.get("order"), "order")
        self._lo: int | None = None  # the caller's own bounds: after < ID <= upto
        self._hi: int | None = None
        if self.by_id:
            self._check_order(order)
            self._fold_bounds()
            if self._select and not any(
                s == "*" or s.casefold() == self.shape.id_param.casefold() for s in self._select
            ):
                self._select = [*self._select, self.shape.id_param]
            self._order: dict[str, Any] = {self.shape.id_param: "ASC"}
        else:
            self._order = dict(order)
        self._check_plan()

    def __repr__(self) -> str:
        mode = "ID cursor" if self.by_id else "start/next"
        return f"<ListExport {self.method} ({mode})>"

    # --- checks, before anything is sent ----------------------------------------------------

    def _check_order(self, order: Mapping[str, Any]) -> None:
        id_param = self.shape.id_param.casefold()
        for key, direction in order.items():
            if str(key).casefold() == id_param and str(direction).strip().upper() == "ASC":
                continue
            raise InvalidCommandError(
                None,
                self.method,
                f"order {dict(order)!r}: the ID cursor reads in {self.shape.id_param} ascending"
                " order; leave 'order' out (await sorts by ID), or pass by_id=False to page"
                " in your order with start/next",
            )

    def _fold_bounds(self) -> None:
        """Move the caller's ID bounds out of the filter and into the cursor's own."""
        id_param = self.shape.id_param.casefold()
        kept: dict[Any, Any] = {}
        for key, value in self._filter.items():
            match = _BOUND.match(key) if isinstance(key, str) else None
            if match is None or match.group(2).casefold() != id_param:
                kept[key] = value
                continue
            bound = _as_id(value)
            if bound is None:
                raise InvalidCommandError(
                    None, self.method, f"filter {key!r}: {value!r} is not an integer ID"
                )
            op = match.group(1)
            if op in (">", ">="):
                after = bound if op == ">" else bound - 1
                self._lo = after if self._lo is None else max(self._lo, after)
            else:
                upto = bound if op == "<=" else bound - 1
                self._hi = upto if self._hi is None else min(self._hi, upto)
        self._filter = kept

    def _check_plan(self) -> None:
        """Let the engine check the commands (method name, parameters) without sending."""
        if self.by_id:
            first = self._page(None, None)
            second = self._page(self._last_id("p0"), None)
            plan = self._client.plan({"p0": (self.method, first), "p1": (self.method, second)})
            if len(plan.chunks) != 1:
                raise InvalidCommandError(
                    None,
                    self.method,
                    "is not known to only read, so its pages cannot be chained inside one"
                    " request; declare it with MethodPolicy.of(reads=[...])",
                )
        else:
            self._client.plan({"p0": (self.method, self._offset_page(0))})

    # --- commands --------------------------------------------------------------------------

    def _last_id(self, key: str) -> Ref:
        """``$result[key][49][ID]`` (under the items key, if any): the last ID of a full page."""
        ref = Ref(key)
        if self.shape.items_key is not None:
            ref = ref[self.shape.items_key]
        return ref[PAGE_SIZE - 1][self.shape.id_key]

    def _key(self, name: str) -> str:
        return self._names.get(name, name)

    def _page(self, after: int | Ref | None, upto: int | None) -> dict[str, Any]:
        """One cursor page: the caller's filter with ``after < ID <= upto``, no COUNT."""
        id_param = self.shape.id_param
        filt = dict(self._filter)
        if after is not None:
            filt[">" + id_param] = after
        if upto is not None:
            filt["<=" + id_param] = upto
        params = dict(self._base)
        params[self._key("filter")] = filt
        params[self._key("order")] = dict(self._order)
        if self._select:
            params[self._key("select")] = list(self._select)
        params["start"] = -1
        return params

    def _probe(self) -> dict[str, Any]:
        """The highest matching ID: the same filter, ID descending, the ID field only."""
        params = self._page(self._lo, self._hi)
        params[self._key("order")] = {self.shape.id_param: "DESC"}
        params[self._key("select")] = [self.shape.id_param]
        return params

    def _offset_page(self, start: int) -> dict[str, Any]:
        params = dict(self._base)
        if self._filter:
            params[self._key("filter")] = dict(self._filter)
        if self._order:
            params[self._key("order")] = dict(self._order)
        if self._select:
            params[self._key("select")] = list(self._select)
        params["start"] = start
        return params

    # --- reading answers -------------------------------------------------------------------

    def _rows(self, outcome: CommandResult) -> list[dict[str, Any]]:
        return _page_rows(self.method, self.shape, outcome)

    def _row_id(self, row: Mapping[str, Any]) -> int:
        return _row_id(self.method, self.shape, row)

    # --- the walk --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return _Walk(self._cursor_steps() if self.by_id else self._offset_steps())

    def __await__(self) -> Generator[Any, None, list[dict[str, Any]]]:
        return self._collect().__await__()

    async def _collect(self) -> list[dict[str, Any]]:
        rows = [row async for row in self]
        if self.by_id:
            key = self.shape.id_key
            rows.sort(key=lambda row: int(row[key]))  # every ID was checked while reading
        return rows

    def _cursor_steps(self) -> _Step:
        """The ID-cursor walk, one request round per call (None when it is over)."""
        ranges: list[_Range] | None = None  # None: not started
        top: int | None = None

        async def step() -> list[dict[str, Any]] | None:
            nonlocal ranges, top
            if ranges is None:
                rows, ranges, top = await self._first_round()
                return rows
            if not ranges:
                return None
            self._split(ranges, top)
            bins = _pack([self._allot(r, top) for r in ranges])
            results = await self._send(bins)
            read: dict[int, list[dict[str, Any]]] = {}
            finished: set[int] = set()
            for chains, bin_result in zip(bins, results, strict=True):
                for chain in chains:
                    rows, ended = self._read_chain(bin_result, chain)
                    chain.range.fresh = False
                    read[id(chain.range)] = rows
                    if ended:
                        finished.add(id(chain.range))
            # Ranges are kept in ID order: their rows go out in that order.
            out = [row for r in ranges for row in read[id(r)]]
            ranges = [r for r in ranges if id(r) not in finished and not _empty(r)]
            return out

        return step

    async def _first_round(self) -> tuple[list[dict[str, Any]], list[_Range], int | None]:
        """The first request: the rows, the ranges left, and the walk's top ID."""
        if self._lo is not None and self._hi is not None and self._lo >= self._hi:
            return [], [], None  # the caller's own bounds leave nothing to read
        # One chain of 49 pages from the bottom, then the highest matching ID. A row that
        # exists for the whole walk exists when that probe runs, so its ID is at most that:
        # the walk is bounded there (rows added later may come or not), and with the rows
        # read, it gives the density used to cut the rest into ranges.
        bottom = _Range(self._lo, self._hi)
        chain = _Chain(bottom, MAX_BATCH - 1)
        commands = self._chain_commands(chain, "a")
        commands["top"] = (self.method, self._probe())
        result = await self._client.batch(commands)
        rows, ended = self._read_chain(result, chain)
        top = self._top(result["top"], bottom)
        if top is not None:
            bottom.upto = top if bottom.upto is None else min(bottom.upto, top)
        done = ended or top is None or _empty(bottom)
        return rows, [] if done else [bottom], top

    def _top(self, outcome: CommandResult, bottom: _Range) -> int | None:
        """The highest ID the probe saw, checked (None: nothing matched when it ran)."""
        ids = [self._row_id(row) for row in self._rows(outcome)]
        if any(later >= earlier for earlier, later in itertools.pairwise(ids)):
            raise InvalidResponseError(
                200,
                f"rows are not in descending {self.shape.id_param} order for order DESC: the"
                " method does not honour the ID cursor; pass by_id=False",
                method=self.method,
            )
        if not ids:
            return None
        # A row read before the probe ran may be gone by then: the walk has read it already.
        return max(ids[0], bottom.after) if bottom.after is not None else ids[0]

    def _chain_commands(self, chain: _Chain, prefix: str) -> dict[str, Any]:
        """The chain's pages: the first from the range's cursor, each next from the last ID
        of the one before (a same-request reference the server resolves)."""
        r = chain.range
        commands: dict[str, Any] = {}
        previous: str | None = None
        for n in range(chain.pages):
            key = f"{prefix}{n}"
            after: int | Ref | None = r.after
            if previous is not None:
                after = self._last_id(previous)
            commands[key] = (self.method, self._page(after, r.upto))
            chain.keys.append(key)
            previous = key
        return commands

    def _read_chain(self, result: BatchResult, chain: _Chain) -> tuple[list[dict[str, Any]], bool]:
        """A chain's rows, checked; moves its range's cursor. True when the range is done."""
        r = chain.range
        start = r.after
        last = r.after
        rows: list[dict[str, Any]] = []
        ended = False
        for key in chain.keys:
            page = self._rows(result[key])
            for row in page:
                ident = self._row_id(row)
                # The cursor's promise rests on the server honouring the filter and the
                # order: check it, so that a method that ignores them fails loudly instead of
                # repeating rows.
                if (last is not None and ident <= last) or (r.upto is not None and ident > r.upto):
                    raise InvalidResponseError(
                        200,
                        f"row {ident} is out of ID order or outside the filter (after"
                        f" {last}, up to {r.upto}): the method does not honour the ID cursor;"
                        " pass by_id=False",
                        method=self.method,
                    )
                last = ident
            rows.extend(page)
            if len(page) < PAGE_SIZE:
                ended = True
                break
        if rows and last is not None:
            first = start if start is not None else self._row_id(rows[0]) - 1
            if last > first:
                r.density = len(rows) / (last - first)
            r.after = last
        return rows, ended

    def _allot(self, r: _Range, top: int | None) -> _Chain:
        """The chain a range gets this round: as many pages as it likely needs, up to 50."""
        pages = MAX_BATCH
        left = _estimate(r, top)
        if left is not None:
            need = math.ceil(left / PAGE_SIZE)
            pages = min(MAX_BATCH, need + 1 + need // 8)  # a margin: estimates are rough
        if r.fresh:
            pages = min(pages, r.first)
        return _Chain(r, pages)

    def _split(self, ranges: list[_Range], top: int | None) -> None:
        """Cut the biggest ranges into parts until `concurrency` ranges run (or none is big).

        Parts are sized from the range's density to fill whole requests (after the short
        first request of a fresh part), less a little: an estimate that is a little high
        then ends a part with a short page inside its last request, at no cost, and one that
        is a little low leaves a few pages, which share a request with other parts' tails.
        The top part takes the remainder.
        """
        batch_rows = MAX_BATCH * PAGE_SIZE
        while len(ranges) < self._concurrency:
            sized = [(left, r) for r in ranges if (left := _estimate(r, top)) is not None]
            if not sized:
                return
            left, biggest = max(sized, key=lambda pair: pair[0])
            end = _end(biggest, top)
            density, after = biggest.density, biggest.after
            if left < 2 * batch_rows or end is None or density is None or after is None:
                return
            parts = min(self._concurrency - len(ranges) + 1, math.floor(left / batch_rows))
            fresh = parts - 1 + int(biggest.fresh)  # parts whose first request is short
            first = max(2, min(_FRESH_PAGES, MAX_BATCH // fresh))
            whole = math.floor((left - fresh * first * PAGE_SIZE) / batch_rows)
            parts = min(parts, whole)
            if parts < 2:
                return
            cuts: list[int] = []
            rows = 0.0
            for n in range(parts - 1):
                requests = whole // parts + (n < whole % parts)
                rows += requests * batch_rows - _SLACK_PAGES * PAGE_SIZE
                if n > 0 or biggest.fresh:
                    rows += first * PAGE_SIZE
                cut = after + math.floor(rows / density)
                if cut >= end or (cuts and cut <= cuts[-1]):
                    break
                cuts.append(cut)
            if not cuts:
                return
            made = [
                _Range(low, high, density, fresh=True, first=first)
                for low, high in zip(cuts, [*cuts[1:], biggest.upto], strict=True)
            ]
            if biggest.fresh:
                biggest.first = first
            biggest.upto = cuts[0]
            at = ranges.index(biggest) + 1
            ranges[at:at] = made

    async def _send(self, bins: list[list[_Chain]]) -> list[BatchResult]:
        """One `batch` call per bin, all at once; each is one request."""
        results: list[BatchResult | None] = [None] * len(bins)
        failure: list[BaseException] = []

        async def run(i: int, commands: dict[str, Any]) -> None:
            try:
                results[i] = await self._client.batch(commands)
            except Exception as exc:  # raised below as itself, not as an exception group
                failure.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for i, chains in enumerate(bins):
                commands: dict[str, Any] = {}
                for c, chain in enumerate(chains):
                    commands.update(self._chain_commands(chain, f"c{c}p"))
                tg.start_soon(run, i, commands)
        if failure:
            raise failure[0]
        return [r for r in results if r is not None]

    # --- start/next ------------------------------------------------------------------------

    def _offset_steps(self) -> _Step:
        """The start/next walk: the first page, then windows of pages (None when over)."""
        started = False
        start: int | None = None
        total: int | None = None
        size: int | None = None  # the server's step between offsets (its page size)

        async def step() -> list[dict[str, Any]] | None:
            nonlocal started, start, total, size
            if not started:
                started = True
                first = await self._client.request(self.method, self._offset_page(0))
                start = size = first.next
                total = first.total
                return self._rows(CommandResult("p0", self.method, Status.OK, first.result))
            if start is None or size is None or size <= 0:
                return None
            count = 1
            if total is not None and start < total:
                count = min(MAX_BATCH * self._concurrency, math.ceil((total - start) / size))
            offsets = [start + n * size for n in range(count)]
            result = await self._client.batch(
                {f"s{o}": (self.method, self._offset_page(o)) for o in offsets}
            )
            rows = [row for o in offsets for row in self._rows(result[f"s{o}"])]
            last = result[f"s{offsets[-1]}"]
            if last.total is not None:
                total = last.total
            # `next` of the last page read goes on (rows added meanwhile); none: the end.
            start = last.next if last.next is not None and last.next > offsets[-1] else None
            return rows

        return step


#: One step of a walk: the next rows, or None when it is over.
_Step = Callable[[], Awaitable["list[dict[str, Any]] | None"]]


class _Walk(AsyncIterator[dict[str, Any]]):
    """One run of an export as a plain async iterator, not a generator: a loop left early
    leaves nothing suspended to finalise, and each step's requests finish inside it."""

    def __init__(self, step: _Step) -> None:
        self._step: _Step | None = step
        self._buffer: deque[dict[str, Any]] = deque()

    async def __anext__(self) -> dict[str, Any]:
        while not self._buffer:
            if self._step is None:
                raise StopAsyncIteration
            step = self._step
            self._step = None  # a step that raises ends the walk
            rows = await step()
            if rows is not None:
                self._buffer.extend(rows)
                self._step = step
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """End the walk (for ``contextlib.aclosing``; leaving the loop does as much)."""
        self._step = None
        self._buffer.clear()


def _estimate(r: _Range, top: int | None) -> float | None:
    """Rows likely left in a range, from its density; None when nothing says."""
    end = _end(r, top)
    if end is None or r.after is None or r.density is None:
        return None
    return max(0, end - r.after) * r.density


def _end(r: _Range, top: int | None) -> int | None:
    if r.upto is None:
        return top
    return r.upto if top is None else min(r.upto, top)


def _empty(r: _Range) -> bool:
    return r.after is not None and r.upto is not None and r.after >= r.upto


def _pack(chains: list[_Chain]) -> list[list[_Chain]]:
    """Put chains into requests of at most 50 pages: biggest first, each in the first request
    with room (so the short chains of ranges near their end share one)."""
    bins: list[list[_Chain]] = []
    room: list[int] = []
    for chain in sorted(chains, key=lambda c: -c.pages):
        for i, free in enumerate(room):
            if free >= chain.pages:
                bins[i].append(chain)
                room[i] -= chain.pages
                break
        else:
            bins.append([chain])
            room.append(MAX_BATCH - chain.pages)
    return bins


# --- get_by_ids ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoundRows:
    """What `get_by_ids` found: rows in the order the IDs were asked for, and what is missing.

    `rows` holds one row per distinct ID found, in the order of the IDs given (a repeated ID
    counts once, at its first place); `missing` the IDs no row came back for (not there, or
    not visible to the caller, or excluded by the extra filter), in the same order; `by_id`
    maps each found ID to its row.
    """

    rows: list[dict[str, Any]]
    missing: list[int]
    by_id: dict[int, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)


async def get_by_ids(
    client: BitrixClient,
    method: str,
    ids: Iterable[int | str],
    params: Mapping[str, Any] | None = None,
    *,
    shape: ListShape | None = None,
) -> FoundRows:
    """Read many records by ID: 50 IDs per list command, 50 commands per request.

    `method` is a list method (``crm.lead.list``, ``crm.item.list``, ``tasks.task.list``),
    or a ``*.get`` whose list method is known (``crm.lead.get`` reads through
    ``crm.lead.list``). `params` may add ``select``, an extra ``filter`` and what the method
    needs (``entityTypeId``). Raises the batch's `CommandErrors` if a command failed.

    Raises:
        InvalidCommandError: bad input (an ID that is not a positive integer, a ``start``, or
            a filter on the ID field), before any request.
    """
    lookup = _Lookup(client, method, ids, params, shape)
    return await lookup.run()


class _Lookup:
    """The checked input of one `get_by_ids` call, and its commands."""

    def __init__(
        self,
        client: BitrixClient,
        method: str,
        ids: Iterable[int | str],
        params: Mapping[str, Any] | None,
        shape: ListShape | None,
    ) -> None:
        if not isinstance(method, str) or not method:
            raise InvalidCommandError(None, None, f"method must be a non-empty str: {method!r}")
        self.client = client
        self.method = GET_TO_LIST.get(method.lower(), method)
        self.shape = shape_of(self.method, shape)
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise InvalidCommandError(None, self.method, "ids must be an iterable of integer IDs")
        wanted: dict[int, None] = {}
        for value in ids:
            ident = _as_id(value)
            if ident is None or ident <= 0:
                raise InvalidCommandError(
                    None, self.method, f"{value!r} is not a positive integer ID"
                )
            wanted.setdefault(ident)
        self.ids = list(wanted)
        names, self.base = _control_keys(self.method, params)
        if "start" in names:
            raise InvalidCommandError(
                None, self.method, "get_by_ids reads one page per ID chunk: leave 'start' out"
            )
        self.names = names
        self.filter = _mapping_param(self.method, params, names.get("filter"), "filter")
        id_param = self.shape.id_param.casefold()
        for key in self.filter:
            if isinstance(key, str) and key.lstrip("=@!<>%?").casefold() == id_param:
                raise InvalidCommandError(
                    None,
                    self.method,
                    f"filter {key!r}: get_by_ids filters on {self.shape.id_param} itself",
                )
        self.select = _select_param(self.method, params, names.get("select"))
        if self.select and not any(s == "*" or s.casefold() == id_param for s in self.select):
            self.select = [*self.select, self.shape.id_param]
        self.client.plan({"i0": (self.method, self.command(self.ids[:1] or [1]))})

    def command(self, chunk: Sequence[int]) -> dict[str, Any]:
        params = dict(self.base)
        params[self.names.get("filter", "filter")] = {
            **self.filter,
            self.shape.in_operator + self.shape.id_param: list(chunk),
        }
        if self.select:
            params[self.names.get("select", "select")] = list(self.select)
        params["start"] = -1  # one page of at most 50: no COUNT needed
        return params

    async def run(self) -> FoundRows:
        commands = {
            f"i{n}": (self.method, self.command(self.ids[at : at + PAGE_SIZE]))
            for n, at in enumerate(range(0, len(self.ids), PAGE_SIZE))
        }
        found: dict[int, dict[str, Any]] = {}
        if commands:
            result = (await self.client.batch(commands)).raise_for_errors()
            for key in commands:
                for row in _page_rows(self.method, self.shape, result[key]):
                    found.setdefault(_row_id(self.method, self.shape, row), row)
        rows = {i: found[i] for i in self.ids if i in found}
        return FoundRows(list(rows.values()), [i for i in self.ids if i not in found], rows)


# --- answers -------------------------------------------------------------------------------


def _page_rows(method: str, shape: ListShape, outcome: CommandResult) -> list[dict[str, Any]]:
    """The rows of one page, or the error that stopped it raised."""
    if outcome.status is not Status.OK:
        raise _not_ok(outcome)
    value = outcome.result
    if shape.items_key is not None:
        if not isinstance(value, dict) or shape.items_key not in value:
            raise InvalidResponseError(
                200,
                f"the result has no {shape.items_key!r} list; pass a ListShape that says"
                " where the rows are",
                method=method,
            )
        value = value[shape.items_key]
    if isinstance(value, dict) and not value:
        value = []  # an empty PHP array is [], but a JSON {} means no rows as well
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise InvalidResponseError(
            200,
            "the result is not a list of rows; pass a ListShape that says where they are",
            method=method,
        )
    return value


def _row_id(method: str, shape: ListShape, row: Mapping[str, Any]) -> int:
    """A row's ID, as an int (legacy methods print it as a string)."""
    ident = _as_id(row.get(shape.id_key))
    if ident is None:
        raise InvalidResponseError(
            200,
            f"a row has no integer {shape.id_key!r}; pass a ListShape naming the ID field,"
            " or by_id=False",
            method=method,
        )
    return ident


# --- parameters ----------------------------------------------------------------------------


def _control_keys(
    method: str, params: Mapping[str, Any] | None
) -> tuple[dict[str, str], dict[str, Any]]:
    """The caller's spelling of filter/order/select/start (any case), and the other params."""
    if params is None:
        return {}, {}
    if not isinstance(params, Mapping):
        raise InvalidCommandError(
            None, method, f"the parameters must be a mapping, not {type(params).__name__}"
        )
    names: dict[str, str] = {}
    rest: dict[str, Any] = {}
    for key, value in params.items():
        lowered = key.lower() if isinstance(key, str) else None
        if lowered in ("filter", "order", "select", "start"):
            if lowered in names:
                raise InvalidCommandError(
                    None, method, f"params have both {names[lowered]!r} and {key!r}"
                )
            names[lowered] = key
        else:
            rest[key] = value
    return names, rest


def _mapping_param(
    method: str, params: Mapping[str, Any] | None, key: str | None, what: str
) -> dict[Any, Any]:
    if params is None or key is None or params[key] in (None, [], {}):
        return {}
    value = params[key]
    if not isinstance(value, Mapping):
        raise InvalidCommandError(
            None, method, f"{what} must be a mapping, not {type(value).__name__}"
        )
    return dict(value)


def _select_param(method: str, params: Mapping[str, Any] | None, key: str | None) -> list[str]:
    if params is None or key is None or params[key] in (None, [], ()):
        return []
    value = params[key]
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidCommandError(None, method, "select must be a list of field names")
    if not all(isinstance(name, str) for name in value):
        raise InvalidCommandError(None, method, "select must be a list of field names")
    return list(value)


def _as_id(value: Any) -> int | None:
    """An integer ID from an int or a decimal string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    return None


def _not_ok(outcome: CommandResult) -> BaseException:
    """The error to raise for a page that did not come back."""
    if outcome.error is not None:
        return outcome.error
    if outcome.uncertain is not None:
        return outcome.uncertain
    skip = outcome.skip
    if skip is not None and isinstance(skip.cause, BaseException):
        return skip.cause
    return BitrixBatchError(str(skip) if skip is not None else f"page {outcome.key!r} not read")
