"""``python -m bitrix_batch.emulator``: serve an emulated portal on loopback with uvicorn.

Prints the webhook URL, then serves until Ctrl-C. Every knob of :class:`EmulatorConfig` and
:class:`FaultConfig` has an option (``--help`` lists them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .app import Emulator
from .config import EmulatorConfig, FaultConfig
from .server import bind_socket, make_server

__all__ = ["build_config", "main", "parser"]


def _scopes(text: str) -> frozenset[str] | None:
    return None if text in ("", "*", "all") else frozenset(text.split(","))


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m bitrix_batch.emulator",
        description="A local Bitrix24 REST portal (webhook and OAuth), for tests.",
    )
    d = EmulatorConfig()
    f = FaultConfig()
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    g.add_argument("--log-level", default="warning", help="uvicorn log level")
    g = p.add_argument_group("identity")
    g.add_argument("--domain", default=d.domain)
    g.add_argument("--webhook-user-id", type=int, default=d.webhook_user_id)
    g.add_argument("--webhook-code", default=d.webhook_code)
    g.add_argument("--webhook-scopes", default="*", help="comma-separated, * = all")
    g.add_argument("--oauth-client-id", default=d.oauth_client_id)
    g.add_argument("--oauth-client-secret", default=d.oauth_client_secret)
    g.add_argument("--oauth-scopes", default="*")
    g.add_argument("--access-token-ttl", type=float, default=d.access_token_ttl)
    g.add_argument("--refresh-token-ttl", type=float, default=d.refresh_token_ttl)
    g = p.add_argument_group("data")
    g.add_argument("--database", default=d.database, help="SQLite file, or :memory:")
    g.add_argument("--seed", type=int, default=d.seed)
    for name in ("leads", "contacts", "companies", "deals", "users"):
        g.add_argument(f"--seed-{name}", type=int, default=0, metavar="N")
    g = p.add_argument_group("request-rate limit (503)")
    g.add_argument("--no-rate-limit", action="store_true")
    g.add_argument("--plan", choices=["standard", "enterprise"], default=d.plan)
    g.add_argument("--rate-burst", type=int, default=None)
    g.add_argument("--rate-drain", type=float, default=None)
    g.add_argument("--rate-count-rejected", action="store_true")
    g = p.add_argument_group("operating-time limit (429)")
    g.add_argument("--no-operating-limit", action="store_true")
    g.add_argument("--operating-limit-seconds", type=float, default=d.operating_limit_seconds)
    g.add_argument("--operating-window-seconds", type=float, default=d.operating_window_seconds)
    g.add_argument("--operating-bucket-seconds", type=float, default=d.operating_bucket_seconds)
    g.add_argument(
        "--operating-mode", choices=["baskets", "window", "ban"], default=d.operating_mode
    )
    g.add_argument("--operating-ban-seconds", type=float, default=d.operating_ban_seconds)
    g.add_argument("--operating-floor-seconds", type=float, default=d.operating_floor_seconds)
    g.add_argument(
        "--batch-charge", choices=["submethods", "batch", "both"], default=d.batch_charge
    )
    g.add_argument("--batch-weight", type=float, default=d.batch_weight)
    g = p.add_argument_group("time and server parameters")
    g.add_argument("--time-scale", type=float, default=d.time_scale)
    g.add_argument(
        "--request-time-limit",
        type=float,
        default=d.request_time_limit,
        help="cut requests off after this many modelled seconds (the cloud's 60; 0: none)",
    )
    g.add_argument("--batch-max-length", type=int, default=d.batch_max_length)
    g.add_argument("--list-page-size", type=int, default=d.list_page_size)
    g.add_argument("--max-input-vars", type=int, default=d.max_input_vars)
    g.add_argument("--plain-json", action="store_true", help="no PHP-style \\u003C escapes")
    g = p.add_argument_group("faults (probabilities per request)")
    g.add_argument("--fault-seed", type=int, default=f.seed)
    for name in ("html_5xx", "unavailable_503", "drop_before_run", "fail_after_run"):
        g.add_argument("--fault-" + name.replace("_", "-"), type=float, default=0.0)
    g.add_argument("--fault-drop-after-run", type=float, default=0.0)
    g.add_argument("--fault-slow", type=float, default=0.0)
    g.add_argument("--fault-slow-seconds", type=float, default=f.slow_seconds)
    g.add_argument("--fault-html-status", type=int, default=f.html_status)
    g.add_argument("--fault-after-run-status", type=int, default=f.fail_after_run_status)
    g.add_argument("--fault-methods", default="", help="comma-separated; empty = all")
    return p


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """An :class:`EmulatorConfig` from parsed options."""
    faults = FaultConfig(
        seed=args.fault_seed,
        html_5xx=args.fault_html_5xx,
        html_status=args.fault_html_status,
        unavailable_503=args.fault_unavailable_503,
        drop_before_run=args.fault_drop_before_run,
        fail_after_run=args.fault_fail_after_run,
        fail_after_run_status=args.fault_after_run_status,
        drop_after_run=args.fault_drop_after_run,
        slow=args.fault_slow,
        slow_seconds=args.fault_slow_seconds,
        methods=frozenset(args.fault_methods.split(",")) if args.fault_methods else None,
    )
    return EmulatorConfig(
        domain=args.domain,
        webhook_user_id=args.webhook_user_id,
        webhook_code=args.webhook_code,
        webhook_scopes=_scopes(args.webhook_scopes),
        oauth_client_id=args.oauth_client_id,
        oauth_client_secret=args.oauth_client_secret,
        oauth_scopes=_scopes(args.oauth_scopes),
        access_token_ttl=args.access_token_ttl,
        refresh_token_ttl=args.refresh_token_ttl,
        database=args.database,
        seed=args.seed,
        seed_leads=args.seed_leads,
        seed_contacts=args.seed_contacts,
        seed_companies=args.seed_companies,
        seed_deals=args.seed_deals,
        seed_users=args.seed_users,
        rate_limit=not args.no_rate_limit,
        plan=args.plan,
        rate_burst=args.rate_burst,
        rate_drain=args.rate_drain,
        rate_count_rejected=args.rate_count_rejected,
        operating_limit=not args.no_operating_limit,
        operating_limit_seconds=args.operating_limit_seconds,
        operating_window_seconds=args.operating_window_seconds,
        operating_bucket_seconds=args.operating_bucket_seconds,
        operating_mode=args.operating_mode,
        operating_ban_seconds=args.operating_ban_seconds,
        operating_floor_seconds=args.operating_floor_seconds,
        batch_charge=args.batch_charge,
        batch_weight=args.batch_weight,
        time_scale=args.time_scale,
        request_time_limit=args.request_time_limit or None,
        batch_max_length=args.batch_max_length,
        list_page_size=args.list_page_size,
        max_input_vars=args.max_input_vars,
        php_json_escapes=not args.plain_json,
        faults=faults,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted."""
    args = parser().parse_args(argv)
    emulator = Emulator(build_config(args))
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    base = f"http://{host}:{port}"
    print(f"Bitrix24 emulator on {base}", flush=True)
    print(f"webhook: {emulator.webhook_url(base)}", flush=True)
    print(f"OAuth:   {emulator.oauth_url(base)} (tokens: POST {base}/_emulator/oauth/issue)")
    print(f"stats:   {base}/_emulator/stats   (Ctrl-C stops)", flush=True)
    server = make_server(emulator, log_level=args.log_level)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn has already shut down gracefully; it re-raises the signal afterwards.
        print("stopped", flush=True)
    finally:
        sock.close()
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
