"""The hook a job's journal plugs into: what is about to be sent, what became final, and
what an earlier run of the same job already knows.

The executor calls a `Recorder` at three points and nothing else; `bitrix_batch.journal`
has one on SQLite, and callers may write their own (to record intent in their own
database, say). All three are called in the event loop's thread and should be quick: a
request waits for `sending` to return, so that a crash after it can never hide a write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ._result import CommandResult
from ._types import Key

__all__ = ["Recorder"]


@runtime_checkable
class Recorder(Protocol):
    """Records a job's commands so that a job stopped at any point can be resumed."""

    def recall(self, key: Key, method: str, read: bool) -> CommandResult | None:
        """The final outcome an earlier run recorded for command `key`, or None to send it.

        Called once per command as it is taken in. A returned outcome is not sent again: it
        is handed back as this run's outcome, and commands that refer to it take their
        values from it. `read` says whether the method only reads, so that a command that
        was in flight when the earlier run stopped can be sent again only if it is a read
        (a write's outcome is then unknown).
        """
        ...

    def sending(self, commands: Sequence[tuple[Key, str]]) -> None:
        """An HTTP request carrying these ``(key, method)`` commands is about to go out.

        Called before every attempt, once the request has passed the rate limiter, right
        before it is written to the socket. If it raises, nothing is sent and the job
        stops with that error.
        """
        ...

    def finished(self, outcomes: Sequence[CommandResult]) -> None:
        """These commands became final (in any state). If it raises, the job stops."""
        ...
