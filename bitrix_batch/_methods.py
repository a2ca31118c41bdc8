"""Which REST methods only read. This module performs no I/O.

The answer decides two safety rules: a command that reads may share an HTTP request with the
command it depends on (if the dependency fails, its result is thrown away; nothing was
changed), and a read may be re-sent when a request's outcome is unknown. Everything else is
treated as a write. A wrong "read" answer can duplicate data, so the default list is short and
callers extend it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_READ_ACTIONS", "DEFAULT_READ_METHODS", "MethodPolicy"]

#: Last name segments (lower case) that mean "read" across Bitrix24's REST API.
DEFAULT_READ_ACTIONS = frozenset(
    {"get", "list", "fields", "search", "current", "getlist", "getfields", "count"}
)

#: Whole method names (lower case) that read but do not follow the naming pattern.
DEFAULT_READ_METHODS = frozenset(
    {"profile", "app.info", "scope", "methods", "method.get", "server.time", "user.access"}
)


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """Classifies methods as reads (safe to repeat, safe to co-locate) or writes.

    Args:
        reads: extra method names (any case) that only read.
        writes: method names (any case) to treat as writes even if their name looks like a read.
        is_read: a predicate that replaces the built-in rule entirely.
    """

    reads: frozenset[str] = field(default_factory=frozenset)
    writes: frozenset[str] = field(default_factory=frozenset)
    is_read: Callable[[str], bool] | None = None

    @classmethod
    def of(
        cls,
        *,
        reads: Iterable[str] = (),
        writes: Iterable[str] = (),
        is_read: Callable[[str], bool] | None = None,
    ) -> MethodPolicy:
        """Build a policy from any iterables of method names."""
        return cls(
            frozenset(m.lower() for m in reads),
            frozenset(m.lower() for m in writes),
            is_read,
        )

    def reads_only(self, method: str) -> bool:
        """True when `method` only reads data (and so may be repeated safely)."""
        if self.is_read is not None:
            return self.is_read(method)
        name = method.lower()
        if name in self.writes:
            return False
        if name in self.reads or name in DEFAULT_READ_METHODS:
            return True
        return name.rsplit(".", 1)[-1] in DEFAULT_READ_ACTIONS
