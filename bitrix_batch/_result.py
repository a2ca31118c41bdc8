"""What a batch returns: one `CommandResult` per command, gathered in a `BatchResult`.

This module performs no I/O. The familiar batch maps (`result`, `result_error`,
`result_total`, `result_next`, `result_time`) are plain dicts keyed by the caller's own keys and
ordered as the caller listed the commands; never PHP's ``[]`` for an empty map.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from ._errors import CommandError, CommandErrors, InvalidStreamItemError, OutcomeUnknownError
from ._types import Key

__all__ = ["BatchResult", "CommandResult", "CommandTime", "Skip", "SkipReason", "Status"]


class Status(Enum):
    """How one command ended."""

    #: The server ran it and returned a result.
    OK = "ok"
    #: The server ran it (or tried to) and returned an error for it.
    FAILED = "failed"
    #: It was never sent, or its result was thrown away because its input was garbage.
    SKIPPED = "skipped"
    #: It was sent, but whether it ran is unknown; a write in this state is not re-sent.
    UNKNOWN = "unknown"


class SkipReason(StrEnum):
    """Why a command was skipped."""

    #: A command it refers to failed or was skipped itself.
    DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
    #: The referenced value does not exist, or cannot be spliced into text.
    UNRESOLVED_REFERENCE = "UNRESOLVED_REFERENCE"
    #: ``halt=True`` and an earlier command failed.
    HALTED = "HALTED"
    #: The HTTP request carrying it failed before the server ran anything.
    REQUEST_FAILED = "REQUEST_FAILED"
    #: A command read from a stream was invalid (`detail` and `cause` say why); the commands
    #: before and after it went on. (In a list, an invalid command is a `PlanError` instead.)
    INVALID_COMMAND = "INVALID_COMMAND"


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a command has no result: the reason, a sentence, and the error behind it, if any."""

    key: Key
    method: str
    reason: SkipReason
    detail: str
    cause: BaseException | None = None

    def __str__(self) -> str:
        return f"command {self.key!r} ({self.method}) not run: {self.reason.value}: {self.detail}"


#: The fields of a command's ``time`` block, in the order portals send them.
_TIME_FIELDS = (
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
)
_KNOWN = frozenset(_TIME_FIELDS)
_ABSENT: Any = object()


class CommandTime(Mapping[str, Any]):
    """A command's ``time`` block as the server sent it, as a compact read-only mapping.

    A job of a million commands keeps a million of these: a slot per known field instead of
    a dict, with the date strings of one answer shared. ``dict(t)`` gives the plain form.
    """

    __slots__ = _TIME_FIELDS
    start: Any
    finish: Any
    duration: Any
    processing: Any
    date_start: Any
    date_finish: Any
    operating_reset_at: Any
    operating: Any

    @classmethod
    def of(cls, raw: Any, strings: dict[str, str] | None = None) -> Mapping[str, Any] | None:
        """The compact form of a decoded time block; a block of another shape stays as it is.

        `strings` shares equal date strings between the commands of one answer.
        """
        if not isinstance(raw, dict):
            return None if raw is None else raw
        if not raw.keys() <= _KNOWN:
            return raw
        get = raw.get
        date_start, date_finish = get("date_start", _ABSENT), get("date_finish", _ABSENT)
        if strings is not None:
            if type(date_start) is str:
                date_start = strings.setdefault(date_start, date_start)
            if type(date_finish) is str:
                date_finish = strings.setdefault(date_finish, date_finish)
        t = cls.__new__(cls)  # slots set one by one: no __init__ call per command
        t.start = get("start", _ABSENT)
        t.finish = get("finish", _ABSENT)
        t.duration = get("duration", _ABSENT)
        t.processing = get("processing", _ABSENT)
        t.date_start = date_start
        t.date_finish = date_finish
        t.operating_reset_at = get("operating_reset_at", _ABSENT)
        t.operating = get("operating", _ABSENT)
        return t

    def __reduce__(self) -> tuple[Any, ...]:
        # Absent fields hold a module sentinel: copies and pickles go through the plain form.
        return (CommandTime.of, (dict(self),))

    def __getitem__(self, key: str) -> Any:
        if key not in _KNOWN:
            raise KeyError(key)
        value = getattr(self, key)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name in _TIME_FIELDS if getattr(self, name) is not _ABSENT)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"CommandTime({dict(self)!r})"


@dataclass(slots=True)
class CommandResult:
    """The outcome of one command (read it, do not change it).

    Not a frozen dataclass on purpose: a job makes one per command, and a frozen one costs
    three times as much to build.
    """

    key: Key
    method: str
    status: Status
    result: Any = None
    error: CommandError | None = None
    total: int | None = None
    next: int | None = None
    time: Mapping[str, Any] | None = None
    skip: Skip | None = None
    uncertain: OutcomeUnknownError | None = None

    @property
    def ok(self) -> bool:
        """True when the command ran and succeeded."""
        return self.status is Status.OK


class BatchResult(Mapping[Key, CommandResult]):
    """Every command's outcome, keyed and ordered as the caller gave the commands.

    Read it like the server's answer (`result`, `result_error`, `result_total`, `result_next`,
    `result_time`), or as a mapping from key to `CommandResult`. Commands that never ran are in
    `skipped` (with the reason) and those whose outcome is unknown in `unknown`.
    """

    __slots__ = ("_by_key", "_derived", "rejected", "repeated", "result", "result_error",
                 "skipped", "unknown")

    def __init__(self, outcomes: Iterable[CommandResult]) -> None:
        self._by_key: dict[Key, CommandResult] = {}
        self.result: dict[Key, Any] = {}
        self.result_error: dict[Key, CommandError] = {}
        # result_total, result_next and result_time are built when first read: most jobs never
        # read them, and a million entries each is a lot of memory to hold for nothing.
        self._derived: dict[str, dict[Key, Any]] = {}
        self.skipped: dict[Key, Skip] = {}
        self.unknown: dict[Key, CommandResult] = {}
        #: Commands of a stream that have no place under a key of their own (a list cannot have
        #: any), never sent: a key taken already (``5`` and ``"5"`` are one key), or an item
        #: that was no ``(key, command)`` pair (reported under its position).
        self.rejected: list[CommandResult] = []
        #: Commands of a stream that ran under a key used further back than the look-back
        #: (where repeats are not looked for): the key's place holds the first one's outcome.
        self.repeated: list[CommandResult] = []
        for r in outcomes:
            if _unplaced(r):
                self.rejected.append(r)
                continue
            if _taken(r.key, self._by_key):
                never_sent = r.skip is not None and r.skip.reason is SkipReason.INVALID_COMMAND
                (self.rejected if never_sent else self.repeated).append(r)
                continue
            self._by_key[r.key] = r
            if r.status is Status.OK:
                self.result[r.key] = r.result
            elif r.status is Status.FAILED and r.error is not None:
                self.result_error[r.key] = r.error
            elif r.status is Status.SKIPPED and r.skip is not None:
                self.skipped[r.key] = r.skip
            elif r.status is Status.UNKNOWN:
                self.unknown[r.key] = r

    @property
    def result_total(self) -> dict[Key, int]:
        """`total` of each command that has one (list methods), like the server's map."""
        return self._derive("total")

    @property
    def result_next(self) -> dict[Key, int]:
        """`next` paging offset of each command that has one."""
        return self._derive("next")

    @property
    def result_time(self) -> dict[Key, Mapping[str, Any]]:
        """The `time` block of each command that ran."""
        return self._derive("time")

    def _derive(self, field_name: str) -> dict[Key, Any]:
        got = self._derived.get(field_name)
        if got is None:
            got = self._derived[field_name] = {
                key: value
                for key, r in self._by_key.items()
                if (value := getattr(r, field_name)) is not None
            }
        return got

    def __getitem__(self, key: Key) -> CommandResult:
        return self._by_key[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def ok(self) -> bool:
        """True when every command succeeded."""
        return (
            len(self.result) == len(self._by_key)
            and not self.rejected
            and all(r.ok for r in self.repeated)
        )

    def raise_for_errors(self) -> BatchResult:
        """Raise `CommandErrors` if any command failed, was skipped or has an unknown outcome.

        Returns the result itself otherwise, so it can be chained.
        """
        if not self.ok:
            not_run: dict[Key, Any] = dict(self.skipped)
            for r in (*self.rejected, *self.repeated):
                if not r.ok:
                    not_run.setdefault(r.key, r.skip or r.uncertain or r.error)
            for key, r in self.unknown.items():
                not_run[key] = r.uncertain if r.uncertain is not None else r
            raise CommandErrors(self.result_error, not_run)
        return self

    def __repr__(self) -> str:
        return (
            f"<BatchResult ok={len(self.result)} failed={len(self.result_error)}"
            f" skipped={len(self.skipped)} unknown={len(self.unknown)}>"
        )


def _unplaced(r: CommandResult) -> bool:
    """An outcome reported under a stream position rather than a key of its own."""
    return r.skip is not None and isinstance(r.skip.cause, InvalidStreamItemError)


def _taken(key: Key, by_key: Mapping[Key, Any]) -> bool:
    """Whether `key` or its twin (``5`` for ``"5"``, and back) has a place already."""
    if key in by_key:
        return True
    if not isinstance(key, str):
        return str(key) in by_key
    return _CANONICAL_INT.fullmatch(key) is not None and int(key) in by_key


# A str key the server reads as the same array key as an int (PHP's canonical integers).
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
