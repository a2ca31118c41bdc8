"""What every subcommand shares: exit codes, bad input, the webhook and its secret, logging,
whether to draw a progress bar, the client's options, and messages on stderr that cannot fail
(`say`: a stderr that stopped taking writes is silenced, never the command's end)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import IO, Any
from urllib.parse import urlsplit

from bitrix_batch._auth import Webhook
from bitrix_batch._client import BitrixClient
from bitrix_batch._events import EventHook
from bitrix_batch._retry import RetryPolicy
from bitrix_batch._throttle import RateLimit
from bitrix_batch.progress import ProgressBar

__all__ = [
    "ENV_WEBHOOK",
    "BadInput",
    "CannotRun",
    "Exit",
    "LogSetup",
    "Secrets",
    "add_client_options",
    "add_common_options",
    "make_client",
    "resolve_webhook",
    "say",
    "silence",
    "want_progress",
]

#: The environment variable read when ``--webhook`` is not given.
ENV_WEBHOOK = "BITRIX_WEBHOOK"

_LOG = logging.getLogger("bitrix_batch")


class Exit(IntEnum):
    """The command line's exit codes (documented in ``--help`` and the README)."""

    OK = 0
    #: Some commands failed or were skipped (a failed page, for export).
    NOT_ALL_OK = 1
    #: Bad input: usage, a file that cannot be read, a malformed line.
    BAD_INPUT = 2
    #: Some outcomes are unknown (wins over 1).
    UNKNOWN = 3
    #: The job could not run: the webhook was refused, the portal unreachable.
    CANNOT_RUN = 4


EXIT_CODES_HELP = """\
exit codes:
  0  every command succeeded
  1  some commands failed or were skipped, or the outcomes could not all be written
  2  bad input: usage, a file that cannot be read, a malformed line (named as FILE:LINE)
  3  some outcomes are unknown (a write that may or may not have run; wins over 1)
  4  the job could not run: the webhook was refused, the portal unreachable
When several apply, the first of 4, 2, 3, 1 is the exit code.
"""


class BadInput(Exception):
    """Input the command line cannot use (exit 2); ``str()`` is the one line shown.

    With `where` (``job.jsonl:17``, ``job.jsonl``) the line is ``job.jsonl:17: not JSON: ...``,
    as compilers name a place; without, ``bitrix-batch: <message>``.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else f"bitrix-batch: {message}")
        self.where = where


class CannotRun(Exception):
    """The command cannot run here (a missing extra); exit 4 with the message."""


class Secrets:
    """The texts never to show (the webhook's code), and their removal from any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        """`text` with every secret replaced by ``***`` (for data: results and rows)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def message(self, text: str) -> str:
        """A message for people with the secrets masked, and the code of any webhook URL in it
        too (an unknown option's value that argparse echoes may be another webhook)."""
        return _WEBHOOK_IN_TEXT.sub(r"\1***", self(text))


_WEBHOOK_IN_TEXT = re.compile(r"(/rest/[^/\s]+/)[^/\s]+")


def resolve_webhook(given: str | None) -> tuple[str, Secrets]:
    """The webhook from ``--webhook`` or `ENV_WEBHOOK`, checked, and its secrets."""
    url = given if given else os.environ.get(ENV_WEBHOOK, "")
    if not url:
        raise BadInput(f"no webhook: pass --webhook URL or set {ENV_WEBHOOK}")
    try:
        webhook = Webhook.parse(url)
        port = urlsplit(webhook.url).port  # ValueError: not a number, or over 65535
    except ValueError as exc:  # its message never holds the URL
        raise BadInput(f"the webhook: {exc}") from None
    if port == 0:
        raise BadInput("the webhook: port 0 cannot be connected to")
    return webhook.url, Secrets(webhook.secrets)


_RATE_LIMITS: dict[str, RateLimit | None] = {
    "standard": RateLimit.STANDARD,
    "enterprise": RateLimit.ENTERPRISE,
    "off": None,
}


def add_common_options(p: argparse.ArgumentParser) -> None:
    """``--progress/--no-progress`` and ``--log-level``."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log the bitrix_batch logger to stderr at this level (info: holds and retries;"
        " debug: every request) (default: warning)",
    )


def add_client_options(p: argparse.ArgumentParser) -> None:
    """``--webhook`` and the client's tuning."""
    p.add_argument(
        "--webhook",
        metavar="URL",
        help=f"the inbound webhook, https://<portal>/rest/<user>/<code>/ (default: ${ENV_WEBHOOK});"
        " never printed",
    )
    g = p.add_argument_group("client")
    g.add_argument(
        "--rate-limit",
        choices=sorted(_RATE_LIMITS),
        default="standard",
        help="the portal's request bucket: standard (burst 50, 2/s), enterprise (250, 5/s),"
        " or off (default: standard)",
    )
    g.add_argument(
        "--max-concurrency",
        type=int_at_least(1),
        default=16,
        metavar="N",
        help="HTTP requests in flight at once (default: 16)",
    )
    g.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds per HTTP call (30)"
    )
    g.add_argument(
        "--attempts",
        type=int_at_least(1),
        default=RetryPolicy().attempts,
        metavar="N",
        help="the most times one HTTP call is tried, when retrying is safe (default: 8)",
    )


def make_client(url: str, args: argparse.Namespace, on_event: EventHook | None) -> BitrixClient:
    """The client for a job, with the options of `add_client_options`."""
    return BitrixClient(
        url,
        rate_limit=_RATE_LIMITS[args.rate_limit],
        max_concurrency=args.max_concurrency,
        timeout=args.timeout,
        retry=RetryPolicy(attempts=args.attempts),
        on_event=on_event,
    )


def want_progress(choice: bool | None, stream: IO[Any] | None = None) -> bool:
    """Whether to draw a bar: as asked, else when `stream` (stderr) is a terminal and tqdm is
    installed. Asked for without tqdm: bad input naming the extra."""
    stream = stream if stream is not None else sys.stderr
    if choice is False or (choice is None and stream is None):  # None: stderr is closed
        return False
    try:
        import tqdm  # noqa: F401  (only whether it is there)
    except ImportError:
        if choice:
            raise CannotRun("--progress needs tqdm: pip install 'bitrix_batch[cli]'") from None
        return False
    if choice:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Handler(logging.Handler):
    """Writes log records to stderr, above the progress bar if one is drawn, secrets masked."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets
        self.bar: ProgressBar | None = None
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.secrets.message(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if self.bar is not None:
            self.bar.write(text)  # never raises: a broken stream only stops the drawing
        else:
            say(text)


class LogSetup:
    """The ``bitrix_batch`` logger wired to stderr for one command, undone when it ends."""

    def __init__(self, level: str, secrets: Secrets) -> None:
        self.handler = _Handler(secrets)
        self._level = _LOG.level
        _LOG.setLevel(level.upper())
        _LOG.addHandler(self.handler)

    def close(self) -> None:
        """Detach the handler (in-process callers, such as tests, run many commands)."""
        _LOG.removeHandler(self.handler)
        _LOG.setLevel(self._level)

    def __enter__(self) -> LogSetup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def say(text: str) -> None:
    """Print `text` as a line on stderr. A stderr that cannot be written (a closed pipe, a full
    disk, closed) is `silence`d instead: messages never change a command's exit code."""
    stream = sys.stderr
    if stream is None:  # started with stderr closed (2>&-)
        return
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):  # ValueError: a closed file
        silence(stream)


def silence(stream: IO[Any]) -> None:
    """Point `stream`'s file descriptor at the null device, if it has one: what it still holds
    in its buffer, and what is written to it later, then goes nowhere instead of failing again
    (Python flushes stdout and stderr at exit, and would exit 120 if that failed)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's), or closed
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse
