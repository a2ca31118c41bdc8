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
  opened with ``resend_unknown=True``.

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
from ._result import CommandResult, CommandTime, Status
from ._types import Key

__all__ = ["Journal", "JournalEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    key TEXT PRIMARY KEY,      -- the caller's key as JSON, so that 5 and "5" differ
    method TEXT NOT NULL,
    state TEXT NOT NULL,       -- sending, ok, failed, unknown, skipped
    outcome TEXT,              -- JSON: the result (ok) or the error (failed)
    updated REAL NOT NULL
) WITHOUT ROWID;
"""

#: States whose outcome is final: never sent again.
_FINAL = ("ok", "failed", "unknown")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """What the journal holds for one command."""

    key: Key
    method: str
    #: ``sending`` (in flight, or in flight when a run stopped), ``ok``, ``failed``,
    #: ``unknown`` or ``skipped`` (it did not run).
    state: str


class Journal:
    """A job's journal in an SQLite file; pass it as ``journal=`` to `batch` or `stream`.

    Args:
        path: the file (created if missing).
        resend_unknown: send again a write that was in flight when an earlier run stopped
            (it may then run twice); by default it is reported as outcome-unknown.
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

    def recall(self, key: Key, method: str, read: bool) -> CommandResult | None:
        """The outcome an earlier run recorded for `key`, or None when it is to be sent."""
        if self._empty:  # a fresh journal: no query per command
            return None
        row = self._db.execute(
            "SELECT method, state, outcome FROM commands WHERE key = ?", (_key_text(key),)
        ).fetchone()
        if row is None:
            return None
        recorded, state, outcome = row
        if recorded.lower() != method.lower():
            raise JournalError(
                f"journal {self.path}: command {key!r} was {recorded} in the run it recorded"
                f" and is {method} now; this journal belongs to another job"
            )
        if state == "ok":
            data = json.loads(outcome)
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
            data = json.loads(outcome)
            error = CommandError(
                key, method, data.get("error", ""), data.get("description", ""), data.get("extra")
            )
            return CommandResult(key, method, Status.FAILED, error=error)
        if state == "unknown":
            reason = "an earlier run recorded its outcome as unknown; not sent again"
            return _unknown(key, method, reason)
        if state == "sending" and not (read or self.resend_unknown):
            return _unknown(
                key,
                method,
                "it was in flight when an earlier run stopped; not sent again"
                " (Journal(resend_unknown=True) would send it)",
            )
        return None  # skipped, or a read in flight: it certainly can be sent (again)

    def sending(self, commands: Sequence[tuple[Key, str]]) -> None:
        """Commit that these commands are about to be sent (before the request goes out)."""
        now = time.time()
        rows = [(_key_text(key), method, now) for key, method in commands]
        self._write(
            "INSERT INTO commands (key, method, state, updated) VALUES (?, ?, 'sending', ?)"
            " ON CONFLICT (key) DO UPDATE SET state = 'sending', updated = excluded.updated",
            rows,
        )

    def finished(self, outcomes: Sequence[CommandResult]) -> None:
        """Commit the final outcomes of these commands."""
        now = time.time()
        rows = [(_key_text(o.key), o.method, *_record(o), now) for o in outcomes]
        self._write(
            "INSERT INTO commands (key, method, state, outcome, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
            " outcome = excluded.outcome, updated = excluded.updated",
            rows,
        )

    # --- reading it ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many commands are in each state."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM commands GROUP BY state")
        return dict(rows.fetchall())

    def entries(self, state: str | None = None) -> Iterator[JournalEntry]:
        """Every command recorded (in one `state`, if given), in key order."""
        query = "SELECT key, method, state FROM commands"
        args: tuple[Any, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            args = (state,)
        for key, method, recorded in self._db.execute(query + " ORDER BY key", args):
            yield JournalEntry(json.loads(key), method, recorded)

    def close(self) -> None:
        """Close the file (every record is committed already)."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path!r}>"

    def _write(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        try:
            with self._db:  # one transaction: all of the rows or none
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(statement, rows)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot be written: {exc}") from exc
        self._empty = False


def _key_text(key: Key) -> str:
    return json.dumps(key, ensure_ascii=False)


def _unknown(key: Key, method: str, reason: str) -> CommandResult:
    return CommandResult(
        key, method, Status.UNKNOWN, uncertain=OutcomeUnknownError(key, method, reason)
    )


def _record(outcome: CommandResult) -> tuple[str, str | None]:
    """The state and the JSON text a final outcome is stored as."""
    if outcome.status is Status.OK:
        time_block = None if outcome.time is None else dict(outcome.time)
        data = {
            "result": outcome.result,
            "total": outcome.total,
            "next": outcome.next,
            "time": time_block,
        }
        return "ok", json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if outcome.status is Status.FAILED and outcome.error is not None:
        error = outcome.error
        data = {"error": error.code, "description": error.description, "extra": error.extra}
        return "failed", json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if outcome.status is Status.UNKNOWN:
        return "unknown", None
    return "skipped", None
