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

from ._encoding import append_pairs, parse_str, php_strval, urlencode
from ._errors import (
    DuplicateKeyError,
    InvalidCommandError,
    InvalidReferenceError,
    InvalidStreamItemError,
    PlanError,
    UnknownReferenceError,
)
from ._refs import MISSING, Ref, Token, find_tokens, resolve_path, segment_is_safe, splice_text
from ._types import Key

__all__ = [
    "Command",
    "CommandInput",
    "CommandList",
    "CommandReader",
    "Entry",
    "Hole",
    "Site",
    "parse_call",
    "parse_commands",
    "render_command",
]

#: Methods the server refuses inside a batch (rest 24.0.0 forbids nested `batch`).
FORBIDDEN_METHODS = frozenset({"batch", "download", "upload"})

_METHOD = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
# Text PHP's urlencode leaves as it is (most keys): no call needed.
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]*")

#: php.ini max_input_nesting_level: the server's parse_str drops a parameter whose name has
#: more bracket groups than this, so deeper parameters are refused before sending.
MAX_NESTING = 64


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
    def parse(cls, text: str) -> Command:
        """Parse the seed's string form ``"method?query"`` with PHP's `parse_str` rules."""
        method, params = _split_command_string(None, text)
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

    @property
    def skey(self) -> str:
        """The key as the server compares it."""
        return str(self.key)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as the server will read them (references still as token text)."""
        command = render_command(self, _token_text)
        query = command.partition("?")[2]
        return parse_str(query) if query else {}


def parse_commands(
    cmd: CommandList,
    reads_only: Callable[[str], bool],
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
        raise InvalidCommandError(
            None,
            None,
            f"the command list must be a mapping, a sequence or an iterable of (key, command)"
            f" pairs, not {type(cmd).__name__}",
        )
    else:
        items = enumerate(cmd)

    index_of: dict[str, int] = {}
    entries: list[Entry] = []
    reads_only = _memo(reads_only)
    for key, item in items:
        skey = _check_key(key)
        if skey in index_of:
            raise DuplicateKeyError(key)
        index_of[skey] = len(entries)
        entries.append(_entry(len(entries), key, item, reads_only, encode=False))
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

    def __init__(self, reads_only: Callable[[str], bool], lookback: int | None) -> None:
        if lookback is not None and lookback < 0:
            raise ValueError("lookback must be at least 0, or None")
        self._reads_only = _memo(reads_only)
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
        entry = _entry(index, key, item, self._reads_only, encode=True)
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
        raise InvalidCommandError(
            None, None, f"command keys are str or int, not {type(key).__name__}"
        )
    return str(key)


def _entry(
    index: int, key: Key, item: Any, reads_only: Callable[[str], bool], *, encode: bool
) -> Entry:
    """Check one command; with `encode`, also encode it now (else when it is sent)."""
    method, params = _normalize(key, item)
    read = reads_only(method)
    template = _compile(key, method, params, refs=True, encode=encode)
    sites = tuple(p.site for p in template if type(p) is Hole)
    if not encode:
        return Entry(index, key, method, None, None, params, sites, _NO_TARGETS, (), read)
    if not sites:
        command = f"{method}?{template[0]}" if template else method
        return Entry(index, key, method, command, None, None, (), _NO_TARGETS, (), read)
    return Entry(index, key, method, None, tuple(template), None, sites, _NO_TARGETS, (), read)


def _bind(entry: Entry, lookup: Callable[[str], int | None], lazy: bool = False) -> None:
    """Resolve the keys `entry` refers to into command indexes."""
    targets: dict[str, int] = {}
    for site in entry.sites:
        for token in site.tokens:
            if token.target in targets:
                continue
            target = lookup(token.target)
            if target is None or (lazy and target >= entry.index):
                raise UnknownReferenceError(
                    entry.key,
                    entry.method,
                    token.target,
                    " (in a stream a command may only refer to one read before it, within"
                    " the look-back)"
                    if lazy
                    else "",
                )
            targets[token.target] = target
    entry.targets = targets
    entry.deps = tuple(targets.values())


def parse_call(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check one direct (non-batch) call. Text is never substituted outside a batch, so only
    `Ref` objects are refused.

    Raises:
        InvalidCommandError: a bad method name, parameters or a `Ref`.
    """
    if not isinstance(method, str):
        raise InvalidCommandError(None, None, "the method must be a string")
    _check_method(None, method, forbid=frozenset())
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidCommandError(
            None, method, f"params must be a mapping, not {type(params).__name__}"
        )
    if any(type(p) is Hole for p in _compile(method, method, params, refs=False)):
        raise InvalidCommandError(None, method, "references (Ref) only work inside a batch")
    plain: dict[str, Any] = _as_plain(params)
    return plain


def _as_plain(value: Any) -> Any:
    """A checked value as plain dicts, lists and base scalars (what JSON encoding needs)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
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


def _normalize(key: Key, item: Any) -> tuple[str, Mapping[Any, Any]]:
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
        method, params = _split_command_string(key, item)
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
        raise InvalidCommandError(key, None, "the method must be a string")
    _check_method(key, method)
    if params is None:
        return method, {}
    if not isinstance(params, Mapping):
        raise InvalidCommandError(
            key, method, f"params must be a mapping, not {type(params).__name__}"
        )
    return method, params


def _split_command_string(key: Key | None, text: str) -> tuple[str, dict[str, Any]]:
    if "#" in text:
        # parse_url() on the server treats '#' as a fragment and drops the rest.
        raise InvalidCommandError(
            key, text.split("?", 1)[0], "'#' would cut the command on the server; encode it as %23"
        )
    method, _, query = text.partition("?")
    _check_method(key, method)
    return method, parse_str(query) if query else {}


def _check_method(
    key: Key | None, method: str, forbid: frozenset[str] = FORBIDDEN_METHODS
) -> None:
    if _METHOD.fullmatch(method) is None:
        raise InvalidCommandError(key, method, f"{method!r} is not a REST method name")
    if method.lower() in forbid:
        raise InvalidCommandError(key, method, f"{method!r} is not allowed inside a batch")


def _compile(
    key: Key, method: str, params: Mapping[Any, Any], *, refs: bool, encode: bool = True
) -> list[str | Hole]:
    """Check the parameters and encode them as http_build_query would, in one pass.

    Returns the query cut at the values that hold references (with `refs`): literal text
    (``name=value`` pairs joined by ``&``) and a `Hole` for each such value. Refuses what
    Bitrix24 cannot receive. This runs once per command of jobs that may have millions, so it
    builds no copy of the parameters and formats error texts only when raising. Without
    `encode` it only checks, and returns just the holes (their sites are what counts then).
    """
    pairs: list[str | Hole] = []
    ctx = _Context(key, method, refs, encode)
    _walk(params, None, (), pairs, ctx)
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
    """What `_walk` needs for its messages, and whether it found references."""

    __slots__ = ("encode", "holes", "key", "method", "refs")

    def __init__(self, key: Key, method: str, refs: bool, encode: bool = True) -> None:
        self.key = key
        self.method = method
        self.refs = refs
        self.encode = encode
        self.holes = False


def _walk(
    container: Any,
    prefix: str | None,
    path: tuple[Any, ...],
    out: list[str | Hole],
    ctx: _Context,
) -> None:
    """Append the pairs of one container (see `_compile`)."""
    if len(path) > MAX_NESTING:
        raise InvalidCommandError(
            ctx.key,
            ctx.method,
            f"parameters nested deeper than {MAX_NESTING} levels at {_where(path[:3])}...:"
            " the server's parse_str would drop them (or the structure contains itself)",
        )
    if type(container) is dict or isinstance(container, Mapping):
        keys = tuple(container)
        values: Iterable[Any] = container.values()
    else:
        keys = range(len(container))  # type: ignore[assignment]
        values = container
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
                _check_token(ctx.key, ctx.method, value, token)
            out.append(Hole(name, Site((*path, k), (token,))))
            ctx.holes = True
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
            ctx.key, ctx.method, f"parameter key {k!r} at {_where(path) or 'the top level'}"
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
    cut = _cut(ctx.key, ctx.method, text)
    if len(cut) > 1 or not isinstance(cut[0], str):
        ctx.holes = True
        return Hole(name, Site(location, cut))
    return None


def _float_text(value: float, location: tuple[Any, ...], ctx: _Context) -> str:
    if not math.isfinite(value):
        raise InvalidCommandError(
            ctx.key,
            ctx.method,
            f"parameter {_where(location)} is {value}, which PHP cannot receive",
        )
    return urlencode(php_strval(value) or "")


def _check_text(key: Key, method: str, text: str, location: tuple[Any, ...]) -> None:
    try:
        # surrogateescape: text that parse_str decoded from non-UTF-8 bytes goes back as is.
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidCommandError(
            key, method, f"parameter {_where(location)} has text that is not valid Unicode"
        ) from None


def _where(location: tuple[Any, ...]) -> str:
    return "".join(f"[{k}]" for k in location)


def _cut(key: Key, method: str, text: str) -> tuple[str | Token, ...]:
    parts: list[str | Token] = []
    pos = 0
    found = find_tokens(text)
    texts = {text[start:end] for start, end, _ in found}
    for start, end, token in found:
        if isinstance(token, str):
            raise InvalidReferenceError(key, method, text[start:end], token)
        _check_token(key, method, text[start:end], token)
        here = text[start:end]
        if any(other != here and other.startswith(here) for other in texts):
            # The server str_replace()s each token's text everywhere in the value, so a
            # shorter token also rewrites the start of a longer one.
            raise InvalidReferenceError(
                key, method, here, "is the start of another reference in the same text"
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
            value could not travel intact in a command string.
    """
    if entry.command is not None:
        return entry.command
    if entry.template is None:
        return _fill(entry, resolve, _encode_late(entry))
    return _fill(entry, resolve, entry.template)


def _encode_late(entry: Entry) -> tuple[str | Hole, ...]:
    """Encode a command of a whole list, checked when it was planned, as it is sent."""
    assert entry.source is not None
    try:
        template = tuple(_compile(entry.key, entry.method, entry.source, refs=True))
    except (PlanError, ValueError, TypeError) as exc:  # the caller changed its parameters
        raise Unresolved(f"its parameters changed after the job began: {exc}") from None
    if tuple(p.site for p in template if isinstance(p, Hole)) != entry.sites:
        raise Unresolved("its parameters changed after the job began (other references)")
    return template


def _fill(entry: Entry, resolve: Resolver, template: tuple[str | Hole, ...]) -> str:
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
        if _count_tokens(value) != kept:
            # The substituted text reads as a reference to the server, which would substitute
            # it again; a command string has no way to escape it.
            raise Unresolved("the substituted value contains text the server reads as $result")
        append_pairs(hole.name, value, pairs)
    query = "&".join(pairs)
    return f"{entry.method}?{query}" if query else entry.method


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
