"""The ``bitrix-batch`` command line (``pip install 'bitrix_batch[cli]'``).

    bitrix-batch run JOB.jsonl --webhook URL [--journal FILE [--resume]] [--out RESULTS.jsonl]
    bitrix-batch run leads.csv --method crm.lead.add --map Title=TITLE --map Name=NAME
    bitrix-batch export crm.deal.list --filter STAGE_ID=WON --select ID,TITLE --format csv
    bitrix-batch emulator --port 8000
    bitrix-batch demo

The webhook comes from ``--webhook`` or the ``BITRIX_WEBHOOK`` environment variable and is
never printed. Exit codes: 0 all ok; 1 some commands failed or were skipped; 2 bad input; 3
some outcomes unknown (wins over 1); 4 the job could not run. Each subcommand's ``--help``
says more. The modules: `_run` (a job file through ``stream``), `_input` (JSONL and CSV,
read lazily), `_output` (results and rows), `_export` (``list_all``), `_emulator`, `_demo`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from bitrix_batch._version import __version__

from . import _demo, _emulator, _export, _run
from ._common import ENV_WEBHOOK, EXIT_CODES_HELP, BadInput, CannotRun, Exit, Secrets, say, silence

__all__ = ["Exit", "main", "parser"]

_MASK = Secrets()


class _Parser(argparse.ArgumentParser):
    """argparse, with webhook codes masked in its error messages (they echo arguments), and
    no abbreviated options (``--allow`` must not pass for ``--allow-remote``; subcommands'
    parsers are of this class too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print the usage and the message, webhook codes masked; exit 2."""
        self.print_usage(sys.stderr)
        self.exit(int(Exit.BAD_INPUT), f"{self.prog}: error: {_MASK.message(message)}\n")


def parser() -> argparse.ArgumentParser:
    """The command line's parser (``emulator`` takes the emulator's own options)."""
    p = _Parser(
        prog="bitrix-batch",
        description="Bulk Bitrix24 REST jobs through the batch method, at the portal's speed"
        " limit, without losing or duplicating a write.",
        epilog=EXIT_CODES_HELP
        + f"\nThe webhook: --webhook URL, or the {ENV_WEBHOOK} environment variable; it is never"
        " printed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"bitrix-batch {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    _run.add_parser(sub)
    _export.add_parser(sub)
    # Listed for --help only: main() hands "emulator ..." to the emulator's own parser.
    sub.add_parser("emulator", help=_emulator.HELP, add_help=False)
    _demo.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "emulator":
            return _emulator.main(args[1:])
        p = parser()
        parsed = p.parse_args(args)
        handler = getattr(parsed, "handler", None)
        if handler is None:
            p.print_help(sys.stderr)
            return int(Exit.BAD_INPUT)
        code: int = handler(parsed)
        return code
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        return exc.code if isinstance(exc.code, int) else int(Exit.BAD_INPUT)
    except BadInput as exc:
        say(_MASK.message(str(exc)))
        return int(Exit.BAD_INPUT)
    except CannotRun as exc:
        say(f"bitrix-batch: {exc}")
        return int(Exit.CANNOT_RUN)
    except KeyboardInterrupt:
        say("bitrix-batch: interrupted")
        return 130
    finally:
        _flush()


def _flush() -> None:
    """Flush stdout and stderr now: if one cannot be written any more (``--help | head -1``),
    it is silenced, so that Python's own flush at exit does not fail (exit 120) as well."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            silence(stream)
