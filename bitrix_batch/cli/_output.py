"""Writing what a job produced: one JSON line per command outcome, or exported rows as JSONL
or CSV, to a file or to stdout, streamed (nothing is kept), with the webhook's code masked.

Output that stops taking writes (stdout piped into ``head``, a full disk) raises
`OutputFailed` from the write that found it, once; after that the writer drops everything,
and closing it does not raise. The job is then stopped by its caller.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, Self

from bitrix_batch._result import CommandResult, Status

from ._common import BadInput, Secrets, say, silence

__all__ = ["CsvRows", "JsonLines", "OutputFailed", "outcome_record", "row_writer"]


class OutputFailed(Exception):
    """The results or rows could not be written; ``str()`` says where and why, in one line."""


def outcome_record(r: CommandResult) -> dict[str, Any]:
    """The JSON object written for one outcome.

    ``{"key", "method", "status"}`` and then: ``result`` (with ``total``/``next`` for lists)
    when ok; ``error`` and ``description`` when failed; ``reason`` (``DEPENDENCY_FAILED``...)
    and ``detail`` when skipped; ``detail`` when unknown.
    """
    record: dict[str, Any] = {"key": r.key, "method": r.method, "status": r.status.value}
    if r.status is Status.OK:
        record["result"] = r.result
        if r.total is not None:
            record["total"] = r.total
        if r.next is not None:
            record["next"] = r.next
    elif r.status is Status.FAILED:
        if r.error is not None:
            record["error"] = r.error.code
            record["description"] = r.error.description
    elif r.status is Status.SKIPPED:
        if r.skip is not None:
            record["reason"] = r.skip.reason.value
            record["detail"] = r.skip.detail
    elif r.uncertain is not None:
        record["detail"] = str(r.uncertain)
    return record


def _open_text(path: str | None) -> tuple[IO[str], bool]:
    """The file to write (stdout for None or ``-``) and whether it is ours to close."""
    if path is None or path == "-":
        return sys.stdout, False
    try:
        # newline="" so that the csv module's own line endings are kept as they are.
        return open(path, "w", encoding="utf-8", newline=""), True
    except OSError as exc:
        raise BadInput(f"cannot be written: {exc.strerror or exc}", path) from None


class _Output:
    """A text file or stdout that, once a write fails, records why and takes no more."""

    def __init__(self, path: str | None) -> None:
        self._file, self._owned = _open_text(path)
        self._name = "stdout" if not self._owned else str(path)
        #: Why writing stopped (None: it did not).
        self.failed: OutputFailed | None = None
        self.written = 0

    def _failure(self, exc: BaseException) -> OutputFailed:
        """Record that `exc` stopped the writing; the error to raise."""
        if isinstance(exc, BrokenPipeError):
            why = f"{self._name} was closed by its reader (broken pipe)"
        else:
            why = f"{self._name} cannot be written: {getattr(exc, 'strerror', None) or exc}"
        self.failed = OutputFailed(why)
        if not self._owned:  # stdout: what it holds must not fail again at exit
            silence(self._file)
        return self.failed

    def _put(self, text: str) -> None:
        if self.failed is not None:
            return
        try:
            self._file.write(text)
        except (OSError, ValueError) as exc:  # ValueError: closed under us
            raise self._failure(exc) from None

    def close(self) -> None:
        """Flush, and close the file if it is not stdout (a failure is recorded, not raised;
        a stdout closed already, by a caller that is done with it, is left as it is)."""
        if self.failed is None:
            try:
                self._file.flush()
            except (OSError, ValueError) as exc:
                if not (isinstance(exc, ValueError) and self._file.closed):
                    self._failure(exc)
        if self._owned:
            with contextlib.suppress(OSError, ValueError):  # its flush failed above already
                self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class JsonLines(_Output):
    """One JSON object per line, to `path` (stdout for None or ``-``)."""

    def __init__(self, path: str | None, secrets: Secrets) -> None:
        super().__init__(path)
        self._secrets = secrets

    def write(self, obj: Mapping[str, Any]) -> None:
        """Write one object as a line (`OutputFailed` if the output stopped taking them)."""
        if self.failed is not None:
            return
        text = json.dumps(obj, ensure_ascii=False, default=str)
        self._put(self._secrets(text) + "\n")
        self.written += 1

    def outcome(self, r: CommandResult, extra: Mapping[str, Any] | None = None) -> None:
        """Write one command's outcome (`outcome_record`, updated with `extra`)."""
        record = outcome_record(r)
        if extra:
            record.update(extra)
        self.write(record)



class CsvRows(_Output):
    """Rows as CSV with a header, a list or a mapping (PHONE, EMAIL) as its JSON text, None
    as an empty cell.

    The header: with `columns` (the fields ``--select`` names, no wildcard), those, then any
    other field of the first row (the ID that the cursor adds to the select); a row without
    one of them has an empty cell there (the server leaves empty multi-fields out). Without
    `columns`, the first row's fields. Names are in the server's spelling when the first row
    spells one differently. A field of a later row that is not a column is left out of the
    CSV: said once on stderr, and `dropped` names it (the export then exits 1).
    """

    def __init__(
        self, path: str | None, secrets: Secrets, columns: Sequence[str] | None = None
    ) -> None:
        super().__init__(path)
        self._secrets = secrets
        self._writer = csv.writer(self._file)
        named: dict[str, str] = {}
        for column in columns or ():
            named.setdefault(column.casefold(), column)
        self._named = list(named.values())
        self._columns: list[str] | None = None
        self._known: set[str] = set()
        #: Fields that were left out because they are not columns.
        self.dropped: list[str] = []

    def _header(self, row: Mapping[str, Any]) -> list[str]:
        spelled = {str(k).casefold(): str(k) for k in row}
        columns = [spelled.get(c.casefold(), c) for c in self._named]
        taken = {c.casefold() for c in columns}
        return columns + [str(k) for k in row if str(k).casefold() not in taken]

    def _row(self, row: Mapping[str, Any], columns: list[str]) -> list[str]:
        cells: list[str] = []
        spelled: dict[str, Any] | None = None
        for column in columns:
            if column in row:
                value = row[column]
            else:  # not there, or spelled in another case than in the first row
                if spelled is None:
                    spelled = {str(k).casefold(): k for k in row}
                key = spelled.get(column.casefold())
                value = None if key is None else row[key]
            cells.append(self._secrets(_cell(value)))
        return cells

    def _writerow(self, cells: Sequence[Any]) -> None:
        if self.failed is not None:
            return
        try:
            self._writer.writerow(cells)
        except (OSError, ValueError) as exc:
            raise self._failure(exc) from None

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row (`OutputFailed` if the output stopped taking them)."""
        if self.failed is not None:
            return
        if self._columns is None:
            self._columns = self._header(row)
            self._known = {c.casefold() for c in self._columns}
            self._writerow(self._columns)
        extra = [str(k) for k in row if str(k).casefold() not in self._known]
        if extra:
            self._known.update(k.casefold() for k in extra)
            first = not self.dropped
            self.dropped += extra
            if first:
                hint = (
                    "(add them to --select)"
                    if self._named
                    else "(name every field with --select, without * or UF_*, to keep them)"
                )
                say(
                    "bitrix-batch: fields that are not columns of the CSV are left out:"
                    f" {', '.join(sorted(extra))} {hint}; the export will exit 1"
                )
        self._writerow(self._row(row, self._columns))
        self.written += 1

    def close(self) -> None:
        """Write the header if no row came, flush, and close the file if it is not stdout."""
        if self._columns is None and self._named:
            self._columns = self._named
            with contextlib.suppress(OutputFailed):  # recorded in `failed`
                self._writerow(self._named)
        super().close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def row_writer(
    fmt: str, path: str | None, secrets: Secrets, columns: Sequence[str] | None
) -> JsonLines | CsvRows:
    """The writer for exported rows in `fmt` (``jsonl`` or ``csv``)."""
    if fmt == "csv":
        return CsvRows(path, secrets, columns)
    return JsonLines(path, secrets)
