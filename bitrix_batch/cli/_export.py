"""``bitrix-batch export``: every row of a list method, through `BitrixClient.list_all`,
streamed to JSONL or CSV as it is read."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import anyio

from bitrix_batch._errors import APIError, BitrixBatchError, PlanError, TransportError
from bitrix_batch.progress import ProgressBar

from ._common import (
    BadInput,
    Exit,
    LogSetup,
    add_client_options,
    add_common_options,
    make_client,
    resolve_webhook,
    say,
    want_progress,
)
from ._output import CsvRows, OutputFailed, row_writer

__all__ = ["add_parser", "parse_filter", "run"]

_EPILOG = """\
filters: --filter FIELD=VALUE, with the server's operator prefixes in FIELD
(">=DATE_CREATE=2024-01-01", "!STATUS_ID=JUNK", "%TITLE=shop"); the same FIELD given again
means one of the values (an IN list). Or a JSON object: --filter '{">OPPORTUNITY": 1000}'.

The ID cursor (the default for methods with filter/order) reads about 2,500 rows per request
and every row that exists for the whole walk exactly once; --by-offset pages with start/next
(user.get and department.get always do).

CSV: with --select naming the fields (no * or UF_*), the header is those fields, then any
other field of the first row (the ID that the cursor adds); a row without one has an empty
cell there. Otherwise the header is the first row's fields. A later row's field that is not
a column is left out (said on stderr, exit 1).

exit codes:
  0  every row was read and written
  1  a page failed (the rows before it are written), a field was left out of the CSV, or
     the rows could not all be written (stdout closed, a full disk: the export stops there)
  2  bad input: usage, a filter or a parameter the method does not take
  4  the export could not run or was cut off: the webhook was refused, the portal
     unreachable (the rows read before are written)
"""

# An operator prefix, a field name, "=", the value ("=" in the value is kept).
_FILTER_ITEM = re.compile(r"(?P<field>[!<>=%@]*[^!<>=%@][^=]*)=(?P<value>.*)\Z", re.DOTALL)


def add_parser(sub: Any) -> None:
    """Add ``export`` to the subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="every row of a list method (crm.lead.list...) to JSONL or CSV",
        description="Read every row of a list method, as fast as the portal allows, and"
        " write them as JSON lines or CSV (to --out, or stdout).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", metavar="METHOD", help="a list method, e.g. crm.deal.list")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FIELD=VALUE|JSON",
        help="a filter item, or a JSON object of them (repeatable)",
    )
    p.add_argument("--select", metavar="F1,F2", help="the fields to read (default: the method's)")
    p.add_argument(
        "--params", metavar="JSON", help='other parameters, e.g. \'{"entityTypeId": 2}\''
    )
    p.add_argument(
        "--by-offset", action="store_true", help="page with start/next instead of the ID cursor"
    )
    p.add_argument(
        "--format", choices=["jsonl", "csv"], help="default: by --out's name, else jsonl"
    )
    p.add_argument("--out", metavar="FILE", help="where rows go (default: stdout)")
    add_client_options(p)
    add_common_options(p)
    p.set_defaults(handler=run)


def parse_filter(items: Sequence[str]) -> dict[str, Any]:
    """The ``filter`` from ``--filter`` options: FIELD=VALUE items, or JSON objects."""
    result: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except json.JSONDecodeError as exc:
                raise BadInput(f"--filter: not JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(value, dict):
                raise BadInput("--filter: a JSON filter must be an object")
            result.update(value)
            continue
        match = _FILTER_ITEM.match(item)
        if match is None:
            raise BadInput(f"--filter {item!r}: expected FIELD=VALUE or a JSON object")
        field, value = match.group("field"), match.group("value")
        if field in result:  # a field again: one of these values
            before = result[field]
            result[field] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            result[field] = value
    return result


def _params(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    params: dict[str, Any] = {}
    if args.params:
        try:
            given = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise BadInput(f"--params: not JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(given, dict):
            raise BadInput("--params must be a JSON object")
        params.update(given)
    filt = parse_filter(args.filter)
    if filt:
        given_filter = params.get("filter", {})
        if not isinstance(given_filter, dict):
            raise BadInput(
                "--params: its \"filter\" must be a JSON object to be combined with --filter,"
                f" not {type(given_filter).__name__}"
            )
        params["filter"] = {**given_filter, **filt}
    select = [s.strip() for s in args.select.split(",") if s.strip()] if args.select else []
    if select:
        params["select"] = select
    return params, select


def run(args: argparse.Namespace) -> int:
    """``bitrix-batch export``: see the subcommand's ``--help``."""
    url, secrets = resolve_webhook(args.webhook)
    params, select = _params(args)
    fmt = args.format or ("csv" if (args.out or "").lower().endswith(".csv") else "jsonl")
    # The CSV's header, if --select names every field (and then the first row's others: the
    # ID that the cursor adds to the select).
    columns = select if select and not any("*" in s for s in select) else None
    code = Exit.OK
    failure: BaseException | None = None
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(LogSetup(args.log_level, secrets))
        out = row_writer(fmt, args.out, secrets, columns)
        stack.callback(out.close)
        bar: ProgressBar | None = None
        if want_progress(args.progress):
            bar = stack.enter_context(ProgressBar(desc="rows", unit="row"))
            log.handler.bar = bar
        client = make_client(url, args, bar.on_event if bar else None)
        started = time.monotonic()

        async def export() -> None:
            async with client:
                rows = client.list_all(args.method, params, by_id=False if args.by_offset else None)
                async for row in rows:
                    try:
                        out.write(row)
                    except OutputFailed:  # recorded in out.failed: the rest is not read
                        break
                    if bar is not None:
                        bar.update(out.written)

        try:
            anyio.run(export)
        except PlanError as exc:  # before anything was sent; say it in the CLI's terms
            raise BadInput(str(exc).replace("pass by_id=False", "pass --by-offset")) from None
        except (TransportError, APIError) as exc:  # nothing could be read at all
            code, failure = Exit.CANNOT_RUN, exc
        except BitrixBatchError as exc:  # a page failed: CommandError, unknown, a bad answer
            code, failure = Exit.NOT_ALL_OK, exc
        if bar is not None:
            bar.close()
            log.handler.bar = None
        seconds = time.monotonic() - started
    say(f"bitrix-batch: {out.written} rows of {args.method} in {seconds:.1f} s")
    if failure is not None:
        what = "could not run" if code == Exit.CANNOT_RUN else "stopped"
        say(secrets.message(f"bitrix-batch: the export {what}: {failure}"))
    if out.failed is not None:
        say(secrets.message(f"bitrix-batch: {out.failed}: the export stopped there"))
        if code == Exit.OK:
            code = Exit.NOT_ALL_OK
    if isinstance(out, CsvRows) and out.dropped and code == Exit.OK:
        code = Exit.NOT_ALL_OK  # said when it happened
    return int(code)
