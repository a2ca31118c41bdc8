"""PHP-faithful query strings: what `http_build_query` sends, what `parse_str` reads.

The Bitrix24 server is PHP. A batch command is the string ``method?query``; the server
splits it with `parse_url` and turns the query into parameters with `parse_str`. A
form-encoded or GET request is parsed the same way. To predict exactly what a method
will see, this module re-implements, from the php-src sources, the PHP routines
involved:

- `http_build_query` (``ext/standard/http.c``; default ``PHP_QUERY_RFC1738``, separator
  ``&``), which the official PHP SDK uses to build commands and bodies;
- `parse_str` (``main/php_variables.c``: ``php_default_treat_data`` and
  ``php_register_variable_ex``), which the server uses to read them;
- the string cast of a double (``zend_double_to_str``: ``zend_gcvt`` with the
  ``precision`` ini setting, default 14), which both of the above and the server's
  ``$result`` splicing use.

PHP strings are bytes; Python strings are text. Text is encoded as UTF-8. Bytes that are
not valid UTF-8 come back from `parse_str` as lone surrogates
(``errors="surrogateescape"``), which encode back to the same bytes. PHP arrays become
dicts whose keys are ``str`` or ``int`` (``int`` where PHP stores an integer key), in
PHP's order.

Assumed server settings (the php.ini defaults; the cloud's values are not published):
``precision=14``, ``arg_separator.input="&"``, ``max_input_nesting_level=64``. Where PHP
versions differ, this follows PHP 8.3 and later (see `parse_str`).

This module performs no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias
from urllib.parse import unquote_to_bytes

__all__ = [
    "MAX_SUPPORTED_NESTING",
    "InputLimitError",
    "PhpArray",
    "append_pairs",
    "encode_command",
    "encode_form",
    "http_build_query",
    "normalize",
    "parse_str",
    "php_strval",
    "urlencode",
]

#: A PHP array as `parse_str` builds it: keys are ``str`` or ``int``, values are ``str``
#: or nested arrays. Typed ``dict[Any, Any]`` so that callers may treat it as
#: ``dict[str, Any]``.
PhpArray: TypeAlias = dict[Any, Any]

# The php.ini `precision` setting: the string cast of a double keeps this many
# significant digits (zend_double_to_str). 14 is the PHP default.
_PRECISION = 14
# php.ini max_input_nesting_level: deeper bracket groups make PHP drop the whole
# variable.
_MAX_NESTING = 64
#: The deepest nesting this module (and the command model) will walk: its walks recurse, and
#: a structure deeper than this (or one that contains itself) is refused with a ValueError
#: long before Python's recursion limit. PHP's default max_input_nesting_level is 64.
MAX_SUPPORTED_NESTING = 256
# zend_long on the 64-bit builds the server runs.
_LONG_MAX = 2**63 - 1
_LONG_MIN = -(2**63)

# php_url_encode keeps only [A-Za-z0-9_.-], turns a space into "+" and everything else
# into %XX with upper-case hex. Unlike Python's quote_plus it also encodes "~".
#: Text that PHP's urlencode leaves as it is.
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]*")
_URLENCODE_TABLE: tuple[str, ...] = tuple(
    chr(b)
    if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.")
    else "+"
    if b == 0x20
    else f"%{b:02X}"
    for b in range(256)
)

_ASCII_TABLE = {b: _URLENCODE_TABLE[b] for b in range(128) if _URLENCODE_TABLE[b] != chr(b)}

# A key PHP stores as an integer (ZEND_HANDLE_NUMERIC_STR): optional "-", no leading
# zero, at most 19 digits, inside zend_long. "-0", "01", "1.0", " 1" and "+1" stay
# strings.
_NUMERIC_KEY = re.compile(rb"-?[1-9][0-9]{0,18}|0")

# C isspace() in the "C" locale: after "[" php_register_variable_ex skips one of these.
_C_SPACE = frozenset(b" \t\n\v\f\r")
_OPEN = 0x5B  # "["
_CLOSE = 0x5D  # "]"


def _to_bytes(text: str) -> bytes:
    # surrogateescape lets strings that came from parse_str carry non-UTF-8 bytes back.
    return text.encode("utf-8", "surrogateescape")


def _to_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def urlencode(text: str) -> str:
    """Encode text like PHP's `urlencode` (RFC 1738 form encoding).

    Args:
        text: The text; it is encoded as UTF-8 first.

    Returns:
        The text with every byte but ``A-Z a-z 0-9 - _ .`` percent-encoded, and
        spaces as ``+``.
    """
    if _PLAIN.fullmatch(text):  # the common case: nothing to encode
        return text
    if text.isascii():  # one pass in C; a byte loop is needed only for UTF-8
        return text.translate(_ASCII_TABLE)
    return "".join([_URLENCODE_TABLE[b] for b in _to_bytes(text)])


def _urldecode(data: bytes) -> bytes:
    # php_url_decode: "+" is a space, "%XX" with two hex digits is a byte, and anything
    # else, including a malformed "%", is kept as it is. "+" is replaced first so "%2B"
    # stays "+".
    return unquote_to_bytes(data.replace(b"+", b" "))


# ------------------------------------------------------------------------------ scalars


def _php_double(value: float) -> str:
    """Format a double as PHP 8's string cast does (``precision=14``, zend_gcvt)."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    # zend_dtoa reports the sign bit, so -0.0 prints as "-0".
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        digits, decpt = "0", 1
    else:
        # Python's "e" format runs David Gay's dtoa in mode 2, as zend_dtoa does: the
        # value correctly rounded to 14 significant digits. zend_gcvt then drops
        # trailing zeros.
        mantissa, _, exponent = f"{abs(value):.{_PRECISION - 1}e}".partition("e")
        digits = mantissa.replace(".", "").rstrip("0")
        decpt = int(exponent) + 1  # the value is 0.DIGITS * 10**decpt
    if decpt > _PRECISION or decpt < -3:
        # Exponential form always has a fraction ("1.0E+25") and an unpadded exponent.
        exp = decpt - 1
        fraction = digits[1:] or "0"
        return f"{sign}{digits[0]}.{fraction}E{'-' if exp < 0 else '+'}{abs(exp)}"
    if decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    if len(digits) <= decpt:
        return sign + digits + "0" * (decpt - len(digits))
    return f"{sign}{digits[:decpt]}.{digits[decpt:]}"


def php_strval(value: Any) -> str | None:
    """Return the text the server splices in for an embedded ``$result[...]`` token.

    The server's `str_replace` casts the resolved value to a string: a string is used
    as is, an integer in decimal, a double with PHP 8's ``precision=14`` cast
    (``0.1 + 0.2`` gives ``"0.3"``, ``1.0`` gives ``"1"``, ``1e15`` gives
    ``"1.0E+15"``, ``1e-5`` gives ``"1.0E-5"``, ``-0.0`` gives ``"-0"``, NaN gives
    ``"NAN"``). Arrays, booleans and null are not spliced: the server leaves the
    literal token text.

    Args:
        value: A resolved JSON value (``str``, ``int``, ``float``, ``bool``, ``None``, a
            mapping or a list).

    Returns:
        The spliced text, or None where the server keeps the token text.

    Raises:
        TypeError: For a value that is not JSON-like.
    """
    if value is None or isinstance(value, bool | Mapping | list | tuple):
        return None
    if isinstance(value, str):
        # str.__str__ gives the content even for a str subclass such as an enum.
        return str.__str__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _php_double(float(value))
    raise TypeError(
        f"php_strval() cannot convert {type(value).__name__!r}: not a JSON value"
    )


def _scalar_text(value: Any, path: tuple[Any, ...]) -> str | None:
    """The PHP string http_build_query writes for a scalar, or None to skip it."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:  # http_build_query skips null (and resources)
        return None
    if kind is bool:
        return "1" if value else "0"
    if kind is int:
        # Python ints beyond zend_long are written exactly; PHP itself would hold a
        # double.
        return int.__repr__(value)
    token = getattr(value, "__bitrix_token__", None)
    if token is not None and callable(token):
        text = token()
        if not isinstance(text, str):
            raise TypeError(
                f"{_describe(path)}: __bitrix_token__() returned {type(text).__name__!r}, "
                "expected str"
            )
        return text
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        # http_build_query casts a double to string (zend_double_to_str, `precision`),
        # not with serialize_precision; the "+" of an exponent is then urlencoded like
        # any text.
        return _php_double(float(value))
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(
        f"{_describe(path)}: cannot encode a value of type {type(value).__name__!r}; use str, "
        "int, float, bool, None, a mapping, a list or a tuple (or an object with "
        "__bitrix_token__)"
    )


def _key_text(key: Any, path: tuple[Any, ...]) -> str:
    # PHP array keys are integers or strings; a bool key becomes 0 or 1 as in a PHP
    # array.
    if type(key) is str:
        return key
    if isinstance(key, bool | int):
        return int.__repr__(int(key))
    if isinstance(key, str):
        return str.__str__(key)
    raise TypeError(
        f"{_describe(path)}: a key must be str or int, not {type(key).__name__!r}"
    )


# ----------------------------------------------------------------------------- encoding


def _is_container(value: Any) -> bool:
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        return True
    if kind is str or kind is int or value is None:
        return False
    if getattr(value, "__bitrix_token__", None) is not None:
        return False
    return isinstance(value, Mapping | list | tuple)


def _items(container: Any) -> Iterable[tuple[Any, Any]]:
    if type(container) is dict or isinstance(container, Mapping):
        return container.items()
    return enumerate(container)


def _leaves(data: Any) -> Iterator[tuple[list[str], str]]:
    """Yield ``(key path, PHP string)`` for each pair http_build_query writes, in order.

    Null leaves are skipped and containers without leaves write nothing, as in PHP.
    """
    if not _is_container(data):
        raise TypeError(
            "http_build_query() takes a mapping, a list or a tuple, "
            f"not {type(data).__name__!r}"
        )
    active: set[int] = set()

    def walk(container: Any, path: list[str]) -> Iterator[tuple[list[str], str]]:
        if id(container) in active:
            # PHP silently skips a recursive array; a cycle here is a caller bug.
            raise ValueError(f"cannot encode a circular structure at {_describe(path)}")
        if len(path) > MAX_SUPPORTED_NESTING:
            raise _too_deep(path)
        active.add(id(container))
        try:
            for key, value in _items(container):
                child = [*path, _key_text(key, tuple(path))]
                if _is_container(value):
                    yield from walk(value, child)
                else:
                    text = _scalar_text(value, tuple(child))
                    if text is not None:
                        yield child, text
        finally:
            active.discard(id(container))

    return walk(data, [])


def _too_deep(path: Sequence[Any]) -> ValueError:
    return ValueError(
        f"cannot encode a structure nested deeper than {MAX_SUPPORTED_NESTING} levels"
        f" (at {_describe(path[:3])}...)"
    )


def _describe(path: Sequence[Any]) -> str:
    if not path:
        return "the top level"
    return str(path[0]) + "".join(f"[{part}]" for part in path[1:])


def http_build_query(data: Mapping[Any, Any]) -> str:
    """Build a query string exactly as PHP 8's ``http_build_query($data)`` does.

    Nested mappings become ``a%5Bb%5D=v`` (PHP encodes the brackets), lists and tuples
    use the indices ``0..n-1``, ``None`` is omitted and so is a container with nothing
    to write. ``True``/``False`` are ``1``/``0``, ints are decimal, floats use PHP's
    string cast (`php_strval`), and strings and keys go through `urlencode`. An object
    with a ``__bitrix_token__()`` method is written as the string that method returns.

    Args:
        data: The parameters. Keys are ``str`` or ``int``.

    Returns:
        The query string, without a leading ``?``; empty if nothing is written.

    Raises:
        TypeError: For a value or key of a type PHP data cannot have.
        ValueError: For a circular structure, or one nested deeper than
            `MAX_SUPPORTED_NESTING`.
    """
    if not _is_container(data):
        raise TypeError(
            "http_build_query() takes a mapping, a list or a tuple, "
            f"not {type(data).__name__!r}"
        )
    out: list[str] = []
    _append_pairs(data, None, (), out, set())
    return "&".join(out)


def append_pairs(name: str, value: Any, out: list[str]) -> None:
    """Append the ``name=value`` pairs http_build_query writes for one parameter.

    `name` is the parameter's already encoded name (``fields%5BTITLE%5D``); a container
    writes one pair per leaf below it, a null or empty container writes nothing.
    """
    if _is_container(value):
        _append_pairs(value, name, (name,), out, set())
        return
    text = _scalar_text(value, (name,))
    if text is not None:
        out.append(f"{name}={urlencode(text)}")


def _append_pairs(
    container: Any, prefix: str | None, path: tuple[Any, ...], out: list[str], active: set[int]
) -> None:
    # One pass that carries the already-encoded name down: nothing is formatted twice and
    # error texts are built lazily.
    if id(container) in active:
        # PHP silently skips a recursive array; a cycle here is a caller bug.
        raise ValueError(f"cannot encode a circular structure at {_describe(path)}")
    if len(path) > MAX_SUPPORTED_NESTING:
        raise _too_deep(path)
    active.add(id(container))
    for key, value in _items(container):
        part = urlencode(_key_text(key, path))
        name = part if prefix is None else f"{prefix}%5B{part}%5D"
        if _is_container(value):
            _append_pairs(value, name, (*path, key), out, active)
        else:
            text = _scalar_text(value, (*path, key))
            if text is not None:
                out.append(f"{name}={urlencode(text)}")
    active.discard(id(container))


def encode_command(method: str, params: Mapping[Any, Any] | None) -> str:
    """Build one batch command string: ``method`` or ``method?query``.

    Args:
        method: The REST method name, e.g. ``crm.lead.add``.
        params: Its parameters, or None.

    Returns:
        ``method`` alone when no parameter survives encoding (all None or empty),
        otherwise ``method + "?" + http_build_query(params)``.
    """
    query = http_build_query(params) if params else ""
    return f"{method}?{query}" if query else method


def encode_form(data: Mapping[Any, Any]) -> bytes:
    """Build an ``application/x-www-form-urlencoded`` body.

    A ``cmd`` mapping of command strings is encoded a second time here, which is the
    double encoding the batch documentation asks for (``%24result%5B`` becomes
    ``%2524result%255B``).

    Args:
        data: The top-level parameters, e.g. ``{"halt": 0, "cmd": {...}}``.

    Returns:
        ``http_build_query(data)`` as ASCII bytes.
    """
    return http_build_query(data).encode("ascii")


# ----------------------------------------------------------------------------- decoding


class _Array(dict[Any, Any]):
    """A PHP array under construction: a dict plus PHP's ``nNextFreeElement``."""

    __slots__ = ("next_free",)

    def __init__(self) -> None:
        super().__init__()
        # None stands for ZEND_LONG_MIN: no integer key yet, so "[]" appends at 0.
        self.next_free: int | None = None

    def put(self, key: str | int, value: Any) -> None:
        # Updating an existing key keeps its position, as zend_hash_update does.
        self[key] = value
        if isinstance(key, int) and (self.next_free is None or key >= self.next_free):
            # PHP >= 8.3: a negative key moves the counter too ([-5 => x] then [] gives
            # -4).
            self.next_free = key + 1 if key < _LONG_MAX else _LONG_MAX

    def append(self, value: Any) -> bool:
        key = 0 if self.next_free is None else self.next_free
        if key in self:  # only at ZEND_LONG_MAX: zend_hash_next_index_insert fails
            return False
        self.put(key, value)
        return True


def _php_key(raw: bytes) -> str | int:
    if _NUMERIC_KEY.fullmatch(raw):
        number = int(raw)
        if _LONG_MIN <= number <= _LONG_MAX:
            return number
    return _to_text(raw)


def _register(
    top: _Array, name: bytes, value: str, max_nesting: int = _MAX_NESTING, strict: bool = False
) -> None:
    """Store one ``name=value`` pair the way php_register_variable_ex does.

    ``name`` is already URL-decoded; ``value`` is the decoded string. With `strict`, a name
    with more than `max_nesting` bracket groups raises `InputLimitError` instead of being
    dropped.
    """
    # The name is a C string: a decoded %00 ends it.
    name = name.split(b"\0", 1)[0].lstrip(b" ")
    open_at = name.find(b"[")
    head = name if open_at < 0 else name[:open_at]
    # Only the part before the first "[" is a PHP variable name, so only there are " "
    # and "." replaced with "_".
    head = head.replace(b" ", b"_").replace(b".", b"_")
    # PHP drops a variable whose name mangling alone produced a cookie-prefix
    # look-alike.
    for prefix in (b"__Host-", b"__Secure-"):
        if head.startswith(prefix) and not name.startswith(prefix):
            return
    if not head:  # an empty name, or one that starts with "["
        return
    if open_at < 0:
        top.put(_php_key(head), value)
        return

    table = top
    index: bytes | None = head  # None means "[]": append
    at = open_at  # position of the current "["
    level = 0
    while True:
        level += 1
        if level > max_nesting:
            if strict:
                raise InputLimitError(
                    "max_input_nesting_level",
                    max_nesting,
                    _to_text(name),
                    f"parameter {_to_text(name)[:80]!r} has more than {max_nesting} bracket"
                    f" groups: PHP's parse_str (max_input_nesting_level={max_nesting}) would"
                    f" drop the whole {_to_text(head)!r} parameter",
                )
            # Too deep: PHP removes the whole top-level variable, earlier values
            # included.
            top.pop(_php_key(head), None)
            return
        start = at + 1
        scan = start
        # One whitespace byte right after "[" is skipped when looking for "]", so "[ ]"
        # is an append like "[]"; "[ x]" still keeps the key " x".
        if scan < len(name) and name[scan] in _C_SPACE:
            scan += 1
        new_index: bytes | None
        if scan < len(name) and name[scan] == _CLOSE:
            new_index, close = None, scan
        else:
            close = name.find(b"]", scan)
            if close < 0:
                if level == 1:
                    # "a[b" is not an array: the "[" and any later " ", "." or "["
                    # become "_".
                    tail = name[start:].replace(b" ", b"_").replace(b".", b"_")
                    index = head + b"_" + tail.replace(b"[", b"_")
                # Deeper, the unclosed group is ignored and the value lands one level
                # up.
                break
            new_index = name[start:close]

        if index is None:
            child = _Array()
            if not table.append(child):
                return
        else:
            key = _php_key(index)
            existing = table.get(key)
            if isinstance(existing, _Array):
                child = existing
            else:  # absent, or a string: a later "[...]" replaces it with an array
                child = _Array()
                table.put(key, child)
        table = child
        index = new_index
        at = close + 1
        # Anything after "]" other than "[" ends the name: "a[b]c" is "a[b]".
        if at >= len(name) or name[at] != _OPEN:
            break

    if index is None:
        table.append(value)
    else:
        table.put(_php_key(index), value)


def _freeze(array: _Array) -> PhpArray:
    return {
        key: _freeze(value) if isinstance(value, _Array) else value
        for key, value in array.items()
    }


class InputLimitError(ValueError):
    """What PHP's input limits would silently drop (`parse_str` with ``strict=True``).

    `setting` is the php.ini setting (``max_input_vars`` or ``max_input_nesting_level``),
    `limit` its value, `name` the (decoded) parameter name where it was hit.
    """

    def __init__(self, setting: str, limit: int, name: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.limit = limit
        self.name = name


def parse_str(
    query: str,
    *,
    max_input_vars: int | None = None,
    max_nesting: int = _MAX_NESTING,
    strict: bool = False,
) -> PhpArray:
    """Parse a query string exactly as PHP 8's ``parse_str($query, $result)`` does.

    - Pieces are split on ``&``; empty pieces are skipped. Name and value split on the
      first ``=``; a piece without ``=`` has the value ``""``.
    - Both are URL-decoded: ``+`` is a space, ``%XX`` a byte, a malformed ``%`` stays.
    - The name loses leading spaces and ends at a decoded NUL. Before its first ``[``,
      ``.`` and `` `` become ``_``. An empty name, or one starting with ``[``, is
      skipped.
    - ``a[b][c]`` nests. ``[]`` (or ``[``, one whitespace, ``]``) appends at PHP's next
      free integer key. A first ``[`` with no ``]`` after it becomes ``_``, and so do
      any later `` ``, ``.`` and ``[``; deeper, an unclosed group is ignored. Anything
      after a ``]`` other than ``[`` is ignored.
    - Keys in canonical decimal form (``"0"``, ``"15"``, ``"-3"``, within 64 bits)
      become ints; ``"01"``, ``"-0"``, ``"1.0"``, ``" 1"`` stay strings.
    - A later value for the same key wins, in the earlier key's position. A string that
      is later indexed is replaced by an array; an array later given a string is
      replaced by it.
    - More than 64 bracket groups drop the whole top-level variable
      (``max_input_nesting_level``).

    Version notes: after ``a[-5]=x``, ``a[]=y`` gets the key ``-4`` (PHP >= 8.3; PHP
    8.0 to 8.2 give ``0``). A name that becomes ``__Host-`` or ``__Secure-`` only
    through the ``.``/`` `` mangling is dropped, as in current PHP 8 releases. Filters
    on the server (Bitrix's security module) are not modelled.

    Args:
        query: The query string, without a leading ``?``.
        max_input_vars: Stop after this many pieces, as PHP's ``max_input_vars`` does
            (1000 by default in php.ini; the cloud's value is unknown). None: no limit.
        max_nesting: PHP's ``max_input_nesting_level`` (64 by default), at most
            `MAX_SUPPORTED_NESTING`.
        strict: Raise `InputLimitError` where PHP would silently drop input (a piece past
            `max_input_vars`, a name nested deeper than `max_nesting`), instead of dropping.

    Returns:
        The PHP array as a dict. Values are strings or nested dicts; bytes that are
        not UTF-8 are kept as lone surrogates (``surrogateescape``).
    """
    if not 1 <= max_nesting <= MAX_SUPPORTED_NESTING:
        raise ValueError(f"max_nesting must be between 1 and {MAX_SUPPORTED_NESTING}")
    # PHP hands the C library a NUL-terminated copy: a raw NUL ends the query.
    raw = _to_bytes(query).split(b"\0", 1)[0]
    top = _Array()
    count = 0
    for piece in raw.split(b"&"):
        if not piece:
            continue
        count += 1
        name, has_value, value = piece.partition(b"=")
        if max_input_vars is not None and count > max_input_vars:
            if strict:
                pieces = sum(1 for p in raw.split(b"&") if p)
                raise InputLimitError(
                    "max_input_vars",
                    max_input_vars,
                    _to_text(_urldecode(name)),
                    f"{pieces:,} values, more than PHP's max_input_vars ({max_input_vars:,}):"
                    " the server would drop every value after the"
                    f" {max_input_vars:,}th",
                )
            break
        text = _to_text(_urldecode(value)) if has_value else ""
        _register(top, _urldecode(name), text, max_nesting, strict)
    return _freeze(top)


def normalize(data: Mapping[Any, Any]) -> PhpArray:
    """Return what the server sees after ``parse_str(http_build_query(data))``.

    This is the PHP view of Python data, without the text round trip: scalars become
    PHP strings (``True`` -> ``"1"``, ``2.0`` -> ``"2"``), lists become dicts with int
    keys, None and empty containers vanish, keys in canonical decimal form become ints,
    and names are read with `parse_str`'s rules (top-level ``.`` and `` `` -> ``_``,
    brackets inside keys, and so on). Each pair is registered as PHP registers it, so
    keys that collide after mangling merge.

    Args:
        data: The parameters, as for `http_build_query`.

    Returns:
        The PHP array `parse_str` would build from ``http_build_query(data)``.

    Raises:
        TypeError: As `http_build_query`.
        ValueError: As `http_build_query`.
    """
    top = _Array()
    for path, text in _leaves(data):
        groups = b"".join(b"[" + _to_bytes(part) + b"]" for part in path[1:])
        name = _to_bytes(path[0]) + groups
        # The value's bytes are what arrives; re-decoding normalises surrogate escapes.
        _register(top, name, _to_text(_to_bytes(text)))
    return _freeze(top)
