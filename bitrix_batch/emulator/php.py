"""PHP semantics the server gets for free and the emulator must rebuild by hand.

Written from PHP's documented rules (``parse_str``, ``parse_url``, array keys, truthiness,
``json_encode``), independently of the client's encoder, so that a bug shared by both sides
cannot hide. PHP arrays are represented as Python ``dict`` objects whose keys are ``int`` or
``str`` exactly as PHP would normalise them; values produced by methods may also be Python
``list`` objects, which behave like PHP lists.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "PhpKey",
    "append_key",
    "json_to_php",
    "php_encode_json",
    "php_index",
    "php_intval",
    "php_key",
    "php_shape",
    "php_str",
    "php_truthy",
    "php_values",
    "parse_str",
    "parse_url_path_query",
    "register_variable",
    "url_decode",
]

PhpKey = int | str

_INT_KEY = re.compile(r"(?:0|-?[1-9][0-9]*)\Z")
_PHP_INT_MAX = 2**63 - 1


def php_key(key: object) -> PhpKey:
    """Normalise an array key the way PHP does: canonical decimal strings become ints."""
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    if isinstance(key, float):
        return int(key)
    text = str(key)
    if _INT_KEY.match(text):
        value = int(text)
        # "-0" never matches; out-of-range numbers stay strings, as in PHP.
        if -_PHP_INT_MAX - 1 <= value <= _PHP_INT_MAX:
            return value
    return text


def append_key(array: Mapping[PhpKey, Any]) -> int:
    """The key ``$array[] = ...`` would use (PHP >= 8.3: max int key + 1, else 0)."""
    ints = [k for k in array if isinstance(k, int)]
    return max(ints) + 1 if ints else 0


def url_decode(text: str) -> str:
    """PHP ``urldecode``: ``+`` is a space, ``%XX`` a byte, a stray ``%`` stays literal."""
    if "%" not in text and "+" not in text and text.isascii():
        return text
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x2B:  # '+'
            out.append(0x20)
            i += 1
        elif c == 0x25 and i + 2 < n and _is_hex(raw[i + 1]) and _is_hex(raw[i + 2]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    # Invalid UTF-8 is kept as U+FFFD: the JSON layer substitutes it the same way anyway.
    return out.decode("utf-8", "replace")


def _is_hex(byte: int) -> bool:
    return byte in b"0123456789abcdefABCDEF"


def parse_str(query: str, max_input_vars: int = 1000) -> dict[PhpKey, Any]:
    """PHP ``parse_str``: build nested arrays from a query string.

    ``a[b][c]=v`` nests, ``a[]=v`` appends, a repeated key keeps the last value, dots and
    spaces in the top-level name become ``_``, an unclosed ``[`` becomes ``_``. Variables past
    ``max_input_vars`` are dropped (PHP warns and stops).
    """
    result: dict[PhpKey, Any] = {}
    count = 0
    for piece in query.split("&"):
        if not piece:
            continue
        count += 1
        if count > max_input_vars:
            break
        name, sep, value = piece.partition("=")
        register_variable(result, url_decode(name), url_decode(value) if sep else "")
    return result


def register_variable(target: dict[PhpKey, Any], name: str, value: str) -> None:
    """PHP's ``php_register_variable_ex``: store one decoded ``name=value`` pair."""
    name = name.lstrip(" ")
    if "\0" in name:
        name = name.split("\0", 1)[0]
    bracket = name.find("[")
    head = name if bracket < 0 else name[:bracket]
    head = head.replace(" ", "_").replace(".", "_")
    if not head:
        return
    if bracket < 0:
        target[php_key(head)] = value
        return
    # Walk the [..] groups. ``rest`` starts just after an opening bracket.
    indexes: list[str | None] = []
    rest = name[bracket + 1 :]
    while True:
        probe = rest[1:] if rest.startswith(" ") else rest
        if probe.startswith("]"):
            indexes.append(None)
            rest = probe[1:]
        else:
            close = probe.find("]")
            if close < 0:
                if not indexes:
                    # Not an array after all: the '[' and the rest join the name.
                    tail = rest.replace(" ", "_").replace(".", "_").replace("[", "_")
                    target[php_key(head + "_" + tail)] = value
                    return
                # A later unclosed group is ignored (the name was cut at the prior ']').
                break
            # The leading space skipped by ``probe`` still belongs to the key.
            indexes.append(rest[: len(rest) - len(probe) + close])
            rest = probe[close + 1 :]
        if not rest.startswith("["):
            break
        rest = rest[1:]
    container = target
    key: PhpKey | None = php_key(head)
    for index in indexes:
        if key is None:
            key = append_key(container)
            container[key] = {}
        elif not isinstance(container.get(key), dict):
            container[key] = {}
        container = container[key]
        key = None if index is None else php_key(index)
    if key is None:
        key = append_key(container)
    container[key] = value


def parse_url_path_query(command: str) -> tuple[str, str | None]:
    """The path and query ``parse_url`` finds in a batch command string.

    A ``#`` starts the fragment and everything after it is lost; the query is what follows
    the first ``?``; ``None`` means there was no ``?`` at all.
    """
    command = command.split("#", 1)[0]
    path, sep, query = command.partition("?")
    return path, (query if sep else None)


def php_truthy(value: object) -> bool:
    """PHP truthiness: ``"0"``, ``""``, ``0``, ``0.0``, ``null``, ``[]``, false are false."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, dict | list):
        return bool(value)
    return True


def php_intval(value: object) -> int:
    """PHP ``intval``: leading integer of a string, 0 when there is none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _clamp_int(value)
    if isinstance(value, float):
        return _clamp_int(int(value)) if math.isfinite(value) else 0
    if isinstance(value, str):
        match = re.match(r"\s*([+-]?\d+)", value)
        # A numeric string past the 64-bit range saturates, as in PHP 7+.
        return _clamp_int(int(match.group(1))) if match else 0
    if isinstance(value, dict | list):
        return 1 if value else 0
    return 0


PHP_INT_MAX = 2**63 - 1


def _clamp_int(value: int) -> int:
    return max(-PHP_INT_MAX - 1, min(PHP_INT_MAX, value))


def php_str(value: object) -> str:
    """PHP string conversion of a scalar, as used when a number is spliced into text."""
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    if isinstance(value, float):
        # PHP casts a double to string with `precision` = 14 significant digits, in
        # exponent form as "1.0E+15" (a mantissa with a dot, no padding in the exponent).
        text = f"{value:.14G}"
        if "E" in text:
            mantissa, exp = text.split("E")
            if "." not in mantissa:
                mantissa += ".0"
            text = f"{mantissa}E{exp[0]}{exp[1:].lstrip('0') or '0'}"
        return text
    return str(value)


def php_values(value: object) -> list[Any]:
    """The values of a PHP array (dict or list) in order; a scalar is a one-element list."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return [value]


def php_index(container: object, key: str) -> tuple[bool, Any]:
    """``isset($container[$key])`` and the value: the step the server's path walk takes."""
    if isinstance(container, dict):
        normal = php_key(key)
        if normal in container:
            found = container[normal]
        elif str(normal) in container:
            found = container[str(normal)]
        else:
            return False, None
        return found is not None, found
    if isinstance(container, list):
        normal = php_key(key)
        if isinstance(normal, int) and 0 <= normal < len(container):
            found = container[normal]
            return found is not None, found
        return False, None
    if isinstance(container, str) and _INT_KEY.match(key):
        # A string offset gives one byte of the string (PHP strings are byte strings).
        raw = container.encode("utf-8")
        offset = int(key)
        if -len(raw) <= offset < len(raw):
            return True, bytes([raw[offset]]).decode("utf-8", "replace")
    return False, None


def json_to_php(value: Any) -> Any:
    """Turn ``json.loads`` output into PHP arrays: lists and objects become dicts."""
    if isinstance(value, list):
        return {i: json_to_php(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        out: dict[PhpKey, Any] = {}
        for k, v in value.items():
            out[php_key(k)] = json_to_php(v)
        return out
    return value


def php_shape(value: Any) -> Any:
    """Shape a value as ``json_encode`` sees the PHP array it stands for.

    An empty array is ``[]``; keys exactly ``0..n-1`` in order give a list; anything else an
    object with string keys.
    """
    if isinstance(value, dict):
        if not value:
            return []
        first = next(iter(value))
        if type(first) is str and first != "0":
            # Not a list (that starts at key 0), and a text key is its own PHP spelling
            # (str(php_key(k)) == k for text): the common record needs no key work at all.
            return {
                (k if type(k) is str else str(php_key(k))): (
                    v if type(v) in _LEAVES else php_shape(v)
                )
                for k, v in value.items()
            }
        keys = [php_key(k) for k in value]
        if keys == list(range(len(keys))):
            return [v if type(v) in _LEAVES else php_shape(v) for v in value.values()]
        return {
            str(k): v if type(v) in _LEAVES else php_shape(v)
            for k, v in zip(keys, value.values(), strict=True)
        }
    if isinstance(value, list | tuple):
        return [v if type(v) in _LEAVES else php_shape(v) for v in value]
    return value


#: Types `php_shape` passes through as they are (checked by exact type: it runs per value).
_LEAVES = frozenset({str, int, float, bool, type(None)})


_HEX_ESCAPES = {
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "'": "\\u0027",
    "/": "\\/",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_HEX_PAIRS = tuple(_HEX_ESCAPES.items())
_QUOTE_RE = re.compile(r'(\\+)"')


def _quote_escape(match: re.Match[str]) -> str:
    slashes = match.group(1)
    if len(slashes) % 2:  # the last backslash escapes the quote: PHP writes \u0022 instead
        return slashes[:-1] + "\\u0022"
    return match.group(0)


def php_encode_json(value: Any, hex_escapes: bool = True) -> str:
    """``json_encode`` with Bitrix's flags (HEX_TAG|AMP|APOS|QUOT, unescaped unicode).

    ``/`` is escaped as ``\\/`` because the flags do not include JSON_UNESCAPED_SLASHES.
    """
    text = json.dumps(php_shape(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not hex_escapes:
        return text
    # These characters only ever occur inside strings, so a global pass is safe. One
    # str.replace per character is a C scan; much faster than a regex with a callback.
    for char, escape in _HEX_PAIRS:
        if char in text:
            text = text.replace(char, escape)
    if '\\"' in text:
        text = _QUOTE_RE.sub(_quote_escape, text)
    return text
