"""What a failed connection says about the address it was made to.

Kept apart from `_retry` (which is pure): telling a name that does not resolve from a busy
network needs the socket module's error types.
"""

from __future__ import annotations

import errno
import socket

import httpx

from ._errors import exception_chain

__all__ = ["never_reached", "wrong_address"]

#: A route to the host does not exist: nothing on the way will make it appear by retrying.
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})


def wrong_address(exc: BaseException) -> str | None:
    """What to check when a connection failed for good, or None if it may be transient.

    A host name that does not resolve, or a port where nothing listens, will not come right
    by retrying: the job should stop within seconds and say which address to check. (A
    connection that times out may be a busy network and is retried.)
    """
    for cause in exception_chain(exc):
        if isinstance(cause, socket.gaierror):
            return "the portal's host name does not resolve: check the URL's domain"
        if isinstance(cause, ConnectionRefusedError):
            return "nothing listens at the portal's address: check the URL's host and port"
        if isinstance(cause, OSError) and cause.errno in _NO_ROUTE:
            return "there is no route to the portal's host: check the URL's host"
    return None


def never_reached(exc: BaseException) -> bool:
    """Whether `exc` is a connection that timed out before any answer (``ConnectTimeout``).

    From a client that has never had an answer from its portal, a second one in a row means an
    address that swallows packets (a wrong or unroutable host, a firewall), not a busy network.
    """
    return any(isinstance(node, httpx.ConnectTimeout) for node in exception_chain(exc))
