"""The hook a job's journal plugs into: what is about to be sent, what was refused and goes
again, what became final, and what an earlier run of the same job already knows.

The executor calls a `Recorder` at these four points and nothing else; `bitrix_batch.journal`
has one on SQLite, and callers may write their own (to record intent in their own
database, say). All are called in the event loop's thread and should be quick: a
request waits for `sending` to return, so that a crash after it can never hide a write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ._result import CommandResult
from ._types import Key

__all__ = ["Recorder", "Sent"]


#: A command as the journal sees it: its position in the job, its key, its method.
Sent = tuple[int, Key, str]


@runtime_checkable
class Recorder(Protocol):
    """Records a job's commands so that a job stopped at any point can be resumed.

    `index` is a command's position in the job (0 for the first), the same in every run of
    the same job; keys must be unique in a job that is recorded (a stream may repeat a key
    beyond its look-back, but a recorder cannot tell the two apart).
    """

    def recall(self, index: int, key: Key, method: str, read: bool) -> CommandResult | None:
        """The final outcome an earlier run recorded for command `key`, or None to send it.

        Called once per command as it is taken in (for a list, before anything is sent).
        A returned outcome is not sent again: it is handed back as this run's outcome, and
        commands that refer to it take their values from it. `read` says whether the method
        only reads, so that a command in flight when the earlier run stopped can be sent
        again if it is a read (a write's outcome is then unknown). If it raises, the job
        reads no further and the error is raised (as from a failing source).
        """
        ...

    def sending(self, commands: Sequence[Sent]) -> None:
        """An HTTP request carrying these commands is about to go out.

        Called before every attempt, once the request has passed the rate limiter, right
        before it is written to the socket. If it raises, nothing is sent and the job
        stops with that error.
        """
        ...

    def requeued(self, commands: Sequence[Sent]) -> None:
        """These commands of a request that was answered certainly did not run (refused by
        the server, or not reached) and will be sent again in a later request."""
        ...

    def finished(self, outcomes: Sequence[tuple[int, CommandResult]]) -> None:
        """These commands became final (in any state). If it raises, the job stops."""
        ...
