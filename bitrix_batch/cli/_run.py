"""``bitrix-batch run``: a job file through `BitrixClient.stream`, outcomes to JSONL as they come.

The file is read lazily (a window of commands at a time), each outcome is written as soon as it
is final and then forgotten, so a job of millions runs in the memory of a few thousand. With
``--journal`` the job is recorded as it goes and can be resumed after any crash (``--resume``):
commands done before are not sent again, writes that were in flight come back as unknown.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from bitrix_batch._client import BitrixClient
from bitrix_batch._errors import (
    APIError,
    AuthError,
    DuplicateKeyError,
    JournalError,
    TransportError,
)
from bitrix_batch._intake import DEFAULT_LOOKBACK, DEFAULT_WINDOW
from bitrix_batch._result import CommandResult, SkipReason, Status
from bitrix_batch.journal import Journal
from bitrix_batch.progress import JobCounts, ProgressBar

from ._common import (
    EXIT_CODES_HELP,
    BadInput,
    Exit,
    LogSetup,
    Secrets,
    add_client_options,
    add_common_options,
    int_at_least,
    make_client,
    resolve_webhook,
    say,
    want_progress,
)
from ._input import (
    CsvMapping,
    CsvSource,
    JsonlSource,
    check_delimiter,
    check_encoding,
    open_source,
    parse_pairs,
)
from ._output import JsonLines, OutputFailed

__all__ = ["JobReport", "add_parser", "drive", "run"]

_DESCRIPTION = """\
Run the commands of a job file through Bitrix24's batch method, as fast as the portal's
limits allow, and write each command's outcome as one JSON line (to --out, or stdout).

JSONL input: one command per line, {"key": ..., "method": ..., "params": {...}}; params may
refer to earlier commands as the server does, "$result[key][FIELD]". Without a "key" a line's
key is its line number.

CSV input (a .csv file, or --format csv): one --method call per row, {"fields": {...}} from
the columns: --map COLUMN=FIELD for each column to send (without --map, every column under
its own name), --set FIELD=VALUE for fields every row gets. An empty cell sends nothing;
PHONE/EMAIL/WEB/IM cells are sent as one WORK entry. The key is --key-column's value, or the
line number.

A malformed line (not JSON, a CSV row with the wrong number of fields) stops the reading:
what was read before it still runs and is written, and the job exits 2 naming FILE:LINE.
A well-formed but invalid command is reported as skipped (with its "line") and the job goes on.
"""

_EPILOG = (
    EXIT_CODES_HELP
    + """
A journal (--journal FILE) records, before each request, the commands it carries, and after
it their outcomes. Run the same job again with --resume after a crash: what is done is not
sent again (its outcome is written from the journal), reads in flight are sent again, and
writes in flight are reported as unknown (exit 3) unless --resend-unknown.

If the outcomes cannot be written (stdout piped into a program that exits, a full disk), the
job stops there: exit 3 if requests had been sent (the outcomes from there on are unknown:
writes in flight may or may not have run), else 1 (the rest was not sent).
"""
)


def add_parser(sub: Any) -> None:
    """Add ``run`` to the subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run a job file (JSONL or CSV), outcomes to JSONL",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", metavar="JOB", help="the job file (.jsonl or .csv; - for stdin)")
    p.add_argument("--format", choices=["jsonl", "csv"], help="the job's format (default: by name)")
    p.add_argument("--out", metavar="RESULTS", help="where outcomes go, as JSONL (default: stdout)")
    p.add_argument("--journal", metavar="FILE", help="record the job in this SQLite journal")
    p.add_argument(
        "--resume", action="store_true", help="continue the job the journal recorded"
    )
    p.add_argument(
        "--resend-unknown",
        action="store_true",
        help="with --resume: send again writes that were in flight (they may then run twice)",
    )
    p.add_argument(
        "--lookback",
        type=int_at_least(0),
        default=DEFAULT_LOOKBACK,
        metavar="N",
        help="how many commands back a $result reference may point (default: 10000)",
    )
    p.add_argument(
        "--halt",
        action="store_true",
        help="stop at the first failed command, in file order (the server's halt=1)",
    )
    g = p.add_argument_group("CSV input")
    g.add_argument("--method", help="the method each row calls, e.g. crm.lead.add")
    g.add_argument(
        "--map", action="append", default=[], metavar="COLUMN=FIELD", help="send COLUMN as FIELD"
    )
    g.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="FIELD on every row"
    )
    g.add_argument("--key-column", metavar="COLUMN", help="the column that holds each row's key")
    g.add_argument(
        "--delimiter", default=",", help="the field separator, one character; \\t: tab (default: ,)"
    )
    g.add_argument("--encoding", default="utf-8-sig", help="the file's encoding (utf-8)")
    add_client_options(p)
    add_common_options(p)
    p.set_defaults(handler=run)


@dataclass
class JobReport:
    """How a job went: the counts, and what stopped it, if anything did."""

    counts: JobCounts
    seconds: float
    #: The error that stopped every further request (a refused webhook), if one did.
    fatal: BaseException | None = None
    #: No command got an answer, and this transport error is why.
    unreachable: TransportError | None = None
    #: The line that could not be read (the input ended there).
    bad_input: BadInput | None = None
    #: Why the outcomes could not be written (the job was stopped there, if it still ran).
    output_failed: OutputFailed | None = None
    #: The job was stopped before every command had an outcome (`output_failed`).
    cut_short: bool = False
    #: ... after requests had been sent: the outcomes from there on are not known (writes in
    #: flight may or may not have run, final outcomes in hand were not written).
    lost: bool = False
    #: HTTP requests in flight when it was stopped.
    in_flight: int = 0

    def exit_code(self) -> Exit:
        """4 could not run, 2 bad input, 3 unknown outcomes, 1 not all ok, else 0."""
        c = self.counts
        if self.fatal is not None or self.unreachable is not None:
            return Exit.CANNOT_RUN
        if self.bad_input is not None:
            return Exit.BAD_INPUT
        if c.unknown or self.lost:
            return Exit.UNKNOWN
        if c.failed or c.skipped or self.cut_short:
            return Exit.NOT_ALL_OK
        return Exit.OK


def _stops_the_job(cause: BaseException) -> bool:
    """Whether a skipped command's cause is one that stops the whole job (see `_client`)."""
    if isinstance(cause, AuthError | JournalError):
        return True
    return isinstance(cause, APIError) and cause.status_code in (400, 403, 404)


async def drive(
    client: BitrixClient,
    source: Iterable[tuple[Any, Any]],
    *,
    counts: JobCounts,
    bar: ProgressBar | None = None,
    sink: Callable[[CommandResult], None] | None = None,
    journal: Journal | None = None,
    halt: bool = False,
    lookback: int = DEFAULT_LOOKBACK,
) -> JobReport:
    """Run `source` through `client.stream`, counting each outcome and handing it to `sink`.

    A sink that raises `OutputFailed` stops the job (what is in flight is cancelled): the
    report says so, and how many outcomes that left unknown (for that, `counts` must also be
    fed the client's events).
    """
    count = bar.add if bar is not None else counts.add
    report = JobReport(counts, 0.0)
    transport: TransportError | None = None
    engine = _Progress(bar)
    watched = _Watched(source)
    started = time.monotonic()
    try:
        async with client.stream(
            watched, halt=halt, journal=journal, lookback=lookback, progress=engine
        ) as results:
            async for r in results:
                count(r)
                if sink is not None:
                    try:
                        sink(r)
                    except OutputFailed as exc:  # stop: nobody would learn how the rest went
                        report.output_failed = exc
                        report.in_flight = counts.in_flight
                        # Outcomes come a request's worth at a time: those of the request
                        # at hand may be final but not yet counted, so any request sent
                        # leaves some unknown, unless the job was done.
                        done = (
                            watched.exhausted
                            and not counts.in_flight
                            and engine.done == engine.total == counts.outcomes
                        )
                        report.cut_short = not done
                        report.lost = not done and counts.requests > 0
                        break
                cause = r.skip.cause if r.skip is not None else None
                if cause is not None:
                    if report.fatal is None and _stops_the_job(cause):
                        report.fatal = cause
                    elif transport is None and isinstance(cause, TransportError):
                        transport = cause
    except BadInput as exc:  # from the file, at a malformed line: what came before has run
        report.bad_input = exc
    except JournalError as exc:  # a resumed journal that belongs to another job
        report.bad_input = BadInput(str(exc))
    report.seconds = time.monotonic() - started
    if transport is not None and not (counts.ok or counts.failed or counts.unknown):
        report.unreachable = transport
    return report


class _Progress:
    """The stream's ``progress`` callback: what the engine made final, handed on to the bar."""

    def __init__(self, bar: ProgressBar | None) -> None:
        self._bar = bar
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.update(done, total)


class _Watched:
    """A source that says when it has been read to its end."""

    def __init__(self, source: Iterable[tuple[Any, Any]]) -> None:
        self._source = source
        self.exhausted = False

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        yield from self._source
        self.exhausted = True


class _Lines:
    """Where the commands of a file came from, for the skipped outcomes the engine reports
    without their method (a duplicate key, an empty key): each gets its method and its
    ``line``, and so does every other invalid command.

    It keeps the keys as the engine does (`CommandReader`: the `lookback` read last), so it
    knows which command the engine will find a duplicate, and what it read last, a window's
    worth, for the rest; memory stays bounded.
    """

    def __init__(self, source: JsonlSource | CsvSource, lookback: int) -> None:
        self._source = source
        self._lookback = lookback
        self._keys: dict[str, int] = {}  # the keys the engine knows -> their read index
        self._recent: deque[tuple[str, int]] = deque()
        self._lines: OrderedDict[str, int] = OrderedDict()  # key -> line, the last read
        self._keep = DEFAULT_WINDOW + 4 * 50  # read ahead + a few batches in hand
        #: (method, line) of the commands the engine will skip for their key, by key.
        self._doomed: dict[str, deque[tuple[str, int]]] = {}
        self._doomed_count = 0

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for index, (key, command) in enumerate(self._source):
            self._note(index, str(key), _method_of(command), self._source.line)
            yield key, command

    def _note(self, index: int, key: str, method: str, line: int) -> None:
        if key == "" or key in self._keys:  # refused by the engine before it reads the rest
            if self._doomed_count < self._keep:  # else it is not keeping up: give up quietly
                self._doomed.setdefault(key, deque()).append((method, line))
                self._doomed_count += 1
            return
        self._keys[key] = index
        self._recent.append((key, index))
        while len(self._recent) > self._lookback + 1:
            old, old_index = self._recent.popleft()
            if self._keys.get(old) == old_index:
                del self._keys[old]
        self._lines[key] = line
        self._lines.move_to_end(key)
        if len(self._lines) > self._keep:
            self._lines.popitem(last=False)

    def annotate(self, r: CommandResult) -> dict[str, Any] | None:
        """The method and line to add to `r`'s record, if it is an invalid command."""
        if r.status is not Status.SKIPPED or r.skip is None:
            return None
        if r.skip.reason is not SkipReason.INVALID_COMMAND:
            return None
        key = str(r.key)
        doomed = self._doomed.get(key)
        if doomed and (key == "" or isinstance(r.skip.cause, DuplicateKeyError) or not r.method):
            method, at = doomed.popleft()
            self._doomed_count -= 1
            if not doomed:
                del self._doomed[key]
            return {"method": r.method or method, "line": at}
        line = self._lines.get(key)
        return {"line": line} if line is not None else None


def _method_of(command: Any) -> str:
    """The method of a command as the sources give them (a JSONL object, a CSV tuple)."""
    if isinstance(command, dict):
        method = command.get("method")
    elif isinstance(command, tuple | list) and command:
        method = command[0]
    else:
        method = None
    return method if isinstance(method, str) else ""


def _csv_mapping(args: argparse.Namespace) -> CsvMapping | None:
    if args.method is None:
        if args.map or args.set or args.key_column:
            raise BadInput("--map, --set and --key-column need --method (for CSV input)")
        return None
    columns = parse_pairs(args.map, "--map", at_last=True) if args.map else None
    return CsvMapping(
        method=args.method,
        columns=columns,
        key_column=args.key_column,
        constants=parse_pairs(args.set, "--set", at_last=False),
        delimiter=check_delimiter(args.delimiter),
        encoding=check_encoding(args.encoding),
    )


def _open_journal(args: argparse.Namespace) -> Journal | None:
    if args.journal is None:
        if args.resume or args.resend_unknown:
            raise BadInput("--resume and --resend-unknown need --journal FILE")
        return None
    if args.resend_unknown and not args.resume:
        raise BadInput("--resend-unknown goes with --resume")
    try:
        journal = Journal(args.journal, resend_unknown=args.resend_unknown)
    except JournalError as exc:  # its message names the file
        raise BadInput(str(exc)) from None
    counts = journal.counts()
    if counts and not args.resume:
        journal.close()
        raise BadInput(
            f"the journal holds {sum(counts.values())} commands of an earlier run; pass"
            " --resume to continue that job, or use a new journal file",
            args.journal,
        )
    if counts:
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        say(f"bitrix-batch: resuming the job in {args.journal} ({states})")
    return journal


def run(args: argparse.Namespace) -> int:
    """``bitrix-batch run``: see the subcommand's ``--help``."""
    url, secrets = resolve_webhook(args.webhook)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(LogSetup(args.log_level, secrets))
        source = open_source(args.job, args.format, _csv_mapping(args))
        stack.callback(source.close)
        journal = _open_journal(args)
        if journal is not None:
            stack.callback(journal.close)
        out = stack.enter_context(JsonLines(args.out, secrets))
        lines = _Lines(source, args.lookback)

        def sink(r: CommandResult) -> None:
            out.outcome(r, lines.annotate(r))

        bar: ProgressBar | None = None
        counts = JobCounts()
        if want_progress(args.progress):
            bar = stack.enter_context(ProgressBar(source.count()))
            log.handler.bar = bar  # log lines go above the bar
            counts = bar.counts
        client = make_client(url, args, bar.on_event if bar else counts.on_event)

        async def job() -> JobReport:
            async with client:
                return await drive(
                    client,
                    lines,
                    counts=counts,
                    bar=bar,
                    sink=sink,
                    journal=journal,
                    halt=args.halt,
                    lookback=args.lookback,
                )

        def bar_done() -> None:
            if bar is not None:
                bar.close()  # the final counts stay on screen, above the summary
                log.handler.bar = None

        try:
            report = anyio.run(job)
        except KeyboardInterrupt:
            bar_done()
            again = f"; --resume with --journal {args.journal} goes on" if journal else ""
            say(
                f"bitrix-batch: interrupted after {counts.outcomes} outcomes"
                f" ({counts.summary()}){again}"
            )
            return 130
        bar_done()
    if report.output_failed is None:
        report.output_failed = out.failed  # the last flush, when the job was done
    again = f"; --resume with --journal {args.journal} goes on" if journal else ""
    return _finish(report, secrets, again)


def _finish(report: JobReport, secrets: Secrets, again: str = "") -> int:
    """Say how the job went, on stderr, and return its exit code."""
    c = report.counts
    say(f"bitrix-batch: {c.outcomes} commands in {report.seconds:.1f} s: {c.summary()}")
    if report.fatal is not None:
        say(secrets.message(f"bitrix-batch: the job stopped: {report.fatal}"))
    elif report.unreachable is not None:
        say(secrets.message(f"bitrix-batch: the portal cannot be reached: {report.unreachable}"))
    if report.bad_input is not None:
        say(secrets.message(str(report.bad_input)))
    if report.output_failed is not None:
        if report.lost:
            then = (
                f"the job stopped there, with {report.in_flight} requests in flight; the"
                " outcomes from there on are unknown (writes may or may not have run)"
                f"{again}"
            )
        elif report.cut_short:
            then = f"the job stopped there; the commands after those were not sent{again}"
        else:
            then = "the last outcomes may not have been written"
        say(secrets.message(f"bitrix-batch: {report.output_failed}: {then}"))
    if c.unknown:
        say(
            f"bitrix-batch: {c.unknown} outcomes are unknown: those writes may or may not have"
            " run; check them in the portal before sending them again"
        )
    return int(report.exit_code())
