"""Reading a job's commands from a file, lazily: JSONL (one command per line) or CSV rows.

Both give ``(key, command)`` pairs one at a time, for `BitrixClient.stream`; nothing reads the
whole file. A line that is not what the format says (not JSON, not an object, not UTF-8 or
the CSV's ``--encoding``, a CSV row with the wrong number of fields) raises `BadInput` naming
the file and the line: the stream ends there, what was read before still runs, and the job
exits 2. A UTF-8 byte order mark at the start of either is not part of the first line. A
well-formed line whose command is invalid (an unknown shape, a bad method name, a reference to
a key not read yet) is the engine's to judge: it is reported as skipped and the job goes on.

Keys: a JSONL line's ``"key"`` (a string or an integer), a CSV row's ``--key-column``; without
one, the line number in the file (the line a CSV row ends on). The same file gives the same
keys, so a journal can resume it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from bitrix_batch._types import Key

from ._common import BadInput

__all__ = [
    "MULTIFIELDS",
    "CsvMapping",
    "CsvSource",
    "JsonlSource",
    "check_delimiter",
    "check_encoding",
    "open_source",
    "parse_pairs",
]

#: CRM fields that take a list of ``{"VALUE": ..., "VALUE_TYPE": ...}`` (a CSV cell gives one).
MULTIFIELDS = frozenset({"PHONE", "EMAIL", "WEB", "IM"})

_SHAPE = '{"key": ..., "method": ..., "params": {...}}'

#: The largest CSV cell read (the csv module's own limit, 128 KiB, is raised to this).
CSV_FIELD_LIMIT = 16 * 1024 * 1024

# Bytes that are not in the CSV's encoding are decoded as this lone surrogate (which no text
# in a file can hold), so that the line holding them is found, and refused, as csv reads it:
# the rows before it still run. (A strict decoder fails a whole 8 KiB chunk at once.)
_UNDECODABLE = "bitrix_batch.undecodable"
_MARK = "\udcff"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _MARK, exc.end


codecs.register_error(_UNDECODABLE, _mark_undecodable)


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise BadInput(f"cannot be read: {exc.strerror or exc}", path) from None


def _display(path: str) -> str:
    return "<stdin>" if path == "-" else path


class JsonlSource:
    """The commands of a JSONL file: ``{"key": ..., "method": ..., "params": {...}}`` per line.

    Blank lines are skipped. ``params`` may hold ``$result[key][FIELD]`` references, written
    as the server writes them. Iterate it once.
    """

    def __init__(self, path: str) -> None:
        self.name = _display(path)
        self._file = _open_binary(path)
        self._owned = path != "-"
        #: The line of the command read last (0: none yet).
        self.line = 0

    def __iter__(self) -> Iterator[tuple[Key, Any]]:
        try:
            for number, raw in enumerate(self._file, 1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                if not raw.strip():
                    continue
                self.line = number
                yield self._command(number, raw)
        finally:
            self.close()

    def _command(self, number: int, raw: bytes) -> tuple[Key, Any]:
        where = f"{self.name}:{number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"not UTF-8 (byte {exc.start + 1})", where) from None
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"not JSON: {exc.msg} (column {exc.colno})", where) from None
        if not isinstance(item, dict):
            raise BadInput(f"not a JSON object; each line is {_SHAPE}", where)
        key = item.pop("key", number)
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise BadInput(f"the key must be a string or an integer, not {key!r}", where)
        # The rest ({"method", "params"}, or anything else) is checked by the engine: an
        # invalid command is reported as skipped under its key and the job goes on.
        return key, item

    def count(self) -> int | None:
        """How many commands the file has (its non-blank lines), or None for stdin."""
        if not self._owned:
            return None
        with open(self._file.name, "rb") as f:
            return sum(1 for line in f if line.strip() and line.strip() != codecs.BOM_UTF8)

    def close(self) -> None:
        """Close the file (not stdin)."""
        if self._owned:
            self._file.close()


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """How CSV rows become commands: ``method`` with ``{"fields": {...}}`` per row.

    `columns` maps column names to field names (None: every column under its own name, the
    key column left out); `constants` are fields set on every row. An empty cell sends
    nothing; a cell for PHONE, EMAIL, WEB or IM is sent as one ``{"VALUE", "VALUE_TYPE":
    "WORK"}`` entry, the shape those fields take.
    """

    method: str
    columns: tuple[tuple[str, str], ...] | None = None
    key_column: str | None = None
    constants: tuple[tuple[str, str], ...] = ()
    delimiter: str = ","
    encoding: str = "utf-8-sig"  # a BOM, as spreadsheets write it, is not part of the header


def check_encoding(encoding: str) -> str:
    """`encoding`, if Python has a text encoding of that name; else `BadInput`."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise BadInput(f"--encoding {encoding!r}: not an encoding Python knows") from None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13...
        raise BadInput(f"--encoding {encoding!r}: not a text encoding")
    return encoding


def check_delimiter(delimiter: str) -> str:
    """One character (``\\t``, as a shell passes it, is a tab); else `BadInput`."""
    if delimiter == "\\t":
        delimiter = "\t"
    if len(delimiter) != 1 or delimiter in "\r\n\"":
        raise BadInput(
            f"--delimiter {delimiter!r}: must be one character, not a quote or a line break"
            " (\\t for a tab)"
        )
    return delimiter


def _encoding_name(encoding: str) -> str:
    """How to say it in a message: UTF-8 for every spelling of it."""
    with contextlib.suppress(LookupError):
        if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
            return "UTF-8"
    return encoding


class CsvSource:
    """The commands of a CSV file with a header row (read and checked when it is opened)."""

    def __init__(self, path: str, mapping: CsvMapping) -> None:
        self.name = _display(path)
        self._path = path
        self._mapping = mapping
        check_encoding(mapping.encoding)
        check_delimiter(mapping.delimiter)
        if csv.field_size_limit() < CSV_FIELD_LIMIT:
            csv.field_size_limit(CSV_FIELD_LIMIT)
        self._binary = _open_binary(path)
        self._file = io.TextIOWrapper(
            self._binary, encoding=mapping.encoding, errors=_UNDECODABLE, newline=""
        )
        #: The line of the row read last (0: none yet).
        self.line = 0
        self._reader = csv.reader(self._lines(), delimiter=mapping.delimiter)
        try:
            self._header = self._read_header()
        except BaseException:
            self.close()
            raise
        self._fields = self._plan_fields()

    def _lines(self) -> Iterator[str]:
        """The file's lines, for csv; a line with bytes that are not in the encoding ends it."""
        for number, line in enumerate(self._file, 1):
            bad = _SURROGATE.search(line)
            if bad is not None:
                name = _encoding_name(self._mapping.encoding)
                raise BadInput(f"not {name} (column {bad.start() + 1})", f"{self.name}:{number}")
            yield line

    def _read_header(self) -> list[str]:
        row = self._next_row()
        if row is None:
            raise BadInput("no header row", f"{self.name}:1")
        seen: set[str] = set()
        for column in row:
            if column in seen:
                raise BadInput(f"column {column!r} appears twice in the header", f"{self.name}:1")
            seen.add(column)
        m = self._mapping
        wanted = [c for c, _ in m.columns or ()] + ([m.key_column] if m.key_column else [])
        for column in wanted:
            if column not in seen:
                raise BadInput(
                    f"no column {column!r} (the header has: {', '.join(row)})", f"{self.name}:1"
                )
        return row

    def _plan_fields(self) -> list[tuple[int, str]]:
        """(column index, field name) for each cell that goes into a command."""
        index = {name: i for i, name in enumerate(self._header)}
        m = self._mapping
        if m.columns is not None:
            return [(index[column], field) for column, field in m.columns]
        return [(i, name) for i, name in enumerate(self._header) if name != m.key_column]

    def _next_row(self) -> list[str] | None:
        try:
            return next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise BadInput(f"not CSV: {exc}", f"{self.name}:{self._reader.line_num}") from None
        except UnicodeError as exc:  # an encoder's state that no byte marking can handle
            line = self._reader.line_num + 1
            raise BadInput(
                f"not {_encoding_name(self._mapping.encoding)} ({exc})", f"{self.name}:{line}"
            ) from None

    def __iter__(self) -> Iterator[tuple[Key, Any]]:
        m = self._mapping
        width = len(self._header)
        key_index = self._header.index(m.key_column) if m.key_column else None
        constants = {field: _cell(field, value) for field, value in m.constants}
        try:
            while (row := self._next_row()) is not None:
                if not row:
                    continue  # a blank line
                line = self.line = self._reader.line_num
                if len(row) != width:
                    raise BadInput(
                        f"{len(row)} fields, the header has {width}", f"{self.name}:{line}"
                    )
                fields: dict[str, Any] = dict(constants)
                for i, field in self._fields:
                    cell = row[i]
                    if cell != "":
                        fields[field] = _cell(field, cell)
                key: Key = row[key_index] if key_index is not None else line
                yield key, (m.method, {"fields": fields})
        finally:
            self.close()

    def count(self) -> int | None:
        """How many rows the file has (a pass of its own), or None for stdin or a file csv
        cannot read to the end (the reading itself says where and why)."""
        if self._path == "-":
            return None
        m = self._mapping
        try:
            with open(self._path, encoding=m.encoding, newline="", errors="replace") as f:
                rows = sum(1 for row in csv.reader(f, delimiter=m.delimiter) if row)
        except (csv.Error, OSError, UnicodeError, LookupError):
            return None
        return max(0, rows - 1)

    def close(self) -> None:
        """Close the file (not stdin)."""
        with contextlib.suppress(ValueError, OSError):  # closed already
            if self._path != "-":
                self._file.close()
            else:
                self._file.detach()  # leave stdin open


def _cell(field: str, value: str) -> Any:
    if field.upper() in MULTIFIELDS:
        return [{"VALUE": value, "VALUE_TYPE": "WORK"}]
    return value


def parse_pairs(
    items: Sequence[str], what: str, *, at_last: bool
) -> tuple[tuple[str, str], ...]:
    """``LEFT=RIGHT`` options, split at the last ``=`` (`at_last`: a column name may hold one)
    or at the first (a value may)."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        left, sep, right = item.rpartition("=") if at_last else item.partition("=")
        if not sep or not left or not right:
            raise BadInput(f"{what} {item!r}: expected LEFT=RIGHT")
        pairs.append((left, right))
    return tuple(pairs)


def open_source(path: str, fmt: str | None, mapping: CsvMapping | None) -> JsonlSource | CsvSource:
    """The source for `path`: CSV when `fmt` says so or the name ends in ``.csv``."""
    if fmt is None:
        fmt = "csv" if path.lower().endswith(".csv") else "jsonl"
    if fmt == "csv":
        if mapping is None:
            raise BadInput("CSV input needs --method (the method each row calls)", _display(path))
        return CsvSource(path, mapping)
    if mapping is not None:
        raise BadInput("--method, --map, --set and --key-column are for CSV input only")
    return JsonlSource(path)
