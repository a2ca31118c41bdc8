"""Writing what a job produced: one JSON line per command outcome, or exported rows as JSONL
or CSV, to a file or to stdout, streamed (nothing is kept), with the webhook's code masked."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from bitrix_batch._result import CommandResult, Status

from ._common import BadInput, Secrets

__all__ = ["CsvRows", "JsonLines", "outcome_record", "row_writer"]


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


class JsonLines:
    """One JSON object per line, to `path` (stdout for None or ``-``)."""

    def __init__(self, path: str | None, secrets: Secrets) -> None:
        self._file, self._owned = _open_text(path)
        self._secrets = secrets
        self.written = 0

    def write(self, obj: Mapping[str, Any]) -> None:
        """Write one object as a line."""
        text = json.dumps(obj, ensure_ascii=False, default=str)
        self._file.write(self._secrets(text) + "\n")
        self.written += 1

    def outcome(self, r: CommandResult) -> None:
        """Write one command's outcome (`outcome_record`)."""
        self.write(outcome_record(r))

    def close(self) -> None:
        """Flush, and close the file if it is not stdout."""
        self._file.flush()
        if self._owned:
            self._file.close()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CsvRows:
    """Rows as CSV with a header: the first row's fields, in the server's spelling.

    A field of a later row that is not a column is left out (said once, on stderr); a list
    or a mapping (PHONE, EMAIL) is written as its JSON text, None as an empty cell. With no
    row at all, the header is `columns` (the fields asked for), if given.
    """

    def __init__(
        self, path: str | None, secrets: Secrets, columns: Sequence[str] | None = None
    ) -> None:
        self._file, self._owned = _open_text(path)
        self._secrets = secrets
        self._writer = csv.writer(self._file)
        self._fallback = list(columns or ())
        self._columns: list[str] | None = None
        self._known: set[Any] = set()
        self._warned = False
        self.written = 0

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row."""
        if self._columns is None:
            self._columns = [str(k) for k in row]
            self._known = set(self._columns)
            self._writer.writerow(self._columns)
        if not self._warned and not row.keys() <= self._known:
            extra = sorted(str(k) for k in row if str(k) not in self._known)
            if extra:
                self._warned = True
                print(
                    "bitrix-batch: fields missing from the first row are left out of the CSV:"
                    f" {', '.join(extra)} (name the fields with --select)",
                    file=sys.stderr,
                )
        self._writer.writerow([self._secrets(_cell(row.get(c))) for c in self._columns])
        self.written += 1

    def close(self) -> None:
        """Write the header if no row came, flush, and close the file if it is not stdout."""
        if self._columns is None and self._fallback:
            self._writer.writerow(self._fallback)
        self._file.flush()
        if self._owned:
            self._file.close()


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
