"""Issue #8: export a whole list: bitrix_batch `list_all` vs fast-bitrix24 `get_all` vs
b24pysdk `as_list_fast`, in one run, against the emulator with its real rate limit on.

    python -m benchmarks.bench_export                  # 100,000 leads, bucket 50 / 2 per s
    python -m benchmarks.bench_export --rows 400000    # past the burst: the bucket binds
    python -m benchmarks.bench_export --smoke          # 5,000 leads: checks the harness only

Each tool runs in its own process against a fresh emulator served by uvicorn in another
(``python -m bitrix_batch.emulator`` on 127.0.0.1), seeded with the same ``--rows`` leads
(IDs 1..rows), with the standard plan's leaky bucket (block above 50, drain 2 per second;
``--scale K`` drains K times faster on both sides) and the operating-time limit off: the
modelled cost of a 50-page batch would otherwise hold ``crm.lead.list`` for minutes, and that
is another benchmark. Every tool asks for ``select: [ID, TITLE]``.

Figures per tool: rows returned and distinct IDs (the check: exactly IDs 1..rows), wall time
of the export call, HTTP requests and 503 answers as the emulator counted them, list commands
run, and the bucket's bound: ``R`` requests cannot take less than ``max(0, R - 50) / drain``
seconds. ``bound/wall`` is that bound for the tool's own accepted requests (a 503 does not
fill the server's bucket) over its wall time: how close it runs to the limit. ``ideal
bound/wall`` uses the fewest requests an export can take, ``ceil(rows / 2,500)``, so it also
counts requests wasted. Both read "within burst" when the requests fit in the first 50, where
the bucket does not bind at all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._support import (
    EmulatorProcess,
    emit,
    engine_info,
    environment,
    fmt,
    run_worker,
    text_table,
    watchdog,
    write_json,
)

BURST = 50
DRAIN = 2.0
ROWS_PER_REQUEST = 2_500
TOOLS = ("ours", "fast_bitrix24", "b24pysdk")
SELECT = ["ID", "TITLE"]


# --- the server ----------------------------------------------------------------------------


# --- the tools (each in a worker process) --------------------------------------------------


def run_ours(url: str, scale: float) -> tuple[list[Any], str]:
    """bitrix_batch: ``await client.list_all("crm.lead.list", ...)`` with the default bucket."""
    import anyio

    from bitrix_batch import BitrixClient, RateLimit

    rate = RateLimit(BURST, DRAIN * scale)
    settings = f"BitrixClient(rate_limit=RateLimit({BURST}, {rate.per_second:g})).list_all(...)"

    async def main() -> list[Any]:
        async with BitrixClient(url, rate_limit=rate) as client:
            rows = await client.list_all("crm.lead.list", {"select": SELECT})
        return [row["ID"] for row in rows]

    return anyio.run(main), settings


def run_fast_bitrix24(url: str, scale: float) -> tuple[list[Any], str]:
    """fast-bitrix24: ``await BitrixAsync(...).get_all("crm.lead.list", ...)``."""
    import anyio
    from fast_bitrix24 import BitrixAsync

    rps = DRAIN * scale
    settings = f"BitrixAsync(verbose=False, requests_per_second={rps:g}).get_all(...)"

    async def main() -> list[Any]:
        b = BitrixAsync(url, verbose=False, requests_per_second=rps)
        rows = await b.get_all("crm.lead.list", {"select": SELECT})
        return [row["ID"] for row in rows]

    return anyio.run(main, backend="asyncio"), settings  # aiohttp needs asyncio


def run_b24pysdk(url: str, scale: float) -> tuple[list[Any], str]:
    """b24pysdk: ``client.crm.lead.list(select=...).as_list_fast().result`` (sync, sequential;
    its hard-coded https patched to http the documented way)."""
    import importlib

    import b24pysdk

    caller = importlib.import_module("b24pysdk.api.callers.call_method")
    caller._MethodCaller._base_url = property(lambda self: f"http://{self._domain}/rest")
    base, _, token = url.removeprefix("http://").partition("/rest/")
    client = b24pysdk.Client(b24pysdk.BitrixWebhook(domain=base, webhook_token=token.strip("/")))
    settings = "Client(BitrixWebhook).crm.lead.list(...).as_list_fast() defaults"
    rows = list(client.crm.lead.list(select=SELECT).as_list_fast().result)
    return [row["ID"] for row in rows], settings


RUNNERS = {"ours": run_ours, "fast_bitrix24": run_fast_bitrix24, "b24pysdk": run_b24pysdk}


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one tool once; return what it read (as ID figures) and how long it took."""
    out: dict[str, Any] = {"ok": False, "engine": engine_info()}
    began = time.perf_counter()
    try:
        ids, out["settings"] = RUNNERS[payload["tool"]](payload["url"], payload["scale"])
    except Exception as exc:
        out["wall_s"] = time.perf_counter() - began
        out["error"] = f"{type(exc).__name__}: {exc}"[:400]
        return out
    out["wall_s"] = time.perf_counter() - began
    numbers = [int(i) for i in ids]
    distinct = set(numbers)
    out.update(
        ok=True,
        rows=len(numbers),
        distinct=len(distinct),
        # exactly the seeded IDs 1..rows, each once
        ids_exact=len(numbers) == len(distinct) == payload["rows"]
        and distinct == set(range(1, payload["rows"] + 1)),
    )
    return out


# --- one measurement -----------------------------------------------------------------------


def bound_seconds(requests: int, scale: float) -> float:
    """The bucket's bound: the first ``BURST`` requests at once, then ``drain`` per second."""
    return max(0, requests - BURST) / (DRAIN * scale)


def per_tool_limit(args: argparse.Namespace) -> float:
    """Seconds one tool may take (three times the bound of twice the fewest requests)."""
    return 3 * bound_seconds(2 * math.ceil(args.rows / ROWS_PER_REQUEST), args.scale) + 300


def measure(tool: str, args: argparse.Namespace) -> dict[str, Any]:
    """One tool against a fresh emulator; its row of figures."""
    timeout = per_tool_limit(args)
    limits = [
        "--rate-burst",
        str(BURST),
        "--rate-drain",
        str(DRAIN * args.scale),
        "--no-operating-limit",
    ]
    with EmulatorProcess(seed_leads=args.rows, startup_timeout=120.0, limits=limits) as server:
        url = server.webhook
        payload = {"tool": tool, "url": url, "scale": args.scale, "rows": args.rows}
        run = run_worker("benchmarks.bench_export", payload, timeout)
        stats = server.stats()
    requests = int(stats["requests"])
    ideal = math.ceil(args.rows / ROWS_PER_REQUEST)
    wall = run.get("wall_s")
    # A request refused with 503 does not fill the server's bucket: the bound counts the rest.
    bound = bound_seconds(requests - int(stats.get("status_503", 0)), args.scale)
    ideal_bound = bound_seconds(ideal, args.scale)
    complete = bool(run.get("ok") and run.get("ids_exact"))
    return {
        "tool": tool,
        "settings": run.get("settings"),
        "ok": run.get("ok", False),
        "ids_exact": run.get("ids_exact", False),
        "error": run.get("error"),
        "rows": run.get("rows"),
        "distinct": run.get("distinct"),
        "wall_s": round(wall, 3) if isinstance(wall, float) else None,
        "http_requests": requests,
        "status_503": int(stats.get("status_503", 0)),
        "list_commands": int(stats.get("commands", {}).get("crm.lead.list", 0)),
        "ideal_requests": ideal,
        "bound_s": round(bound, 3),
        "bound_over_wall": round(bound / wall, 4) if complete and wall and bound else None,
        "ideal_bound_s": round(ideal_bound, 3),
        "ideal_bound_over_wall": (
            round(ideal_bound / wall, 4) if complete and wall and ideal_bound else None
        ),
        "engine": run.get("engine"),
    }


def ratio(row: dict[str, Any], key: str, bound_key: str) -> str:
    if not (row["ok"] and row["ids_exact"]):
        return "failed"
    if row[bound_key] == 0:
        return "within burst"
    return fmt(row[key], "{:.1%}")


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The figures as an aligned text table, then each tool's settings and errors."""
    headers = [
        "tool",
        "rows",
        "distinct",
        "exact",
        "wall s",
        "requests",
        "503",
        "list cmds",
        "bound s",
        "bound/wall",
        "ideal bound/wall",
    ]
    body = [
        [
            r["tool"],
            fmt(r["rows"], "{}"),
            fmt(r["distinct"], "{}"),
            "yes" if r["ids_exact"] else "NO",
            fmt(r["wall_s"], "{:.2f}"),
            str(r["http_requests"]),
            str(r["status_503"]),
            str(r["list_commands"]),
            fmt(r["bound_s"], "{:.1f}"),
            ratio(r, "bound_over_wall", "bound_s"),
            ratio(r, "ideal_bound_over_wall", "ideal_bound_s"),
        ]
        for r in rows
    ]
    print(text_table(headers, body))
    for r in rows:
        print(f"  {r['tool']}: {r['settings']}")
        if r["error"]:
            print(f"  {r['tool']}: raised {r['error']}")


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="leads to export (100,000)")
    parser.add_argument("--smoke", action="store_true", help="5,000 leads: the harness only")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="drain multiplier on both sides (1 = 2/s)"
    )
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"from {','.join(TOOLS)}")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures as JSON to this file"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 5_000 if args.smoke else 100_000
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tools if t not in RUNNERS]
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {list(RUNNERS)}")
    if args.rows < 1 or args.scale <= 0:
        parser.error("--rows must be >= 1 and --scale > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        emit(worker(json.loads(args.worker)))
        return 0
    import importlib.util

    tools = [t for t in args.tools if t == "ours" or importlib.util.find_spec(t) is not None]
    for skipped in sorted(set(args.tools) - set(tools)):
        print(f"{skipped} is not installed: skipping it")
    report = environment()
    report.update(rows=args.rows, scale=args.scale, bucket={"burst": BURST, "drain": DRAIN})
    ideal = math.ceil(args.rows / ROWS_PER_REQUEST)
    print(
        f"export of {args.rows:,} leads (select ID, TITLE); bucket {BURST} / "
        f"{DRAIN * args.scale:g} per s; the fewest requests: {ideal}, bound "
        f"{bound_seconds(ideal, args.scale):.1f} s; {report['python']}, "
        f"{report['cpu_count']} cpus"
    )
    results = []
    with watchdog(len(tools) * (per_tool_limit(args) + 120), "bench_export"):
        for tool in tools:
            print(f"running {tool} ...", flush=True)
            results.append(measure(tool, args))
    report["results"] = results
    print()
    print_table(results)
    if args.json is not None:
        write_json(args.json, report)
        print(f"results written to {args.json}")
    return 0 if all(r["ok"] and r["ids_exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
