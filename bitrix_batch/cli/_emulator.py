"""``bitrix-batch emulator``: the local Bitrix24 emulator's own command line, on loopback.

Every option is `bitrix_batch.emulator.__main__`'s (this module parses them with its parser
and hands the same arguments to its ``main``). The emulator's webhook code is public, so a
host other than a loopback address is refused unless ``--allow-remote`` says it is meant.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence

from ._common import BadInput, CannotRun

__all__ = ["HELP", "main"]

HELP = "serve the local Bitrix24 emulator (for tests; options: bitrix-batch emulator --help)"

_ALLOW = "--allow-remote"


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str]) -> int:
    """Serve the emulator until interrupted (``--help`` lists its options)."""
    try:
        from bitrix_batch.emulator import __main__ as emulator_cli
    except ImportError as exc:  # pragma: no cover - the emulator ships with the package
        raise BadInput(f"the emulator cannot be loaded: {exc}") from None
    parser = emulator_cli.parser()
    parser.prog = "bitrix-batch emulator"
    # No abbreviations: "--allow" would pass for --allow-remote here, and then be refused by
    # the emulator's own parser (it is not one of its options), and "--hos" would be checked
    # here as --host but reach the emulator as it is.
    parser.allow_abbrev = False
    parser.add_argument(
        _ALLOW,
        action="store_true",
        help="serve on a host that is not loopback (anyone who reaches it can use the"
        " emulator's well-known webhook)",
    )
    args = parser.parse_args(argv)  # --help and bad options end here
    if not _loopback(args.host) and not args.allow_remote:
        raise BadInput(
            f"--host {args.host}: not a loopback address; the emulator's webhook code is"
            f" public, so pass {_ALLOW} if it is meant to be reachable from elsewhere"
        )
    try:
        import uvicorn  # noqa: F401  (only whether it is there)
    except ImportError:
        raise CannotRun(
            "serving the emulator needs uvicorn: pip install 'bitrix_batch[cli]'"
        ) from None
    sys.stdout.flush()
    return emulator_cli.main([a for a in argv if a != _ALLOW])
