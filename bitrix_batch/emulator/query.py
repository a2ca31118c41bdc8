"""Bitrix list parameters (``filter``, ``order``) translated to SQLite.

Filter keys carry an operator prefix: ``=``/none (equal, or IN for an array), ``!``/``!=``,
``>``, ``>=``, ``<``, ``<=``, ``@`` (in), ``!@`` (not in), ``%`` (contains), ``=%``/``%=``
(LIKE with the caller's own wildcards), ``!%``, ``><``/``!><`` (between), ``?`` (contains).
Unknown fields are ignored, as legacy list methods do. ``LOGIC`` (``AND``/``OR``) joins the
conditions of its level; a value that is an array under a key that is not a field (``0``,
``"__inner"``) is a sub-filter with its own ``LOGIC``, nested as deep as the caller likes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .php import php_intval, php_str, php_values

__all__ = ["Column", "build_order", "build_where"]

_OPERATOR = re.compile(r"(!><|><|!=|!@|!%|>=|<=|=%|%=|!|=|>|<|@|%|\?)?(.*)\Z", re.DOTALL)


class Column:
    """A filterable column: its SQL expression and how to coerce a filter value."""

    def __init__(
        self, sql: str, kind: str = "TEXT", multifield: bool = False, multiple: bool = False
    ) -> None:
        self.sql = sql
        self.kind = kind
        #: PHONE/EMAIL/...: a JSON list of entries, compared by their VALUE.
        self.multifield = multifield
        #: A multiple user field: a JSON list of values, any of which may match.
        self.multiple = multiple

    def coerce(self, value: Any) -> Any:
        """The value as the column compares it."""
        if self.kind == "INTEGER":
            return php_intval(value)
        if self.kind == "REAL":
            try:
                return float(php_str(value))
            except ValueError:
                return 0.0
        if self.kind == "BOOL":
            return 1 if php_str(value).upper() in ("Y", "1", "TRUE") else 0
        return php_str(value)


Resolver = Callable[[str], Column | None]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: How deep sub-filters may nest (PHP's own input nesting stops far earlier).
_MAX_DEPTH = 32


def build_where(filter_: Any, resolve: Resolver) -> tuple[str, list[Any]]:
    """A WHERE clause and its arguments for a Bitrix filter (a PHP array)."""
    args: list[Any] = []
    return _level(filter_, resolve, args, 0) or "1", args


def _level(filter_: Any, resolve: Resolver, args: list[Any], depth: int) -> str | None:
    """One level of a filter: its conditions joined by its LOGIC (None when it has none)."""
    if not isinstance(filter_, dict) or depth > _MAX_DEPTH:
        return None
    logic = "AND"
    clauses: list[str] = []
    for raw_key, value in filter_.items():
        key = str(raw_key)
        if key.upper() == "LOGIC":
            logic = "OR" if php_str(value).strip().upper() == "OR" else "AND"
            continue
        match = _OPERATOR.match(key)
        assert match is not None  # the pattern matches any string
        op = match.group(1) or "="
        column = resolve(match.group(2)) if isinstance(raw_key, str) else None
        if column is None:
            if isinstance(value, dict):
                inner = _level(value, resolve, args, depth + 1)
                if inner:
                    clauses.append(f"({inner})")
            continue
        clause = _clause(column, op, value, args)
        if clause:
            clauses.append(clause)
    if not clauses:
        return None
    return f" {logic} ".join(clauses)


def _clause(column: Column, op: str, value: Any, args: list[Any]) -> str | None:
    col = column.sql
    if column.multifield:
        # PHONE/EMAIL: match any entry's VALUE.
        values = [php_str(v) for v in php_values(value)]
        if not values:
            return "0"
        args.extend(values)
        inner = (
            f"EXISTS (SELECT 1 FROM json_each({col}) "
            f"WHERE json_extract(value, '$.VALUE') IN ({', '.join('?' * len(values))}))"
        )
        return f"NOT {inner}" if op.startswith("!") else inner
    if column.multiple:
        items = [column.coerce(v) for v in php_values(value)]
        if not items:
            return "0"
        args.extend(items)
        inner = (
            f"EXISTS (SELECT 1 FROM json_each({col}) "
            f"WHERE value IN ({', '.join('?' * len(items))}))"
        )
        return f"NOT {inner}" if op.startswith("!") else inner
    is_array = isinstance(value, dict | list)
    if op in ("=", "@"):
        if is_array or op == "@":
            items = [column.coerce(v) for v in php_values(value)]
            if not items:
                return "0"
            args.extend(items)
            return f"{col} IN ({', '.join('?' * len(items))})"
        if value is None or value == "":
            return f"({col} IS NULL OR {col} = '')"
        args.append(column.coerce(value))
        return f"{col} = ?"
    if op in ("!", "!=", "!@"):
        if is_array or op == "!@":
            items = [column.coerce(v) for v in php_values(value)]
            if not items:
                return None
            args.extend(items)
            return f"({col} IS NULL OR {col} NOT IN ({', '.join('?' * len(items))}))"
        if value is None or value == "":
            return f"({col} IS NOT NULL AND {col} <> '')"
        args.append(column.coerce(value))
        return f"({col} IS NULL OR {col} <> ?)"
    if op in (">", ">=", "<", "<="):
        if is_array:
            return None
        args.append(column.coerce(value))
        return f"{col} {op} ?"
    if op in ("%", "?", "!%"):
        args.append("%" + _like_escape(php_str(value)) + "%")
        negate = "NOT " if op == "!%" else ""
        return f"{col} {negate}LIKE ? ESCAPE '\\'"
    if op in ("=%", "%="):
        args.append(php_str(value))
        return f"{col} LIKE ?"
    if op in ("><", "!><"):
        bounds = php_values(value)
        if len(bounds) < 2:
            return None
        args.extend([column.coerce(bounds[0]), column.coerce(bounds[1])])
        negate = "NOT " if op == "!><" else ""
        return f"{col} {negate}BETWEEN ? AND ?"
    return None


def build_order(order: Any, resolve: Resolver) -> str:
    """An ORDER BY clause; ID ASC is always the final tie-breaker (stable paging)."""
    parts: list[str] = []
    has_id = False
    if isinstance(order, dict):
        for key, direction in order.items():
            column = resolve(str(key))
            if column is None or column.multifield or column.multiple:
                continue
            desc = php_str(direction).strip().upper() == "DESC"
            parts.append(f"{column.sql} {'DESC' if desc else 'ASC'}")
            has_id = has_id or column.sql == '"ID"'
    if not has_id:
        parts.append('"ID" ASC')
    return ", ".join(parts)
