"""The command model: what a caller may pass as a command, and its checked internal form.

This module performs no I/O. It accepts every shape Bitrix24 users already write:

- the seed's string ``"department.get?ID=$result[get_user][UF_DEPARTMENT][0]"``;
- ``(method, params)`` or ``[method, params]`` (BX24.callBatch's array form);
- ``{"method": ..., "params": ...}`` (BX24.callBatch / CRest);
- a `Command`.

Each becomes an `Entry`: key, method, its encoded command (or, for a whole list, the caller's
parameters, encoded when sent), and the places in the parameters that hold references
(`Site`). Bad input raises a `PlanError` subclass naming the key and the method.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._encoding import (
    MAX_SUPPORTED_NESTING,
    InputLimitError,
    append_pairs,
    parse_str,
    php_strval,
    urlencode,
)
from ._errors import (
    DuplicateKeyError,
    InvalidCommandError,
    InvalidReferenceError,
    InvalidStreamItemError,
    PlanError,
    UnknownReferenceError,
)
from ._refs import (
    MISSING,
    Literal,
    Ref,
    Token,
    find_tokens,
    reads_as_token,
    resolve_path,
    segment_is_safe,
    splice_text,
)
from ._types import Key

__all__ = [
    "Command",
    "CommandInput",
    "CommandList",
    "CommandReader",
    "Entry",
    "Hole",
    "InvalidInputError",
    "ServerLimits",
    "Site",
    "parse_call",
    "parse_commands",
    "render_command",
    "render_direct",
]

#: Methods the server refuses inside a batch (rest 24.0.0 forbids nested `batch`).
FORBIDDEN_METHODS = frozenset({"batch", "download", "upload"})

_METHOD = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
# Text PHP's urlencode leaves as it is (most keys): no call needed.
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]*")

#: php.ini max_input_nesting_level: the server's parse_str drops a parameter whose name has
#: more bracket groups than this, so deeper parameters are refused before sending.
MAX_NESTING = 64
#: php.ini max_input_vars: the server's parse_str reads this many ``name=value`` pieces of a
#: command and silently drops the rest.
MAX_INPUT_VARS = 1000


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The portal's PHP input limits, which the client checks before sending anything.

    PHP silently drops input past them, so a command that would cross one is refused at plan
    time (`InvalidCommandError`). The defaults are php.ini's, which the cloud is assumed to
    use; a self-hosted portal configured otherwise passes its own values.

    Args:
        max_nesting: ``max_input_nesting_level``: the most bracket groups in one parameter
            name (``fields[PHONE][0][VALUE]`` has 3). At most `MAX_SUPPORTED_NESTING` (256).
        max_input_vars: ``max_input_vars``: the most ``name=value`` pieces (leaf values) in
            one batch command, or in the form body of a direct call; None: no check.
    """

    max_nesting: int = MAX_NESTING
    max_input_vars: int | None = MAX_INPUT_VARS

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_nesting, bool)
            or not isinstance(self.max_nesting, int)
            or not 1 <= self.max_nesting <= MAX_SUPPORTED_NESTING
        ):
            raise ValueError(f"max_nesting must be an int from 1 to {MAX_SUPPORTED_NESTING}")
        if self.max_input_vars is not None and (
            isinstance(self.max_input_vars, bool)
            or not isinstance(self.max_input_vars, int)
            or self.max_input_vars < 1
        ):
            raise ValueError("max_input_vars must be an int of at least 1, or None")


#: PHP's defaults.
DEFAULT_LIMITS = ServerLimits()


class InvalidInputError(InvalidCommandError):
    """An `InvalidCommandError` about the input as a whole (no command key or method to
    name): its message is the reason alone, not ``command: ...``."""

    def __init__(self, reason: str, key: Key | None = None) -> None:
        super().__init__(key, None, reason)
        self.args = (reason,)


@dataclass(frozen=True, slots=True)
class Command:
    """One REST call to run inside a batch.

    Args:
        method: the REST method, e.g. ``"crm.lead.add"``.
        params: its parameters; values may hold `Ref` objects or `$result[...]` strings.
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, limits: ServerLimits | None = None) -> Command:
        """Parse the seed's string form ``"method?query"`` with PHP's `parse_str` rules.

        Raises:
            InvalidCommandError: a malformed string, or one the server would cut (`limits`).
        """
        method, params = _split_command_string(None, text, limits or DEFAULT_LIMITS)
        return cls(method, params)


#: Anything `BitrixClient.batch` accepts as one command.
CommandInput = str | Command | Sequence[Any] | Mapping[str, Any]

#: A command list: keys to commands, or a sequence (keys are then 0..n-1).
CommandList = (
    Mapping[str, CommandInput]
    | Mapping[int, CommandInput]
    | Mapping[Key, CommandInput]
    | Sequence[CommandInput]
)


@dataclass(frozen=True, slots=True)
class Site:
    """A parameter value that holds references.

    `location` is the path of keys to it inside the parameters; `parts` is the value cut into
    literal text and tokens. A value that is exactly one token is a *whole* reference and takes
    the referenced value with its type.
    """

    location: tuple[str | int, ...]
    parts: tuple[str | Token, ...]
    #: The tokens in this value, in order (derived from `parts` once).
    tokens: tuple[Token, ...] = field(init=False, compare=False)
    #: True when the references were written as text (``"$result[a]"``), not as `Ref`.
    text: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(p for p in self.parts if isinstance(p, Token)))

    @property
    def whole(self) -> bool:
        """True when the value is exactly one token."""
        return len(self.parts) == 1 and isinstance(self.parts[0], Token)


@dataclass(frozen=True, slots=True)
class Hole:
    """The place in a command string where a value holding references goes.

    `name` is the parameter's encoded name (``fields%5BTITLE%5D``), ready to be followed by
    the encoded value once the references in `site` are resolved.
    """

    name: str
    site: Site


#: Shared by every entry without references (millions of them: no per-command container).
_NO_TARGETS: Mapping[str, int] = MappingProxyType({})


@dataclass(slots=True)
class Entry:
    """One checked command as the planner sees it (strictly private).

    A command read from a stream is encoded when it is read, so nothing of the caller's
    objects is kept (a generator may reuse them): `command` is the finished command string of
    a command without references; one with references keeps `template`, literal
    ``name=value`` text and the `Hole`s its references fill when it is sent. A command of a
    whole list is only checked when it is planned and encoded when its request is built, from
    the caller's parameters (`source`), which the caller holds anyway: planning a million
    commands then costs a fraction of encoding them, and the encoding overlaps the sending.
    """

    index: int
    key: Key
    method: str
    command: str | None
    template: tuple[str | Hole, ...] | None
    source: Mapping[Any, Any] | None
    #: The parameter values that hold references.
    sites: tuple[Site, ...]
    #: The referenced command keys (as the server compares them) and their indexes.
    targets: Mapping[str, int]
    #: Indexes of the commands this one refers to, in order of first reference.
    deps: tuple[int, ...]
    read: bool
    #: The command holds `Literal` text the server would read as a token inside a batch: it
    #: must be sent on its own, as a direct call (`render_direct`), never inside a batch.
    direct: bool = False
    #: The input limits it was checked against (and its references are filled within).
    limits: ServerLimits = DEFAULT_LIMITS

    @property
    def skey(self) -> str:
        """The key as the server compares it."""
        return str(self.key)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as the server will read them (references still as token text)."""
        command = _render(self, _token_text)
        query = command.partition("?")[2]
        return parse_str(query, max_nesting=self.limits.max_nesting) if query else {}


def parse_commands(
    cmd: CommandList,
    reads_only: Callable[[str], bool],
    *,
    limits: ServerLimits | None = None,
) -> list[Entry]:
    """Check and normalise a caller's whole command list; resolve reference targets to indexes.

    References may point forwards here (the planner orders the commands).

    Raises:
        InvalidCommandError, DuplicateKeyError, UnknownReferenceError, InvalidReferenceError.
    """
    items: Iterable[tuple[Any, Any]]
    if isinstance(cmd, Mapping):
        items = cmd.items()
    elif isinstance(cmd, str | bytes) or not isinstance(cmd, Sequence):
        raise InvalidInputError(
            f"the command list must be a mapping, a sequence or an iterable of (key, command)"
            f" pairs, not {type(cmd).__name__}",
        )
    else:
        items = enumerate(cmd)

    index_of: dict[str, int] = {}
    entries: list[Entry] = []
    reads_only = _memo(reads_only)
    limits = limits or DEFAULT_LIMITS
    for key, item in items:
        skey = _check_key(key)
        if skey in index_of:
            raise DuplicateKeyError(key)
        index_of[skey] = len(entries)
        entries.append(_entry(len(entries), key, item, reads_only, encode=False, limits=limits))
    for e in entries:
        if e.sites:
            _bind(e, index_of.get)
    return entries


class CommandReader:
    """Checks the commands of a stream one at a time, as they are read (lazy mode).

    A reference may only point to one of the last `lookback` commands read before it (all of
    them with ``lookback=None``): the reader forgets older keys, so memory stays bounded. A
    repeated key is detected among the keys it still knows.
    """

    def __init__(
        self,
        reads_only: Callable[[str], bool],
        lookback: int | None,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        if lookback is not None and lookback < 0:
            raise ValueError("lookback must be at least 0, or None")
        self._reads_only = _memo(reads_only)
        self._limits = limits or DEFAULT_LIMITS
        self._lookback = lookback
        self._index_of: dict[str, int] = {}
        self._recent: deque[tuple[str, int]] = deque()
        #: How many items have been read: the index the next command gets.
        self.count = 0

    def read(self, key: Any, item: Any) -> Entry:
        """Check the next command of the stream and give it the next index.

        Raises:
            PlanError: the command is invalid (the index is used up all the same).
        """
        index = self.count
        self.count += 1
        skey = _check_key(key)
        if skey in self._index_of:
            raise DuplicateKeyError(key)
        # The key is taken even if the command proves invalid: a later reference to it then
        # finds a skipped command (and is skipped in turn), not an unknown key.
        self._remember(skey, index)
        entry = _entry(index, key, item, self._reads_only, encode=True, limits=self._limits)
        if entry.sites:
            _bind(entry, self._index_of.get, lazy=True)
        return entry

    def read_item(self, item: Any) -> Entry:
        """Check the next item of a stream, which must be a ``(key, command)`` pair.

        Raises:
            PlanError: the item or its command is invalid (the index is used up all the same).
        """
        if (type(item) is not tuple and type(item) is not list) or len(item) != 2:
            self.count += 1
            raise InvalidStreamItemError(
                self.count - 1,
                f"it must be a (key, command) pair, not {type(item).__name__}"
                " (use enumerate() for commands without keys)",
            )
        key = item[0]
        if isinstance(key, bool) or not isinstance(key, str | int):
            self.count += 1
            raise InvalidStreamItemError(
                self.count - 1, f"command keys are str or int, not {type(key).__name__}"
            )
        return self.read(key, item[1])

    def _remember(self, skey: str, index: int) -> None:
        self._index_of[skey] = index
        if self._lookback is None:
            return
        self._recent.append((skey, index))
        # The command itself and the `lookback` commands before it.
        while len(self._recent) > self._lookback + 1:
            old, old_index = self._recent.popleft()
            if self._index_of.get(old) == old_index:
                del self._index_of[old]


def _memo(reads_only: Callable[[str], bool]) -> Callable[[str], bool]:
    """`reads_only` asked once per method name (a job has millions of commands, few methods)."""
    known: dict[str, bool] = {}

    def cached(method: str) -> bool:
        read = known.get(method)
        if read is None:
            read = known[method] = reads_only(method)
        return read

    return cached


def _check_key(key: Any) -> str:
    if type(key) is str:
        if key == "":
            raise InvalidCommandError(key, None, "the empty string is not a command key")
        return key
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise InvalidInputError(
            f"command key {_short(key)} is a {type(key).__name__}: command keys are str or int"
        )
    return str(key)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _entry(
    index: int,
    key: Key,
    item: Any,
    reads_only: Callable[[str], bool],
    *,
    encode: bool,
    limits: ServerLimits = DEFAULT_LIMITS,
) -> Entry:
    """Check one command; with `encode`, also encode it now (else when it is sent)."""
    method, params = _normalize(key, item, limits)
    read = reads_only(method)
    template, ctx = _compile_checked(key, method, params, True, encode, limits)
    sites = tuple(p.site for p in template if type(p) is Hole)
    direct = ctx.direct
    if not encode:
        entry = Entry(index, key, method, None, None, params, sites, _NO_TARGETS, (), read)
    elif not sites:
        command = f"{method}?{template[0]}" if template else method
        entry = Entry(index, key, method, command, None, None, (), _NO_TARGETS, (), read)
    else:
        entry = Entry(
            index, key, method, None, tuple(template), None, sites, _NO_TARGETS, (), read
        )
    if direct:
        entry.direct = True
    if limits is not DEFAULT_LIMITS:
        entry.limits = limits
    return entry


def _compile_checked(
    key: Key | None,
    method: str,
    params: Mapping[Any, Any],
    refs: bool,
    encode: bool,
    limits: ServerLimits,
) -> tuple[list[str | Hole], _Context]:
    """`_compile`, with Python's own recursion limit turned into a `PlanError` (a caller's
    object whose keys or values are containers of unusual kinds may still recurse deeply)."""
    ctx = _Context(key, method, refs, encode, limits, params)
    try:
        return _compile(key, method, params, refs=refs, encode=encode, ctx=ctx), ctx
    except RecursionError:
        raise InvalidCommandError(
            key,
            method,
            "its parameters are nested too deeply to check (or contain themselves)",
        ) from None


def _bind(entry: Entry, lookup: Callable[[str], int | None], lazy: bool = False) -> None:
    """Resolve the keys `entry` refers to into command indexes."""
    targets: dict[str, int] = {}
    for site in entry.sites:
        for token in site.tokens:
            if token.target in targets:
                continue
            target = lookup(token.target)
            if target is None or (lazy and target >= entry.index):
                detail = (
                    " (in a stream a command may only refer to one read before it, within"
                    " the look-back)"
                    if lazy
                    else ""
                )
                if site.text and not site.whole:  # a token inside text: maybe just text
                    detail += (
                        f" in the text at {_where(site.location)}; if that text is not meant"
                        " as a reference, send it as Literal(...)"
                    )
                raise UnknownReferenceError(entry.key, entry.method, token.target, detail)
            targets[token.target] = target
    entry.targets = targets
    entry.deps = tuple(targets.values())


def parse_call(
    method: str,
    params: Mapping[str, Any] | None,
    *,
    limits: ServerLimits | None = None,
    form: bool = False,
) -> dict[str, Any]:
    """Check one direct (non-batch) call. Text is never substituted outside a batch, so only
    `Ref` objects are refused (a `Literal` is sent as its text).

    The nesting limit always applies; `max_input_vars` only with `form` (a form-encoded
    body, which PHP parses with that limit; a JSON body has none).

    Raises:
        InvalidCommandError: a bad method name, parameters or a `Ref`.
    """
    if not isinstance(method, str):
        raise InvalidInputError(f"the method must be a string, not {type(method).__name__}")
    _check_method(None, method, forbid=frozenset())
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidCommandError(
            None, method, f"the parameters must be a mapping, not {type(params).__name__}"
        )
    limits = limits or DEFAULT_LIMITS
    if not form and limits.max_input_vars is not None:
        limits = ServerLimits(limits.max_nesting, None)
    template, _ = _compile_checked(None, method, params, False, True, limits)
    if any(type(p) is Hole for p in template):
        raise InvalidCommandError(None, method, "references (Ref) only work inside a batch")
    plain: dict[str, Any] = _as_plain(params)
    return plain


def _as_plain(value: Any) -> Any:
    """A checked value as plain dicts, lists and base scalars (what JSON encoding needs)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is Literal:
        return value.text
    if isinstance(value, Mapping):
        return {k: _as_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dt.date):
        return iso_date(value)
    return float(value)


def iso_date(value: dt.date) -> str:
    """A date as ``2026-12-02``, a datetime as ``2026-12-02T14:05:10+03:00`` (ISO 8601, to the
    second; a naive datetime has no offset, and the portal reads it in its own time zone)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return value.isoformat()


def _normalize(
    key: Key, item: Any, limits: ServerLimits = DEFAULT_LIMITS
) -> tuple[str, Mapping[Any, Any]]:
    method: Any
    params: Any
    if (
        type(item) is tuple
        and len(item) == 2
        and type(item[1]) is dict
        and type(item[0]) is str
        and _METHOD.fullmatch(item[0]) is not None
        and item[0].lower() not in FORBIDDEN_METHODS
    ):
        return item  # the common shape, already checked
    if type(item) is tuple or type(item) is list:
        if not 1 <= len(item) <= 2:
            raise InvalidCommandError(key, None, "a command sequence is (method, params)")
        method = item[0]
        params = item[1] if len(item) == 2 else None
    elif isinstance(item, str):
        method, params = _split_command_string(key, item, limits)
    elif isinstance(item, Command):
        method, params = item.method, item.params
    elif isinstance(item, Mapping):
        if "method" not in item:
            raise InvalidCommandError(key, None, "a command mapping needs a 'method'")
        extra = set(item) - {"method", "params"}
        if extra:
            raise InvalidCommandError(
                key, str(item["method"]), f"unexpected fields {sorted(map(str, extra))}"
            )
        method, params = item["method"], item.get("params")
    elif isinstance(item, Sequence) and not isinstance(item, bytes) and 1 <= len(item) <= 2:
        method = item[0]
        params = item[1] if len(item) == 2 else None
    else:
        raise InvalidCommandError(
            key, None, f"cannot read a command from {type(item).__name__}"
        )
    if not isinstance(method, str):
        raise InvalidCommandError(
            key, None, f"the method must be a string, not {type(method).__name__}"
        )
    _check_method(key, method)
    if params is None:
        return method, {}
    if not isinstance(params, Mapping):
        raise InvalidCommandError(
            key, method, f"the parameters must be a mapping, not {type(params).__name__}"
        )
    return method, params


def _split_command_string(
    key: Key | None, text: str, limits: ServerLimits = DEFAULT_LIMITS
) -> tuple[str, dict[str, Any]]:
    if "#" in text:
        # parse_url() on the server treats '#' as a fragment and drops the rest.
        raise InvalidCommandError(
            key, text.split("?", 1)[0], "'#' would cut the command on the server; encode it as %23"
        )
    method, _, query = text.partition("?")
    _check_method(key, method)
    if not query:
        return method, {}
    try:
        return method, parse_str(
            query,
            max_input_vars=limits.max_input_vars,
            max_nesting=limits.max_nesting,
            strict=True,
        )
    except InputLimitError as exc:
        where = (
            "the command string has"
            if exc.setting == "max_input_vars"
            else "in the command string,"
        )
        raise InvalidCommandError(key, method, f"{where} {exc}") from None


def _check_method(
    key: Key | None, method: str, forbid: frozenset[str] = FORBIDDEN_METHODS
) -> None:
    if _METHOD.fullmatch(method) is None:
        raise InvalidCommandError(key, method, f"{method!r} is not a REST method name")
    if method.lower() in forbid:
        raise InvalidCommandError(key, method, f"{method!r} is not allowed inside a batch")


def _compile(
    key: Key | None,
    method: str,
    params: Mapping[Any, Any],
    *,
    refs: bool,
    encode: bool = True,
    ctx: _Context | None = None,
) -> list[str | Hole]:
    """Check the parameters and encode them as http_build_query would, in one pass.

    Returns the query cut at the values that hold references (with `refs`): literal text
    (``name=value`` pairs joined by ``&``) and a `Hole` for each such value. Refuses what
    Bitrix24 cannot receive. This runs once per command of jobs that may have millions, so it
    builds no copy of the parameters and formats error texts only when raising. Without
    `encode` it only checks, and returns just the holes (their sites are what counts then).
    """
    pairs: list[str | Hole] = []
    if ctx is None:
        ctx = _Context(key, method, refs, encode, DEFAULT_LIMITS, params)
    _walk(params, None, (), pairs, ctx)
    limit = ctx.max_vars
    if limit is not None and ctx.count > limit:
        # `count` is an upper bound (one per key); count exactly only when it is over.
        exact = (
            len(pairs)
            if encode
            else len(
                _compile(
                    key,
                    method,
                    params,
                    refs=refs,
                    ctx=_Context(key, method, refs, True, ctx.limits, params),
                )
            )
        )
        if exact > limit:
            raise InvalidCommandError(
                key,
                method,
                f"its parameters are {exact:,} values, more than the server's max_input_vars"
                f" ({limit:,}): PHP's parse_str would silently drop every value after the"
                f" {limit:,}th (split the command, or pass ServerLimits(max_input_vars=...)"
                " for a portal configured higher)",
            )
    if not ctx.holes:
        return ["&".join(pairs)] if pairs else []  # type: ignore[arg-type]
    # Literal pairs between holes are joined once here, not at every send.
    template: list[str | Hole] = []
    run: list[str] = []
    for p in pairs:
        if isinstance(p, str):
            run.append(p)
            continue
        if run:
            template.append("&".join(run))
            run = []
        template.append(p)
    if run:
        template.append("&".join(run))
    return template


#: The encoded names of a container's parameters, by its name and its keys: the commands of a
#: job mostly share a few shapes, so each name is built once. Only shapes whose keys are all
#: plain str (or list indexes) are kept, and only so many.
_SHAPES: dict[tuple[str | None, Any], tuple[str, ...]] = {}
_MAX_SHAPES = 10_000


class _Context:
    """What `_walk` needs for its checks and messages, and what it found."""

    __slots__ = (
        "count",
        "direct",
        "encode",
        "holes",
        "key",
        "limits",
        "max_vars",
        "method",
        "nesting",
        "params",
        "refs",
    )

    def __init__(
        self,
        key: Key | None,
        method: str,
        refs: bool,
        encode: bool,
        limits: ServerLimits,
        params: Any,
    ) -> None:
        self.key = key
        self.method = method
        self.refs = refs
        self.encode = encode
        self.limits = limits
        self.nesting = limits.max_nesting
        self.max_vars = limits.max_input_vars
        self.params = params  # the top of the walk, for messages
        self.holes = False
        #: At least the number of name=value pairs (one per key or index walked).
        self.count = 0
        #: A `Literal` holds text the server would read as a token inside a batch.
        self.direct = False


def _walk(
    container: Any,
    prefix: str | None,
    path: tuple[Any, ...],
    out: list[str | Hole],
    ctx: _Context,
) -> None:
    """Append the pairs of one container (see `_compile`)."""
    if len(path) > ctx.nesting:
        _refuse_deep(path, ctx)
    if type(container) is dict or isinstance(container, Mapping):
        keys = tuple(container)
        values: Iterable[Any] = container.values()
    else:
        keys = range(len(container))  # type: ignore[assignment]
        values = container
    ctx.count += len(keys)
    names = _SHAPES.get((prefix, keys))
    if names is None:
        names = _names(prefix, keys, path, ctx)
    # Checking only: the same walk, nothing written (names stay unprefixed, never used).
    encode = ctx.encode
    for name, k, value in zip(names, keys, values, strict=False):
        kind = type(value)
        if kind is str:
            if "$" in value and ctx.refs:
                hole = _hole(name, value, (*path, k), ctx)
                if hole is not None:
                    out.append(hole)
                    continue
            elif not value.isascii():
                _check_text(ctx.key, ctx.method, value, (*path, k))
            if encode:
                out.append(name + "=" + (value if _is_plain(value) else urlencode(value)))
        elif kind is int:
            if not -_BIG_INT < value < _BIG_INT:
                _refuse_big_int(ctx, (*path, k))
            if encode:
                out.append(name + "=" + int.__repr__(value))
        elif kind is dict or kind is list or kind is tuple:
            _walk(value, name if encode else None, (*path, k), out, ctx)
        elif kind is bool:
            if encode:
                out.append(name + ("=1" if value else "=0"))
        elif value is None:
            continue  # http_build_query writes nothing for null
        elif kind is float:
            text = _float_text(value, (*path, k), ctx)
            if encode:
                out.append(name + "=" + text)
        elif kind is Ref:
            token = Token(value.kind, str(value.key), value.path)
            if ctx.refs:
                _check_token(ctx.key, ctx.method, value, token)  # type: ignore[arg-type]
            out.append(Hole(name, Site((*path, k), (token,))))
            ctx.holes = True
        elif kind is Literal:
            # Sent exactly as written: never cut into tokens. Inside a batch the server would
            # still substitute token-like text, so such a command must go on its own.
            text = value.text
            if not text.isascii():
                _check_text(ctx.key, ctx.method, text, (*path, k))
            if "$" in text and reads_as_token(text):
                ctx.direct = True
            if encode:
                out.append(name + "=" + urlencode(text))
        elif isinstance(value, Mapping | list | tuple):
            _walk(value, name if encode else None, (*path, k), out, ctx)
        elif isinstance(value, str):  # a subclass such as a StrEnum: send its plain value
            plain = str.__str__(value)
            if "$" in plain and ctx.refs:
                hole = _hole(name, plain, (*path, k), ctx)
                if hole is not None:
                    out.append(hole)
                    continue
            elif not plain.isascii():
                _check_text(ctx.key, ctx.method, plain, (*path, k))
            if encode:
                out.append(name + "=" + urlencode(plain))
        elif isinstance(value, int):
            if not -_BIG_INT < value < _BIG_INT:
                _refuse_big_int(ctx, (*path, k))
            if encode:
                out.append(name + "=" + int.__repr__(int(value)))
        elif isinstance(value, float):
            text = _float_text(float(value), (*path, k), ctx)
            if encode:
                out.append(name + "=" + text)
        elif isinstance(value, dt.date):  # a date or datetime: ISO 8601, as Bitrix24 reads it
            if encode:
                out.append(name + "=" + urlencode(iso_date(value)))
        else:
            raise InvalidCommandError(
                ctx.key,
                ctx.method,
                f"parameter {_where((*path, k))} has type {kind.__name__}, which Bitrix24"
                " cannot receive (use str, int, float, bool, None, date, datetime, dict or"
                " list)",
            )


_is_plain = _PLAIN.fullmatch


def _refuse_deep(path: tuple[Any, ...], ctx: _Context) -> None:
    """Refuse a container nested deeper than the server reads, naming a cycle if it is one."""
    cycle = _find_cycle(ctx.params, path)
    limit = ctx.nesting
    if cycle is not None:
        first, again = cycle
        what = (
            f"parameter {_where(path[:first])} contains" if first else "the parameters contain"
        )
        reason = f"{what} itself (again at {_where(path[:again])}), which cannot be sent"
    else:
        reason = (
            f"parameter {_where(path[:3])}... is nested more than {limit} levels deep:"
            f" the server's parse_str (max_input_nesting_level={limit}) would silently drop"
            f" the whole {path[0]!r} parameter (pass ServerLimits(max_nesting=...) for a"
            " portal configured higher)"
        )
    raise InvalidCommandError(ctx.key, ctx.method, reason)


def _find_cycle(top: Any, path: tuple[Any, ...]) -> tuple[int, int] | None:
    """The depths of the first container on `path` that appears again below it, and of its
    repetition, if there is one."""
    seen: dict[int, int] = {id(top): 0}
    node = top
    for depth, k in enumerate(path, 1):
        try:
            node = node[k]
        except Exception:  # an odd container: no cycle can be named
            return None
        first = seen.setdefault(id(node), depth)
        if first != depth:
            return first, depth
    return None

# Python refuses to write an int of more digits than this as text (0: no limit).
_BIG_INT = 10 ** (sys.get_int_max_str_digits() or 10**6)


def _refuse_big_int(ctx: _Context, location: tuple[Any, ...]) -> None:
    raise InvalidCommandError(
        ctx.key, ctx.method, f"parameter {_where(location)} is an integer too long to send"
    )


def _names(
    prefix: str | None, keys: Any, path: tuple[Any, ...], ctx: _Context
) -> tuple[str, ...]:
    """Check a container's keys and build its parameters' encoded names."""
    parts = [_name_part(k, path, ctx) for k in keys]
    names = tuple(parts if prefix is None else [f"{prefix}%5B{p}%5D" for p in parts])
    if len(_SHAPES) < _MAX_SHAPES and (
        type(keys) is range or all(type(k) is str for k in keys)
    ):
        _SHAPES[(prefix, keys)] = names
    return names


def _name_part(k: Any, path: tuple[Any, ...], ctx: _Context) -> str:
    """The encoded text of one parameter key."""
    if type(k) is str:
        if not k.isascii():
            _check_text(ctx.key, ctx.method, k, (*path, k))
        return k if _is_plain(k) else urlencode(k)
    if type(k) is int:
        return int.__repr__(k)
    if isinstance(k, bool) or not isinstance(k, str | int):
        raise InvalidCommandError(
            ctx.key,
            ctx.method,
            f"parameter key {_short(k)} at {_where(path) or 'the top level'} is a"
            f" {type(k).__name__}: parameter keys are str or int",
        )
    if isinstance(k, str):
        text = str.__str__(k)
        _check_text(ctx.key, ctx.method, text, (*path, k))
        return urlencode(text)
    return int.__repr__(int(k))


def _hole(
    name: str, text: str, location: tuple[Any, ...], ctx: _Context
) -> Hole | None:
    """A `Hole` for text holding references, or None if it holds none after all."""
    if not text.isascii():
        _check_text(ctx.key, ctx.method, text, location)
    key = ctx.key
    assert key is not None  # references are only read in a batch's commands, which have keys
    cut = _cut(key, ctx.method, text)
    if len(cut) > 1 or not isinstance(cut[0], str):
        ctx.holes = True
        return Hole(name, Site(location, cut, text=True))
    return None


def _float_text(value: float, location: tuple[Any, ...], ctx: _Context) -> str:
    if not math.isfinite(value):
        raise InvalidCommandError(
            ctx.key,
            ctx.method,
            f"parameter {_where(location)} is {value}, which PHP cannot receive",
        )
    return urlencode(php_strval(value) or "")


def _check_text(key: Key | None, method: str, text: str, location: tuple[Any, ...]) -> None:
    try:
        # surrogateescape: text that parse_str decoded from non-UTF-8 bytes goes back as is.
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidCommandError(
            key, method, f"parameter {_where(location)} has text that is not valid Unicode"
        ) from None


def _where(location: tuple[Any, ...]) -> str:
    return "".join(f"[{k}]" for k in location)


#: Appended to the reasons a string's reference-like text is refused: it is neither a
#: reference the client can honour nor text the server would leave alone.
_EITHER = (
    "; write a reference as Ref(...) (or exactly as Ref renders it), or send text that only"
    " looks like one as Literal(...)"
)


def _cut(key: Key, method: str, text: str) -> tuple[str | Token, ...]:
    parts: list[str | Token] = []
    pos = 0
    found = find_tokens(text)
    texts = {text[start:end] for start, end, _ in found}
    for start, end, token in found:
        if isinstance(token, str):
            raise InvalidReferenceError(key, method, text[start:end], token + _EITHER)
        _check_token(key, method, text[start:end], token)
        here = text[start:end]
        if not text.startswith(token.kind, start + 1):
            # $RESULT[x], $Total[x]: the server reads them (map names in any case), but no
            # Ref renders them, and customer text ("$TOTAL[2]") looks like this: no guess.
            raise InvalidReferenceError(
                key,
                method,
                here,
                f"writes the map name as {text[start + 1 : start + 1 + len(token.kind)]!r},"
                " which the server reads as a reference too" + _EITHER,
            )
        if any(other != here and other.startswith(here) for other in texts):
            # The server str_replace()s each token's text everywhere in the value, so a
            # shorter token also rewrites the start of a longer one.
            raise InvalidReferenceError(
                key,
                method,
                here,
                "is the start of another reference in the same text" + _EITHER,
            )
        if start > pos:
            parts.append(text[pos:start])
        parts.append(token)
        pos = end
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def _check_token(key: Key, method: str, written: str | Ref, token: Token) -> None:
    for segment in token.path:
        if not segment_is_safe(segment):
            # str(Ref) is built only here, for the message: never for valid references.
            raise InvalidReferenceError(
                key, method, str(written), f"has a path item {segment!r} the server cannot read"
            )


# --- turning sites into values ---------------------------------------------------------------

#: A function that gives the text of a token kept for the server, or the resolved value.
Resolver = Callable[[Token], "ServerSide | Any"]


@dataclass(frozen=True, slots=True)
class ServerSide:
    """Marks a token the server resolves: `text` is the token naming the wire key."""

    text: str


class Unresolved(Exception):
    """A reference the client cannot substitute the way the server would (strictly private)."""


def resolve_value(value: Any, path: tuple[str, ...]) -> Any:
    """Walk a path into a value; raise `Unresolved` when the server would substitute garbage."""
    found = resolve_path(value, path)
    if found is MISSING:
        raise Unresolved("the path does not exist in the referenced value")
    return found


def render_command(entry: Entry, resolve: Resolver) -> str:
    """The command string with every reference either resolved or kept for the server.

    Raises:
        Unresolved: a reference cannot be substituted as the server would, or the substituted
            value could not travel intact in a command string; or the entry is `direct` (it
            holds `Literal` text the server would rewrite inside a batch: see `render_direct`).
    """
    if entry.direct:
        raise Unresolved(
            "it holds Literal text that the server would read as a reference inside a batch;"
            " it can only be sent on its own, as a direct call"
        )
    return _render(entry, resolve)


def render_direct(entry: Entry, resolve: Callable[[Token], Any]) -> dict[str, Any]:
    """The parameters of a command sent on its own (a direct call, outside any batch).

    Every reference must be resolved by the client (`resolve` returning a `ServerSide` is
    refused: nothing is substituted outside a batch). The result is exactly what the method
    would read from the command string inside a batch, as `parse_str` builds it (strings and
    nested dicts): send it as the call's parameters, JSON or form-encoded. Text resolved into
    it is not checked for token-like text, since no substitution happens outside a batch.

    Raises:
        Unresolved: as `render_command`, or a reference left for the server.
    """

    def client_side(token: Token) -> Any:
        got = resolve(token)
        if isinstance(got, ServerSide):
            raise Unresolved("a direct call cannot take a reference the server resolves")
        return got

    command = _render(entry, client_side, batch=False)
    query = command.partition("?")[2]
    params = parse_str(query, max_nesting=entry.limits.max_nesting) if query else {}
    if not _strict_unicode(params):
        # Bytes that are not UTF-8 (a server's value spliced in) survive a form body, not JSON.
        raise Unresolved(
            "a referenced value holds bytes that are not valid UTF-8, which cannot be sent"
            " intact in a direct call"
        )
    return params


def _strict_unicode(value: Any) -> bool:
    """Whether every string in a parse_str result encodes as UTF-8 (no surrogates)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
    return True


def _render(entry: Entry, resolve: Resolver, batch: bool = True) -> str:
    if entry.command is not None:
        return entry.command
    if entry.template is None:
        return _fill(entry, resolve, _encode_late(entry), batch)
    return _fill(entry, resolve, entry.template, batch)


def _encode_late(entry: Entry) -> tuple[str | Hole, ...]:
    """Encode a command of a whole list, checked when it was planned, as it is sent."""
    assert entry.source is not None
    ctx = _Context(entry.key, entry.method, True, True, entry.limits, entry.source)
    try:
        template = tuple(_compile(entry.key, entry.method, entry.source, refs=True, ctx=ctx))
    except (PlanError, ValueError, TypeError, RecursionError) as exc:  # the caller changed it
        raise Unresolved(f"its parameters changed after the job began: {exc}") from None
    if tuple(p.site for p in template if isinstance(p, Hole)) != entry.sites:
        raise Unresolved("its parameters changed after the job began (other references)")
    if ctx.direct != entry.direct:
        raise Unresolved("its parameters changed after the job began (other Literal text)")
    return template


def _fill(
    entry: Entry, resolve: Resolver, template: tuple[str | Hole, ...], batch: bool = True
) -> str:
    limits = entry.limits
    pairs: list[str] = []
    for part in template:
        if isinstance(part, str):
            pairs.append(part)
            continue
        hole = part
        site = hole.site
        kept = 0  # tokens left for the server
        if site.whole:
            got = resolve(site.parts[0])  # type: ignore[arg-type]
            if isinstance(got, ServerSide):
                value, kept = got.text, 1
            else:
                value = got
                # The value's own nesting adds to the bracket groups of its parameter name.
                room = limits.max_nesting - (len(site.location) - 1)
                if _deeper_than(value, room):
                    raise Unresolved(
                        "the referenced value is nested too deeply: its parameter would have"
                        f" more than {limits.max_nesting} bracket groups, which the server's"
                        " parse_str (max_input_nesting_level) drops"
                    )
                if not _has_leaf(value):
                    # http_build_query writes nothing for an empty array, so the parameter
                    # would vanish (and a filter would match everything).
                    raise Unresolved("the reference resolves to an empty array")
        else:
            pieces = []
            for token in site.parts:
                if isinstance(token, str):
                    pieces.append(token)
                    continue
                got = resolve(token)
                if isinstance(got, ServerSide):
                    pieces.append(got.text)
                    kept += 1
                    continue
                text = splice_text(got)
                if text is None:
                    raise Unresolved(
                        f"an embedded reference resolves to a {type(got).__name__},"
                        " which the server would not splice into text"
                    )
                pieces.append(text)
            value = "".join(pieces)
        if batch and _count_tokens(value) != kept:
            # The substituted text reads as a reference to the server, which would substitute
            # it again; a command string has no way to escape it.
            raise Unresolved("the substituted value contains text the server reads as $result")
        try:
            append_pairs(hole.name, value, pairs)
        except UnicodeEncodeError:
            # A lone surrogate (an emoji cut in half by the server's escape): no bytes of ours
            # would be the server's, so the value cannot be spliced as it would splice it.
            raise Unresolved(
                "the referenced value holds text that is not valid Unicode (a lone surrogate),"
                " which cannot be sent intact"
            ) from None
    query = "&".join(pairs)
    limit = limits.max_input_vars
    if limit is not None and query and query.count("&") >= limit:
        count = query.count("&") + 1
        raise Unresolved(
            f"with the referenced values substituted it has {count:,} values, more than the"
            f" server's max_input_vars ({limit:,}), past which parse_str drops them"
        )
    return f"{entry.method}?{query}" if query else entry.method


def _deeper_than(value: Any, room: int) -> bool:
    """Whether a value written with http_build_query may have a leaf more than `room` levels
    down (a container that deep counts, leaves or not). Iterative: a resolved value may be
    nested deeper than Python's recursion limit."""
    if not isinstance(value, dict | list):
        return room < 0
    if room < 1:
        return True
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth + 1 > room:
                    return True
                stack.append((child, depth + 1))
    return False


def _token_text(token: Token) -> ServerSide:
    return ServerSide(token.render(token.target))


def _has_leaf(value: Any) -> bool:
    """Whether http_build_query would write anything for this value."""
    if isinstance(value, dict):
        return any(_has_leaf(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_leaf(v) for v in value)
    return value is not None


def _count_tokens(value: Any) -> int:
    """How many reference tokens (well-formed or not) the server would find in a value."""
    if isinstance(value, str):
        return len(find_tokens(value)) if "$" in value else 0
    if isinstance(value, dict):
        return sum(_count_tokens(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_tokens(v) for v in value)
    return 0
