"""The command model: what a caller may pass as a command, and its checked internal form.

This module performs no I/O. It accepts every shape Bitrix24 users already write:

- the seed's string ``"department.get?ID=$result[get_user][UF_DEPARTMENT][0]"``;
- ``(method, params)`` or ``[method, params]`` (BX24.callBatch's array form);
- ``{"method": ..., "params": ...}`` (BX24.callBatch / CRest);
- a `Command`.

Each becomes an `Entry`: key, method, parameters, and the places in the parameters that hold
references (`Site`). Bad input raises a `PlanError` subclass naming the key and the method.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._encoding import parse_str
from ._errors import (
    DuplicateKeyError,
    InvalidCommandError,
    InvalidReferenceError,
    UnknownReferenceError,
)
from ._refs import MISSING, Ref, Token, find_tokens, resolve_path, segment_is_safe, splice_text
from ._types import Key

__all__ = [
    "Command",
    "CommandInput",
    "CommandList",
    "Entry",
    "Site",
    "parse_call",
    "parse_commands",
]

#: Methods the server refuses inside a batch (rest 24.0.0 forbids nested `batch`).
FORBIDDEN_METHODS = frozenset({"batch", "download", "upload"})

_METHOD = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


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

    @property
    def whole(self) -> bool:
        """True when the value is exactly one token."""
        return len(self.parts) == 1 and isinstance(self.parts[0], Token)

    @property
    def tokens(self) -> list[Token]:
        """The tokens in this value."""
        return [p for p in self.parts if isinstance(p, Token)]


@dataclass(slots=True)
class Entry:
    """One command as the planner sees it (strictly private)."""

    index: int
    key: Key
    method: str
    params: dict[str, Any]
    sites: tuple[Site, ...]
    #: The referenced command keys (as the server compares them) and their indexes.
    targets: dict[str, int]
    read: bool

    @property
    def deps(self) -> tuple[int, ...]:
        """Indexes of the commands this one refers to, in order of first reference."""
        return tuple(self.targets.values())

    @property
    def skey(self) -> str:
        """The key as the server compares it."""
        return str(self.key)


def parse_commands(
    cmd: CommandList,
    reads_only: Callable[[str], bool],
) -> list[Entry]:
    """Check and normalise a caller's command list; resolve reference targets to indexes.

    Raises:
        InvalidCommandError, DuplicateKeyError, UnknownReferenceError, InvalidReferenceError.
    """
    items: list[tuple[Key, CommandInput]]
    if isinstance(cmd, Mapping):
        items = list(cmd.items())
    elif isinstance(cmd, str | bytes) or not isinstance(cmd, Sequence):
        raise InvalidCommandError(
            None, None, f"cmd must be a mapping or a sequence, not {type(cmd).__name__}"
        )
    else:
        items = list(enumerate(cmd))

    index_of: dict[str, int] = {}
    raw: list[tuple[Key, str, dict[str, Any], list[Site]]] = []
    for key, item in items:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise InvalidCommandError(
                None, None, f"command keys are str or int, not {type(key).__name__}"
            )
        if key == "":
            raise InvalidCommandError(key, None, "the empty string is not a command key")
        if str(key) in index_of:
            raise DuplicateKeyError(key)
        index_of[str(key)] = len(raw)
        method, params, sites = _normalize(key, item)
        raw.append((key, method, params, sites))

    entries = []
    for i, (key, method, params, sites) in enumerate(raw):
        targets: dict[str, int] = {}
        for site in sites:
            for token in site.tokens:
                target = index_of.get(token.target)
                if target is None:
                    raise UnknownReferenceError(key, method, token.target)
                targets.setdefault(token.target, target)
        entries.append(Entry(i, key, method, params, tuple(sites), targets, reads_only(method)))
    return entries


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
    checked = _check_params(method, method, params)
    if any(isinstance(v, Ref) for v in _leaves(checked)):
        raise InvalidCommandError(
            None, method, "references (Ref) only work inside a batch"
        )
    return checked


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _normalize(key: Key, item: Any) -> tuple[str, dict[str, Any], list[Site]]:
    method: Any
    params: Any
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
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidCommandError(
            key, method, f"params must be a mapping, not {type(params).__name__}"
        )
    sites: list[Site] = []
    return method, _check_params(key, method, params, sites), sites


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


def _check_params(
    key: Key, method: str, params: Mapping[Any, Any], sites: list[Site] | None = None
) -> dict[str, Any]:
    """Copy the parameters into plain dicts and lists, refusing what cannot be encoded.

    When `sites` is given, every value holding references is recorded there, in the same pass
    (this runs once per command of a job that may have millions).
    """

    def copy(value: Any, location: tuple[str | int, ...]) -> Any:
        kind = type(value)
        if kind is str:
            if not value.isascii():
                _check_text(key, method, value, location)
            if sites is not None and "$" in value:
                parts = _cut(key, method, value)
                if len(parts) > 1 or not isinstance(parts[0], str):
                    sites.append(Site(location, parts))
            return value
        if kind is float and not math.isfinite(value):
            raise InvalidCommandError(
                key, method, f"parameter {_where(location)} is {value}, which PHP cannot receive"
            )
        if kind is int or kind is float or kind is bool or value is None:
            return value
        if kind is Ref:
            token = Token(value.kind, str(value.key), value.path)
            _check_token(key, method, str(value), token)
            if sites is not None:
                sites.append(Site(location, (token,)))
            return value
        if kind is dict or isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if type(k) is not str and (isinstance(k, bool) or not isinstance(k, str | int)):
                    raise InvalidCommandError(
                        key, method, f"parameter key {k!r} at {_where(location)}"
                    )
                out[k] = copy(v, (*location, k))
            return out
        if kind is list or kind is tuple or isinstance(value, list | tuple):
            return [copy(v, (*location, i)) for i, v in enumerate(value)]
        for base in (str, int, float):  # a subclass such as a StrEnum: send its plain value
            if isinstance(value, base):
                return copy(base(value) if base is not str else str.__str__(value), location)
        raise InvalidCommandError(
            key,
            method,
            f"parameter {_where(location) or 'value'} has type {kind.__name__}, which Bitrix24"
            " cannot receive (use str, int, float, bool, None, dict or list)",
        )

    result: dict[str, Any] = copy(params, ())
    return result


def _check_text(key: Key, method: str, text: str, location: tuple[str | int, ...]) -> None:
    try:
        # surrogateescape: text that parse_str decoded from non-UTF-8 bytes goes back as is.
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidCommandError(
            key, method, f"parameter {_where(location)} has text that is not valid Unicode"
        ) from None


def _where(location: tuple[str | int, ...]) -> str:
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


def _check_token(key: Key, method: str, text: str, token: Token) -> None:
    for segment in token.path:
        if not segment_is_safe(segment):
            raise InvalidReferenceError(
                key, method, text, f"has a path item {segment!r} the server cannot read"
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


def render_params(entry: Entry, resolve: Resolver) -> dict[str, Any]:
    """The command's parameters with every reference either resolved or kept for the server.

    Raises:
        Unresolved: a reference cannot be substituted as the server would, or the substituted
            value could not travel intact in a command string.
    """
    if not entry.sites:
        return entry.params
    params = _deep_copy(entry.params)
    for site in entry.sites:
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
            for part in site.parts:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                got = resolve(part)
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
        _assign(params, site.location, value)
    return params


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


def _deep_copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = _copy(value)
    return copied


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _assign(params: Any, location: tuple[str | int, ...], value: Any) -> None:
    target = params
    for step in location[:-1]:
        target = target[step]
    target[location[-1]] = value
