"""bitrix_batch: any-length Bitrix24 REST ``batch`` with a DAG scheduler.

Give `BitrixClient.batch` any number of commands, with ``$result[...]`` references anywhere in
them; it splits them into requests of at most 50, resolves references across requests with the
server's own rules, never sends a command whose input failed, runs independent requests at once
within Bitrix24's rate limits, and returns the results in the familiar batch shape.

The local Bitrix24 emulator lives in `bitrix_batch.emulator` and is not imported here.
"""

from __future__ import annotations

from ._client import BitrixClient, CallResult, CommandStream
from ._commands import Command, CommandInput, CommandList, ServerLimits
from ._errors import (
    APIError,
    AuthError,
    BitrixBatchError,
    ClientClosedError,
    CommandError,
    CommandErrors,
    DependencyCycleError,
    DuplicateKeyError,
    EventLoopChangedError,
    InvalidCommandError,
    InvalidReferenceError,
    InvalidResponseError,
    JournalError,
    OperationTimeLimitError,
    OutcomeUnknownError,
    PlanError,
    RateLimitError,
    RedirectError,
    TransportError,
    UnknownReferenceError,
)
from ._events import (
    Event,
    EventHook,
    MethodHeld,
    MethodReleased,
    RateLimitWaited,
    RequestAnswered,
    RequestFailed,
    RequestSent,
    RetryScheduled,
)
from ._lists import FoundRows, ListExport, ListShape
from ._methods import MethodPolicy
from ._oauth import OAuth, OAuthTokens
from ._planner import MAX_BATCH, Plan
from ._record import Recorder
from ._refs import Literal, Ref
from ._result import BatchResult, CommandResult, CommandTime, Skip, SkipReason, Status
from ._retry import RetryPolicy
from ._throttle import LeakyBucket, OperatingBudget, RateLimit, RateLimiter
from ._version import __version__
from .sync import SyncBitrixClient

__all__ = [
    "APIError",
    "AuthError",
    "BatchResult",
    "BitrixBatchError",
    "BitrixClient",
    "CallResult",
    "ClientClosedError",
    "Command",
    "CommandError",
    "CommandErrors",
    "CommandInput",
    "CommandList",
    "CommandResult",
    "CommandStream",
    "CommandTime",
    "DependencyCycleError",
    "DuplicateKeyError",
    "Event",
    "EventHook",
    "EventLoopChangedError",
    "FoundRows",
    "InvalidCommandError",
    "InvalidReferenceError",
    "InvalidResponseError",
    "JournalError",
    "LeakyBucket",
    "ListExport",
    "ListShape",
    "Literal",
    "MAX_BATCH",
    "MethodHeld",
    "MethodPolicy",
    "MethodReleased",
    "OAuth",
    "OAuthTokens",
    "OperatingBudget",
    "OperationTimeLimitError",
    "OutcomeUnknownError",
    "Plan",
    "PlanError",
    "RateLimit",
    "RateLimitError",
    "RateLimitWaited",
    "RateLimiter",
    "Recorder",
    "RedirectError",
    "Ref",
    "RequestAnswered",
    "RequestFailed",
    "RequestSent",
    "RetryPolicy",
    "RetryScheduled",
    "ServerLimits",
    "Skip",
    "SkipReason",
    "Status",
    "SyncBitrixClient",
    "TransportError",
    "UnknownReferenceError",
    "__version__",
]
