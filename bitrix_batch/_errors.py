"""Every exception bitrix_batch raises, in one tree.

This module performs no I/O.

    BitrixBatchError
    ├── PlanError (also ValueError)       the input cannot be planned; raised before any request
    │   ├── InvalidCommandError           malformed command string, forbidden method, bad params
    │   ├── DuplicateKeyError             two commands share a key
    │   ├── UnknownReferenceError         a reference names a key that is not in the list
    │   ├── InvalidReferenceError         a reference the server would mangle (see README)
    │   └── DependencyCycleError          references form a cycle (`.cycle` names it)
    ├── TransportError                    no usable HTTP response (connect error, timeout)
    ├── EventLoopChangedError             a caller's httpx client used from a second event loop
    ├── JournalError                      a journal does not fit the job, or cannot be written
    ├── InvalidResponseError              a response that is not Bitrix24 JSON (an HTML page)
    ├── APIError                          the server refused a whole call (`.status_code`, `.code`)
    │   ├── RateLimitError                503 QUERY_LIMIT_EXCEEDED
    │   ├── OperationTimeLimitError       429 OPERATION_TIME_LIMIT
    │   ├── RedirectError                 301/302/307/308: the portal lives elsewhere; nothing ran
    │   └── AuthError                     401: bad webhook, expired or invalid token, scope
    ├── ClientClosedError (RuntimeError)  a SyncBitrixClient used after close()
    ├── CommandError                      one command failed inside a batch (stored as data)
    ├── OutcomeUnknownError               a write may or may not have run; it is not re-sent
    └── CommandErrors                     raised by BatchResult.raise_for_errors()

Messages are built from structured attributes and name the command key and method where there
is one. No message ever carries the webhook code or a token: the client redacts them before an
exception is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import Key

__all__ = [
    "APIError",
    "AuthError",
    "BitrixBatchError",
    "ClientClosedError",
    "CommandError",
    "CommandErrors",
    "DependencyCycleError",
    "DuplicateKeyError",
    "EventLoopChangedError",
    "InvalidCommandError",
    "InvalidReferenceError",
    "InvalidResponseError",
    "InvalidStreamItemError",
    "JournalError",
    "OperationTimeLimitError",
    "OutcomeUnknownError",
    "PlanError",
    "RateLimitError",
    "RedirectError",
    "TransportError",
    "UnknownReferenceError",
]


class BitrixBatchError(Exception):
    """The base of every exception raised by bitrix_batch.

    `attempts`, on an error raised from an HTTP call (`TransportError`, `InvalidResponseError`,
    `APIError` and its kinds), is how many times that call was made, retries included; it is 0
    on every other error: bad input, a journal, a closed client, and the per-command errors
    stored in results (`CommandError`, `OutcomeUnknownError`). `may_have_run` is true when one
    of those attempts may have reached the server and run.
    """

    attempts: int = 0
    may_have_run: bool = False


class _NotSent(BitrixBatchError):
    """Strictly private: a call stopped before it went on the wire (never raised to callers)."""


# --- the caller's input ---------------------------------------------------------------------


class PlanError(BitrixBatchError, ValueError):
    """The command list cannot be planned. Raised before any request is sent."""


class InvalidCommandError(PlanError):
    """A command is malformed: bad string form, forbidden method, parameters of a wrong type."""

    def __init__(self, key: Key | None, method: str | None, reason: str) -> None:
        self.key = key
        self.method = method
        self.reason = reason
        super().__init__(f"{_where(key, method)}: {reason}")


class InvalidStreamItemError(InvalidCommandError):
    """An item of a stream is not a ``(key, command)`` pair with a str or int key.

    Its outcome is reported under its position in the stream (`position`); `BatchResult` keeps
    it in `rejected`, since that number may also be a real command's key.
    """

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(None, None, f"stream item #{position}: {reason}")
        self.position = position


class DuplicateKeyError(PlanError):
    """Two commands share one key (keys compare as strings, as on the server)."""

    def __init__(self, key: Key) -> None:
        self.key = key
        super().__init__(f"duplicate command key {key!r}")


class UnknownReferenceError(PlanError):
    """A reference names a command key that is not in the list."""

    def __init__(self, key: Key, method: str, target: str, detail: str = "") -> None:
        self.key = key
        self.method = method
        self.target = target
        super().__init__(
            f"{_where(key, method)} refers to unknown command {target!r}{detail}"
        )


class InvalidReferenceError(PlanError):
    """A reference is written so that the server would silently mangle it."""

    def __init__(self, key: Key, method: str, token: str, reason: str) -> None:
        self.key = key
        self.method = method
        self.token = token
        self.reason = reason
        super().__init__(f"{_where(key, method)}: reference {token!r} {reason}")


class DependencyCycleError(PlanError):
    """References form a cycle; `.cycle` lists the keys, each referring to the next."""

    def __init__(self, cycle: Sequence[Key]) -> None:
        self.cycle = list(cycle)
        path = " -> ".join(repr(k) for k in self.cycle)
        super().__init__(f"dependency cycle: {path}")


# --- the transport and the server -----------------------------------------------------------


class TransportError(BitrixBatchError):
    """No usable HTTP response: the connection failed or timed out (after any retries)."""

    attempts = 1  # an HTTP call is behind it (the client sets the real count)

    def __init__(self, message: str, *, method: str | None = None) -> None:
        self.method = method
        super().__init__(message if method is None else f"{method}: {message}")


class EventLoopChangedError(BitrixBatchError, RuntimeError):
    """The client was used in one event loop and then in another, with an `httpx.AsyncClient`
    of the caller's, whose connections cannot move between loops."""


class JournalError(BitrixBatchError):
    """A journal belongs to another job (a key's method differs) or cannot be written."""


class InvalidResponseError(BitrixBatchError):
    """The server answered with something that is not Bitrix24 JSON, e.g. an HTML error page."""

    attempts = 1  # an HTTP call is behind it (the client sets the real count)

    def __init__(
        self, status_code: int, reason: str, *, method: str | None = None, body: str = ""
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.reason = reason
        self.body = body[:500]
        where = f"{method}: " if method else ""
        super().__init__(f"{where}HTTP {status_code}: {reason}")


class APIError(BitrixBatchError):
    """The server refused a whole call with a top-level error.

    `.code` is the stable thing to match on (e.g. ``"ERROR_METHOD_NOT_FOUND"``); it may be the
    empty string, which legacy Bitrix24 methods use.
    """

    attempts = 1  # an HTTP call is behind it (the client sets the real count)

    def __init__(
        self,
        status_code: int,
        code: str,
        description: str = "",
        *,
        method: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.description = description
        self.method = method
        self.extra = dict(extra or {})
        where = f"{method}: " if method else ""
        text = f": {description}" if description else ""
        super().__init__(f"{where}HTTP {status_code} {code or '(no code)'}{text}")


class RateLimitError(APIError):
    """503 ``QUERY_LIMIT_EXCEEDED``: the portal's request bucket is full. Nothing ran."""


class OperationTimeLimitError(APIError):
    """429 ``OPERATION_TIME_LIMIT``: one method used up its operating time. Nothing ran."""


class RedirectError(APIError):
    """301, 302, 307 or 308: the portal answers from another URL; the call ran nothing.

    Not followed: a redirected POST may turn into a GET, and the webhook code would go to
    wherever the redirect points. `.location` is where it points, scheme and host only
    (``https://portal.example``), with any secret masked; `.code` is ``"REDIRECT"``.
    """

    def __init__(self, status_code: int, location: str, *, method: str | None = None) -> None:
        self.location = location
        where = location or "an unnamed place"
        super().__init__(
            status_code,
            "REDIRECT",
            f"the portal redirects to {where}: use that URL",
            method=method,
            extra={"location": location},
        )


class AuthError(APIError):
    """401: the webhook or token is not accepted (or lacks the scope)."""


# --- per-command outcomes -------------------------------------------------------------------


class CommandError(BitrixBatchError):
    """One command failed inside a batch.

    Normally stored as data in `BatchResult.result_error`; raised only through
    `BatchResult.raise_for_errors()` (inside `CommandErrors`) or by `BitrixClient.call`.
    """

    def __init__(
        self,
        key: Key,
        method: str,
        code: str,
        description: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.key = key
        self.method = method
        self.code = code
        self.description = description
        self.extra = dict(extra or {})
        text = f": {description}" if description else ""
        super().__init__(f"{_where(key, method)} failed: {code or '(no code)'}{text}")

    def as_dict(self) -> dict[str, Any]:
        """The error in the server's own shape: ``{"error": ..., "error_description": ...}``."""
        return {"error": self.code, "error_description": self.description, **self.extra}


class OutcomeUnknownError(BitrixBatchError):
    """A command that writes was sent, but whether it ran is unknown; it is not re-sent."""

    def __init__(self, key: Key, method: str, reason: str) -> None:
        self.key = key
        self.method = method
        self.reason = reason
        super().__init__(f"{_where(key, method)}: outcome unknown ({reason})")


class CommandErrors(BitrixBatchError):
    """Raised by `BatchResult.raise_for_errors()`: some commands failed or never ran.

    `.errors` maps each failed command's key to its `CommandError`; `.not_run` maps each
    command that was never sent (or whose outcome is unknown) to the reason.
    """

    def __init__(
        self,
        errors: Mapping[Key, CommandError],
        not_run: Mapping[Key, Any] | None = None,
    ) -> None:
        self.errors = dict(errors)
        self.not_run = dict(not_run or {})
        parts = [str(e) for e in list(self.errors.values())[:3]]
        parts += [str(n) for n in list(self.not_run.values())[: max(0, 3 - len(parts))]]
        more = len(self.errors) + len(self.not_run) - len(parts)
        tail = f" (+{more} more)" if more > 0 else ""
        super().__init__(
            f"{len(self.errors)} command(s) failed, {len(self.not_run)} not run: "
            + "; ".join(parts)
            + tail
        )


def _where(key: Key | None, method: str | None) -> str:
    if key is None:
        return f"command {method!r}" if method else "command"
    return f"command {key!r} ({method})" if method else f"command {key!r}"


# --- the sync facade ------------------------------------------------------------------------


class ClientClosedError(BitrixBatchError, RuntimeError):
    """A `SyncBitrixClient` (or one of its streams) was used after it was closed."""


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception a printed traceback of it shows, each once: its causes and
    contexts, and the members of exception groups (trio tries each address in one)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        todo.extend(c for c in (node.__cause__, node.__context__) if c is not None)
        if isinstance(node, BaseExceptionGroup):
            todo.extend(node.exceptions)
