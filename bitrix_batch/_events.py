"""What a client reports while it works: small frozen records for an `on_event` hook.

The executor builds them; nothing here does I/O. Each is also written to the
``bitrix_batch`` logger (holds, releases and retries at INFO, requests and rate-limit waits
at DEBUG), and no field ever holds a secret: methods, counts, times and error codes only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Event",
    "EventHook",
    "MethodHeld",
    "MethodReleased",
    "RateLimitWaited",
    "RequestAnswered",
    "RequestFailed",
    "RequestSent",
    "RetryScheduled",
]


@dataclass(frozen=True, slots=True)
class RequestSent:
    """An HTTP request is about to go on the wire (each attempt is one)."""

    method: str
    #: Commands it carries: a batch's sub-requests, 1 for a direct call.
    commands: int
    attempt: int


@dataclass(frozen=True, slots=True)
class RequestAnswered:
    """The server answered a request (whatever the status)."""

    method: str
    status: int
    #: Seconds from sending to the whole answer.
    seconds: float
    #: The API error code of a refused call (``QUERY_LIMIT_EXCEEDED``...), else None.
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A request got no answer: a connection error or a timeout."""

    method: str
    #: The error's type and message, secrets removed.
    error: str


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A failed call will be tried again after `delay` seconds."""

    method: str
    #: The attempt that failed (1 for the first).
    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class MethodHeld:
    """A method's commands wait: it is over (or near) its operating-time budget.

    `until` is wall-clock Unix time, to show to people ("held until 14:05:10").
    """

    method: str
    until: float
    #: ``"near the operating-time limit"`` or ``"refused: operating-time limit"``.
    reason: str


@dataclass(frozen=True, slots=True)
class MethodReleased:
    """A held method may be sent again."""

    method: str


@dataclass(frozen=True, slots=True)
class RateLimitWaited:
    """A request waited for room in the rate limiter's bucket before it went out."""

    seconds: float


#: Everything an `on_event` hook may receive.
Event = (
    RequestSent
    | RequestAnswered
    | RequestFailed
    | RetryScheduled
    | MethodHeld
    | MethodReleased
    | RateLimitWaited
)

#: Called with each event, in the event loop's thread; it should return quickly.
EventHook = Callable[[Event], None]
