"""When a failed HTTP call may be sent again, and how long to wait first (tenacity).

The rule is decided by what the server certainly did:

- **nothing ran** (connection refused, 503 ``QUERY_LIMIT_EXCEEDED``, 429 at top level, any
  other top-level 4xx JSON error): sending again cannot duplicate anything. Rate-limit answers
  are retried; other refusals are final.
- **one command refused inside a batch** (``OPERATION_TIME_LIMIT``, ``QUERY_LIMIT_EXCEEDED``;
  internal errors for reads): only that command is sent again, in a later request, with its
  key and references.
- **unknown** (read timeout, connection lost after sending, a 5xx or an HTML page): the batch
  may have run. It is sent again only when every command in it only reads (or the caller opted
  in with ``resend_unknown_writes=True``); otherwise its commands are reported as
  outcome-unknown and never sent again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import httpx

from ._errors import (
    APIError,
    AuthError,
    InvalidResponseError,
    OperationTimeLimitError,
    RateLimitError,
    RedirectError,
    TransportError,
    _NotSent,
)

__all__ = ["Ran", "RetryPolicy", "classify", "command_verdict"]

#: What the server did with a call that failed: ran nothing, or maybe ran it.
Ran = Literal["no", "unknown"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed calls are retried. All times are in seconds.

    Args:
        attempts: the most times one HTTP call is made (first try included).
        timeout: the most time spent retrying one call, waits included.
        wait_initial: the first backoff; it doubles on each retry ...
        wait_max: ... up to this cap.
        wait_jitter: a random 0..wait_jitter is added to each backoff.
        resend_unknown_writes: re-send a batch holding writes whose outcome is unknown.
            Off by default: that is how other clients duplicate data.
    """

    attempts: int = 8
    timeout: float = 900.0
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 0.5
    resend_unknown_writes: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.timeout, self.wait_initial, self.wait_max, self.wait_jitter) < 0:
            raise ValueError("retry times must not be negative")

    @classmethod
    def testing(cls, attempts: int = 3) -> RetryPolicy:
        """A policy for tests: same decisions, no backoff waits (server hints still apply)."""
        return cls(attempts=attempts, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)

    @classmethod
    def never(cls) -> RetryPolicy:
        """Make every call exactly once."""
        return cls(attempts=1)

    def backoff(self, retry_number: int) -> float:
        """The wait before retry `retry_number` (1 for the first retry), jitter included."""
        base = min(self.wait_max, self.wait_initial * 2.0 ** (retry_number - 1))
        return base + random.uniform(0.0, self.wait_jitter)


#: Per-command errors inside a batch that certainly ran nothing for that command.
REFUSED_COMMAND_CODES = frozenset({"OPERATION_TIME_LIMIT", "QUERY_LIMIT_EXCEEDED"})
#: Per-command errors that may come after the method did part of its work.
INTERNAL_COMMAND_CODES = frozenset({"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"})


def command_verdict(
    code: str, *, read: bool, policy: RetryPolicy
) -> Literal["retry", "failed", "unknown"]:
    """What to do with one command that failed inside a batch.

    Rate and operating-time refusals ran nothing and are sent again (``"retry"``). An internal
    error may have come after part of the work: a read is sent again, a write is reported as
    outcome-unknown (``"unknown"``) unless the caller opted in (`resend_unknown_writes`). Any
    other error is the command's own, final failure (``"failed"``).
    """
    code = code.upper()
    if code in REFUSED_COMMAND_CODES:
        return "retry"
    if code in INTERNAL_COMMAND_CODES:
        return "retry" if read or policy.resend_unknown_writes else "unknown"
    return "failed"


def classify(exc: BaseException) -> tuple[Ran, bool]:
    """Whether the server may have run a call that raised `exc`, and whether it is transient.

    Returns ``(ran, transient)``: `ran` is ``"no"`` when the server certainly ran nothing;
    `transient` says that trying again later may succeed.
    """
    if isinstance(exc, _NotSent):
        return "no", False
    if isinstance(exc, RateLimitError | OperationTimeLimitError):
        return "no", True
    if isinstance(exc, AuthError | RedirectError):
        # A redirect comes from the web server or a proxy, before the portal's code runs.
        return "no", False
    if isinstance(exc, APIError):
        # A top-level JSON error with a 4xx status means the method was refused before it ran.
        # A 5xx may come from a gateway after the script died half-way, and an error with a
        # success status (WRONG_ENCODING: the answer could not be encoded) comes after it ran.
        if exc.status_code >= 500:
            return "unknown", True
        if exc.status_code < 400:
            return "unknown", False
        return "no", False
    if isinstance(exc, InvalidResponseError):
        return "unknown", True
    if isinstance(exc, TransportError):
        # Ours wraps the httpx error that decides it.
        return classify(exc.__cause__) if exc.__cause__ is not None else ("unknown", True)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "no", True
    if isinstance(exc, httpx.TransportError):
        return "unknown", True
    return "unknown", False

