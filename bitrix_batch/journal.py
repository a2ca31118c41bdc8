"""A crash-safe journal of a job, on SQLite, so that a job stopped at any point can resume.

    journal = Journal("import.journal")
    result = await client.batch(commands, journal=journal)   # killed half-way? run it again

Before each HTTP request goes out, the journal commits which commands it carries; after it,
each command's outcome. Run the same job again with the same journal and:

- a command with a recorded outcome (ok, failed, unknown) is not sent: its outcome comes back
  as this run's, and commands that refer to it take their values from the recorded result;
- a command that certainly did not run (never sent, or skipped) is sent;
- a command that was in flight when the earlier run stopped is sent again if it only reads,
  and is reported as outcome-unknown if it writes, never sent twice, unless the journal was
  opened with ``resend_unknown=True`` (which sends every write whose outcome is unknown).

Keys must be unique in a recorded job, and the job the same in each run: a key met at another
position than the journal recorded for it raises `JournalError`.

SQLite in WAL mode with ``synchronous=NORMAL`` keeps every committed record through a crash
of the process (SIGKILL included); ``durable=True`` (``synchronous=FULL``) also through a
power loss, at the price of an fsync per request. One journal serves one job at a time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

from ._errors import CommandError, JournalError, OutcomeUnknownError
from ._record import Sent
from ._result import CommandResult, CommandTime, Status
from ._types import Key

__all__ = ["Journal", "JournalEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    key TEXT PRIMARY KEY,      -- the caller's key as JSON, so that 5 and "5" differ
    pos INTEGER NOT NULL,      -- its position in the job (0 for the first)
    method TEXT NOT NULL,
    state TEXT NOT NULL,       -- sending, queued, ok, failed, unknown, skipped
    outcome TEXT,              -- JSON: the result (ok) or the error (failed, unknown)
    updated REAL NOT NULL
) WITHOUT ROWID;
"""



@dataclass(frozen=True, slots=True)
class JournalEntry:
    """What the journal holds for one command."""

    key: Key
    method: str
    #: ``sending`` (in flight, or in flight when a run stopped), ``queued`` (refused by the
    #: server, to be sent again), ``ok``, ``failed``, ``unknown`` or ``skipped`` (not run).
    state: str
    #: Its position in the job.
    position: int


class Journal:
    """A job's journal in an SQLite file; pass it as ``journal=`` to `batch` or `stream`.

    Args:
        path: the file (created if missing).
        resend_unknown: send again every write whose outcome is unknown (in flight when an
            earlier run stopped, or reported unknown): it may then run twice. By default it
            is reported as outcome-unknown and not sent.
        durable: commit with an fsync, to survive a power loss (slower).

    Raises:
        JournalError: the file is not a journal, or cannot be opened.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        resend_unknown: bool = False,
        durable: bool = False,
    ) -> None:
        self.path = str(path)
        self.resend_unknown = resend_unknown
        try:
            # The sync client runs jobs in its portal's thread: one thread at a time, not
            # always the one that opened it.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot be opened: {exc}") from exc
        self._empty = self._db.execute("SELECT 1 FROM commands LIMIT 1").fetchone() is None

    # --- the Recorder protocol ----------------------------------------------------------------

    def recall(self, index: int, key: Key, method: str, read: bool) -> CommandResult | None:
        """The outcome an earlier run recorded for `key`, or None when it is to be sent.

        Raises:
            JournalError: the journal has `key` with another method or at another position
                (another job's journal, or a key repeated within the job).
        """
        if self._empty:  # a fresh journal: no query per command
            return None
        try:
            row = self._db.execute(
                "SELECT pos, method, state, outcome FROM commands WHERE key = ?",
                (_key_text(key),),
            ).fetchone()
        except (sqlite3.Error, UnicodeError) as exc:
            raise JournalError(f"journal {self.path}: cannot be read: {exc}") from exc
        if row is None:
            return None
        pos, recorded, state, outcome = row
        if recorded.lower() != method.lower():
            raise JournalError(
                f"journal {self.path}: command {key!r} was {recorded} in the run it recorded"
                f" and is {method} now; this journal belongs to another job"
            )
        if pos != index:
            raise JournalError(
                f"journal {self.path}: command {key!r} is #{index} in this job but was"
                f" #{pos} in the run it recorded: the job changed, or the key repeats"
                " (keys must be unique in a job with a journal)"
            )
        data = json.loads(outcome) if outcome else {}
        if state == "ok":
            return CommandResult(
                key,
                method,
                Status.OK,
                data.get("result"),
                total=data.get("total"),
                next=data.get("next"),
                time=CommandTime.of(data.get("time")),
            )
        if state == "failed":
            return CommandResult(key, method, Status.FAILED, error=_error(key, method, data))
        if (state == "unknown" or state == "sending") and (read or self.resend_unknown):
            return None  # a read, or the caller accepts that the write may run twice
        if state == "unknown":
            reason = data.get("reason") or "an earlier run recorded its outcome as unknown"
            return _unknown(key, method, reason, _error(key, method, data))
        if state == "sending":
            return _unknown(
                key,
                method,
                "it was in flight when an earlier run stopped; not sent again"
                " (Journal(resend_unknown=True) would send it)",
            )
        return None  # skipped or queued: it certainly did not run

    def sending(self, commands: Sequence[Sent]) -> None:
        """Commit that these commands are about to be sent (before the request goes out)."""
        self._mark(commands, "sending")

    def requeued(self, commands: Sequence[Sent]) -> None:
        """Commit that these commands did not run and go again later."""
        self._mark(commands, "queued")

    def finished(self, outcomes: Sequence[tuple[int, CommandResult]]) -> None:
        """Commit the final outcomes of these commands."""
        now = time.time()
        try:
            rows = [
                (_key_text(o.key), index, o.method, *_record(o), now) for index, o in outcomes
            ]
        except (TypeError, ValueError) as exc:
            raise JournalError(f"journal {self.path}: an outcome cannot be stored: {exc}") from exc
        statement = (
            "INSERT INTO commands (key, pos, method, state, outcome, updated)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
            " outcome = excluded.outcome, updated = excluded.updated"
            " WHERE pos = excluded.pos"
        )
        # A command skipped because its key clashes (a repeat, another job's journal) must
        # not overwrite the record of the first one; nothing else may clash.
        self._write(statement, [r for r in rows if r[3] != "skipped"])
        self._write(statement, [r for r in rows if r[3] == "skipped"], strict=False)

    # --- reading it ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many commands are in each state."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM commands GROUP BY state")
        return dict(rows.fetchall())

    def entries(self, state: str | None = None) -> Iterator[JournalEntry]:
        """Every command recorded (in one `state`, if given), in the job's order."""
        query = "SELECT key, method, state, pos FROM commands"
        args: tuple[Any, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            args = (state,)
        for key, method, recorded, pos in self._db.execute(query + " ORDER BY pos", args):
            yield JournalEntry(json.loads(key), method, recorded, pos)

    def close(self) -> None:
        """Close the file (every record is committed already)."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path!r}>"

    def _mark(self, commands: Sequence[Sent], state: str) -> None:
        now = time.time()
        try:
            rows = [(_key_text(key), index, method, state, now) for index, key, method in commands]
        except (TypeError, ValueError) as exc:
            raise JournalError(f"journal {self.path}: a key cannot be stored: {exc}") from exc
        self._write(
            "INSERT INTO commands (key, pos, method, state, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated = excluded.updated"
            " WHERE pos = excluded.pos",
            rows,
        )

    def _write(self, statement: str, rows: list[tuple[Any, ...]], strict: bool = True) -> None:
        if not rows:
            return
        try:
            with self._db:  # one transaction: all of the rows or none
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany(statement, rows)
                if strict and self._db.total_changes - before != len(rows):
                    # A key recorded at another position: a repeated key, or another job.
                    raise _Repeated
        except _Repeated:
            raise JournalError(
                f"journal {self.path}: a key of this request is recorded at another position"
                " in the job: keys must be unique in a job with a journal"
            ) from None
        except (sqlite3.Error, UnicodeError) as exc:
            raise JournalError(f"journal {self.path}: cannot be written: {exc}") from exc
        self._empty = False


class _Repeated(Exception):
    """Rolls a write back: an upsert met a key at another position."""


def _key_text(key: Key) -> str:
    return json.dumps(key)


def _json(data: Any) -> str:
    # ASCII escapes: a lone surrogate from a server's "\ud83d" cannot be encoded as UTF-8.
    return json.dumps(data, separators=(",", ":"))


def _error(key: Key, method: str, data: dict[str, Any]) -> CommandError | None:
    if "error" not in data:
        return None
    return CommandError(
        key, method, data.get("error", ""), data.get("description", ""), data.get("extra")
    )


def _unknown(
    key: Key, method: str, reason: str, error: CommandError | None = None
) -> CommandResult:
    return CommandResult(
        key,
        method,
        Status.UNKNOWN,
        error=error,
        uncertain=OutcomeUnknownError(key, method, reason),
    )


def _record(outcome: CommandResult) -> tuple[str, str | None]:
    """The state and the JSON text a final outcome is stored as."""
    if outcome.status is Status.OK:
        block = outcome.time
        data = {
            "result": outcome.result,
            "total": outcome.total,
            "next": outcome.next,
            # A time block of an unexpected shape is kept as the server sent it.
            "time": dict(block) if isinstance(block, CommandTime) else block,
        }
        return "ok", _json(data)
    error = outcome.error
    described = (
        {}
        if error is None
        else {"error": error.code, "description": error.description, "extra": error.extra}
    )
    if outcome.status is Status.FAILED and error is not None:
        return "failed", _json(described)
    if outcome.status is Status.UNKNOWN:
        reason = outcome.uncertain.reason if outcome.uncertain is not None else None
        return "unknown", _json({**described, "reason": reason})
    return "skipped", None
