"""References between commands: `$result[key][path]...` tokens, the typed `Ref`, and the
server's own rules for resolving them. This module performs no I/O.

The server (``CRestUtil::processBatchElement``) looks, in every parameter *value*, for ``$``
followed by a map name (``result``, ``next``, ``total``, ``time``, ``error``; any case) and the
longest run of non-whitespace after it. The ``[...]`` groups of that run are the path: the first
names a command, the rest walk into its value. A value that is exactly one token is replaced by
the resolved value with its type; a token inside a longer string is replaced by the value as
text, and only when the value is a string or a number.

The client resolves references across HTTP requests with the same rules, but stricter where the
server would silently send garbage: a path that does not resolve all the way, or an embedded
reference to an array, bool or null, is reported and the command is never sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from ._encoding import php_strval
from ._types import Key

__all__ = [
    "KINDS",
    "MISSING",
    "Literal",
    "Ref",
    "Token",
    "find_tokens",
    "reads_as_token",
    "resolve_path",
    "segment_is_safe",
    "splice_text",
]

#: The map names the server knows; `$result_next[x]` is not one of them (see `find_tokens`).
KINDS: Final = ("result", "next", "total", "time", "error")

# One candidate token: `$`, a map name, then the run of non-whitespace the server swallows.
# PCRE's \s without the /u flag is ASCII whitespace only: a no-break space is swallowed too,
# hence re.ASCII on every pattern here.
_TOKEN = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE | re.ASCII)
# A well-formed run: one or more non-empty groups and nothing else.
_GROUPS = re.compile(r"(?:\[[^\[\]\s]+\])+", re.ASCII)
_GROUP = re.compile(r"\[([^\[\]\s]+)\]", re.ASCII)
# PHP turns a canonical decimal string into an integer array key.
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
# PHP `is_numeric_string` giving an integer: what a string offset accepts.
_NUMERIC_INT = re.compile(r"[+-]?[0-9]+")
_UNSAFE_SEGMENT = re.compile(r"[\[\]\s]", re.ASCII)


@dataclass(frozen=True, slots=True)
class Ref:
    """A typed reference to another command's output, rendered as a `$result[...]` token.

    ``Ref("get_user")["UF_DEPARTMENT"][0]`` is ``$result[get_user][UF_DEPARTMENT][0]``. Put it
    in a parameter as the whole value (the value keeps its JSON type), or inside an f-string
    followed by whitespace or the end of the string (the value is spliced in as text).

    Use ``Ref.next(key)``, ``Ref.total(key)``, ``Ref.time(key)["duration"]`` and
    ``Ref.error(key)["error"]`` for the server's other maps.
    """

    key: Key
    path: tuple[str, ...] = ()
    kind: str = "result"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Ref kind must be one of {KINDS}, not {self.kind!r}")
        if isinstance(self.key, bool) or not isinstance(self.key, str | int):
            raise TypeError(f"Ref key must be a str or int, not {type(self.key).__name__}")

    def __getitem__(self, item: str | int) -> Ref:
        """Step one level down: a field name or a list index."""
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise TypeError(f"Ref path items are str or int, not {type(item).__name__}")
        return Ref(self.key, (*self.path, str(item)), self.kind)

    @classmethod
    def next(cls, key: Key) -> Ref:
        """The command's `next` paging offset (`$next[key]`)."""
        return cls(key, (), "next")

    @classmethod
    def total(cls, key: Key) -> Ref:
        """The command's `total` row count (`$total[key]`)."""
        return cls(key, (), "total")

    @classmethod
    def time(cls, key: Key) -> Ref:
        """The command's time object (`$time[key][duration]` ...)."""
        return cls(key, (), "time")

    @classmethod
    def error(cls, key: Key) -> Ref:
        """The command's error object (`$error[key][error]` ...); resolves only if it failed."""
        return cls(key, (), "error")

    def __str__(self) -> str:
        return "$" + self.kind + "".join(f"[{p}]" for p in (str(self.key), *self.path))

    def __bitrix_token__(self) -> str:
        """The token text, for the encoder."""
        return str(self)


@dataclass(frozen=True, slots=True)
class Literal:
    """Text that must reach the server exactly as written, never read as a reference.

    ``Literal("Price $total[x] incl. VAT")`` is sent byte for byte. A plain string holding
    ``$result[...]``-like text is a reference (or is refused when it cannot be one); wrap
    customer text in `Literal` when it may hold such text. Inside a batch the server
    substitutes tokens in every command string, so a command holding a `Literal` whose text
    the server would read as a token is sent on its own, as a direct call, where nothing is
    substituted (its `Entry` is marked ``direct``).
    """

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Literal text must be a str, not {type(self.text).__name__}")
        if type(self.text) is not str:  # a str subclass (an enum): keep its plain value
            object.__setattr__(self, "text", str.__str__(self.text))

    def __str__(self) -> str:
        return self.text


def reads_as_token(text: str) -> bool:
    """Whether the server's batch substitution would read some of `text` as a token."""
    return "$" in text and bool(find_tokens(text))


@dataclass(frozen=True, slots=True)
class Token:
    """One reference found in a parameter value: map `kind`, command key, path below it."""

    kind: str
    target: str
    path: tuple[str, ...]

    def render(self, target: str) -> str:
        """The token text naming `target` (the key the command has on the wire)."""
        return "$" + self.kind + "".join(f"[{p}]" for p in (target, *self.path))


def find_tokens(text: str) -> list[tuple[int, int, Token | str]]:
    """Find the reference tokens in a string value, as the server would.

    Returns ``(start, end, token)`` for each token. A run that the server would read in a way
    the writer almost surely did not mean (trailing characters such as ``!`` or ``,`` that it
    swallows, two references glued together, text between ``$result`` and ``[``) is returned
    with a string in place of the token: the reason it is rejected. A ``$result`` with no
    ``[...]`` group is no reference, on the server either.
    """
    found: list[tuple[int, int, Token | str]] = []
    for m in _TOKEN.finditer(text):
        run = m.group(2)
        if "[" not in run:
            continue  # no group at all: the server leaves it alone
        whole = _GROUPS.match(run)
        if whole is None or whole.end() != len(run):
            found.append((m.start(), m.end(), _explain(run)))
            continue
        parts = _GROUP.findall(run)
        token = Token(m.group(1).lower(), parts[0], tuple(parts[1:]))
        found.append((m.start(), m.end(), token))
    return found


def _explain(run: str) -> str:
    if not run.startswith("["):
        return "has text between the map name and '[' that the server would ignore"
    if "[]" in run:
        return "has an empty [] group"
    head = _GROUPS.match(run)
    rest = run[head.end() :] if head else run
    return (
        f"is followed by {rest[:20]!r}, which the server would swallow into the reference;"
        " separate references and text with whitespace"
    )


def segment_is_safe(segment: str) -> bool:
    """Whether a key or path item can be written inside a token's brackets."""
    return bool(segment) and _UNSAFE_SEGMENT.search(segment) is None


_MISSING: Final = object()


def resolve_path(value: Any, path: tuple[str, ...]) -> Any:
    """Walk `path` into `value` with PHP's `isset` rules; return `_MISSING` if it stops early.

    The server stops silently at the first missing or null key and keeps what it reached; the
    client calls that unresolved instead. A null value is unresolved even with no path left:
    ``isset`` is false for it, and the server would substitute the whole result map.
    """
    if value is None:
        return _MISSING
    for segment in path:
        value = _step(value, segment)
        if value is _MISSING or value is None:
            return _MISSING
    return value


def _step(value: Any, segment: str) -> Any:
    if isinstance(value, dict):
        # JSON object keys are strings; PHP's integer keys compare equal to their text.
        return value.get(segment, _MISSING)
    if isinstance(value, list):
        if _CANONICAL_INT.fullmatch(segment):
            i = int(segment)
            if 0 <= i < len(value):
                return value[i]
        return _MISSING
    if isinstance(value, str) and _NUMERIC_INT.fullmatch(segment):
        # isset($string[$n]) holds for a numeric offset in range: one *byte* of the string.
        data = value.encode("utf-8")
        i = int(segment)
        if -len(data) <= i < len(data) and data[i] < 0x80:
            return chr(data[i])
        return _MISSING  # out of range, or half of a multi-byte character: garbage
    return _MISSING


def splice_text(value: Any) -> str | None:
    """The text an embedded reference is replaced by, or None where the server keeps the token."""
    return php_strval(value)


#: What `resolve_path` returns when the path does not resolve.
MISSING: Final = _MISSING
