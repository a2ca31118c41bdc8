"""``$result[...]`` substitution inside a batch, as the server's ``CRestUtil`` does it.

The rules (semantics file §2): a token is ``$`` + a map name (case-insensitive) + the longest
run of non-whitespace after it; its path is every non-empty ``[...]`` group of that run; the
walk stops silently at the first missing or ``null`` key and keeps what it reached. A value that
*is* the token takes the reached value with its type; an embedded token is replaced (whole
token, trailing characters included) only by a string or a number. Keys are never touched.
"""

from __future__ import annotations

import re
from typing import Any

from .php import PhpKey, php_index, php_str

__all__ = ["BatchMaps", "substitute"]

# PCRE's \s without the /u flag: ASCII whitespace only (Python's \s would also eat U+00A0).
_NON_SPACE = r"[^ \t\n\r\f\v]*"
_PATH = re.compile(r"\[([^\]]+)\]")


class BatchMaps:
    """The per-batch maps references can name: result, next, total, time, error, ...

    After the first failure the server also keeps the error's other fields (such as
    ``error_description``) as maps of their own; they are added in the order first seen.
    """

    def __init__(self) -> None:
        self.maps: dict[str, dict[PhpKey, Any]] = {
            "result": {},
            "next": {},
            "total": {},
            "time": {},
            "error": {},
        }
        self._pattern: re.Pattern[str] | None = None

    def record_error(self, key: PhpKey, entry: dict[str, Any]) -> None:
        """Store a failed command's error entry (and its fields as maps of their own)."""
        self.maps["error"][key] = entry
        for field, value in entry.items():
            if field == "error":
                continue
            if field not in self.maps:
                self.maps[field] = {}
                self._pattern = None
            self.maps[field][key] = value

    def pattern(self) -> re.Pattern[str]:
        """The token regex: map names tried in insertion order, like PHP's alternation."""
        if self._pattern is None:
            names = "|".join(re.escape(name) for name in self.maps)
            self._pattern = re.compile(rf"\$({names})({_NON_SPACE})", re.IGNORECASE)
        return self._pattern


def substitute(params: Any, maps: BatchMaps) -> Any:
    """Apply substitution to every value of a parsed parameter structure."""
    if isinstance(params, dict):
        return {key: substitute(value, maps) for key, value in params.items()}
    if isinstance(params, str) and "$" in params:
        return _substitute_value(params, maps)
    return params


def _lookup_map(maps: BatchMaps, name: str) -> dict[PhpKey, Any]:
    found = maps.maps.get(name.lower())
    if found is None:  # a map whose name is not lowercase (an odd extra error field)
        for key, value in maps.maps.items():
            if key.lower() == name.lower():
                return value
        return {}
    return found


def _substitute_value(value: str, maps: BatchMaps) -> Any:
    query: Any = value
    for match in maps.pattern().finditer(value):
        path = _PATH.findall(match.group(2))
        if not path:
            continue  # a token without any [..] group is left alone
        reached: Any = _lookup_map(maps, match.group(1))
        for key in path:
            found, step = php_index(reached, key)
            if not found:
                break
            reached = step
        token = match.group(0)
        if not isinstance(query, str):
            break
        if query == token:
            query = reached  # whole value: keeps its type, arrays included
        elif isinstance(reached, str | int | float) and not isinstance(reached, bool):
            query = query.replace(token, php_str(reached))
        # embedded arrays, bools and null: the literal text stays
    return query
