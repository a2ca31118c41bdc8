"""What a failed connection says about the address it was made to.

Kept apart from `_retry` (which is pure): telling a name that does not resolve from a busy
network needs the socket module's error types.
"""

from __future__ import annotations

import socket

__all__ = ["wrong_address"]


def wrong_address(exc: BaseException) -> str | None:
    """What to check when a connection failed for good, or None if it may be transient.

    A host name that does not resolve, or a port where nothing listens, will not come right
    by retrying: the job should stop within seconds and say which address to check. (A
    connection that times out may be a busy network and is retried.)
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:  # the chain of causes, and the members of groups (trio tries each address)
        cause = todo.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return "the portal's host name does not resolve: check the URL's domain"
        if isinstance(cause, ConnectionRefusedError):
            return "nothing listens at the portal's address: check the URL's host and port"
        if isinstance(cause, BaseExceptionGroup):
            todo.extend(cause.exceptions)
        todo.extend(c for c in (cause.__cause__, cause.__context__) if c is not None)
    return None
