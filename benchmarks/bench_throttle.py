"""Issue #4: 10,000 independent commands at Bitrix24's request-rate limit.

Each client sends ``--commands`` ``crm.lead.add`` commands (distinct titles, so a duplicate write
shows up on the emulator's counters) to a fresh emulator served by uvicorn on 127.0.0.1, with the
server-side leaky bucket of the standard plan: block above 50, drain 2 per second. The bucket's
physical bound for ``R`` requests of 50 commands is ``(R - 50) / drain`` seconds (the first 50 at
once, then one per ``1/drain`` s): 75 s for 10,000 commands. ``--scale K`` multiplies the drain
by K on both sides (server bucket and client setting): same shape, K times faster.

Figures per client: wall time, the bound and bound/wall (target >= 95% for bitrix_batch), HTTP
requests the server saw, 503 answers and their share (target <= 1%), commands executed, leads
stored, duplicate adds (must be 0) and lost adds. The operating-time limit is out of the picture
(off, and adds modelled under its charging floor): it is another benchmark. A short probe first
measures what the server itself can serve with limits off, loaded from a separate process.

    python benchmarks/bench_throttle.py               # scale 5: a ~15 s bound per client
    python benchmarks/bench_throttle.py --scale 1     # the real 2/s bucket: ~75 s per client
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import importlib.util
import json
import logging
import math
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from bitrix_batch import BitrixClient, LeakyBucket, RateLimit, RetryPolicy, Status
from bitrix_batch.emulator import (
    DEFAULT_COSTS,
    Emulator,
    EmulatorConfig,
    MethodCost,
    serve_in_thread,
)

HOST = "127.0.0.1"  # the only address this benchmark ever binds or connects to
BURST = 50  # standard plan: block threshold
DRAIN = 2.0  # standard plan: requests drained per second
PER_REQUEST = 50  # commands per batch request
TARGET_RATIO = 0.95
TARGET_503_SHARE = 0.01
CLIENTS = ("ours", "fast_bitrix24")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_throttle.json"


# --- the server ----------------------------------------------------------------------------


class TracingEmulator(Emulator):
    """The emulator, also noting when each REST request reached the bucket and how it ended."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
        #: (perf_counter at the bucket check, seconds spent answering, HTTP status)
        self.trace: list[tuple[float, float, int]] = []

    def handle(
        self, http_method: str, path: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> Any:
        began = time.perf_counter()
        response = super().handle(http_method, path, query, headers, body)
        if path.startswith("/rest/"):
            self.trace.append((began, time.perf_counter() - began, response.status))
        return response


#: Modelled server time of one add, pinned (it is also the emulator's default now): under the
#: operating limiter's 0.1 s floor nothing is charged, so no client holds ``crm.lead.add`` for
#: minutes; this benchmark is about the request rate, not the operating budget.
ADD_COST = MethodCost(0.05)


def emulator_config(scale: float, time_scale: float = 0.0) -> EmulatorConfig:
    """The standard plan's bucket, drained ``scale`` times faster.

    ``time_scale`` 0 answers at once; above 0 each answer is delayed by its modelled processing
    time times ``time_scale`` (a 50-add batch models 50 x 0.05 s = 2.5 s).
    """
    return EmulatorConfig(
        rate_limit=True,
        plan="standard",
        rate_burst=BURST,
        rate_drain=DRAIN * scale,
        operating_limit=False,
        costs={**DEFAULT_COSTS, "*.add": ADD_COST},
        time_scale=time_scale,
    )


# --- the clients ---------------------------------------------------------------------------


@dataclass
class ClientRun:
    """What a client itself reported, and how long its call took."""

    wall_s: float = math.nan
    ok: int = 0
    not_ok: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def lead_fields(client: str, i: int) -> dict[str, Any]:
    """A lead's fields, unique per client and index."""
    return {"TITLE": f"bench {client} lead {i:06d}", "NAME": f"N{i}", "SOURCE_ID": "WEB"}


def run_ours(url: str, args: argparse.Namespace, limit: float) -> tuple[ClientRun, str]:
    """bitrix_batch: one ``batch`` call with all the commands."""
    rate = RateLimit(BURST, DRAIN * args.scale)
    settings = (
        f"max_concurrency={args.max_concurrency}, RateLimit({BURST}, {rate.per_second:g}), "
        f"safety={args.safety:g}, RetryPolicy() defaults"
    )
    commands = [("crm.lead.add", {"fields": lead_fields("ours", i)}) for i in range(args.commands)]
    run = ClientRun()

    async def main() -> None:
        bucket = LeakyBucket(rate, safety=args.safety)
        async with BitrixClient(
            url, max_concurrency=args.max_concurrency, rate_limit=bucket, retry=RetryPolicy()
        ) as client:
            began = time.perf_counter()
            try:
                with anyio.fail_after(limit):
                    result = await client.batch(commands)
            finally:
                run.wall_s = time.perf_counter() - began
        run.ok = len(result.result)
        run.not_ok = dict(Counter(r.status.value for r in result.values() if r.status != Status.OK))

    try:
        anyio.run(main)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:300]
    return run, settings


def run_fast_bitrix24(url: str, args: argparse.Namespace, limit: float) -> tuple[ClientRun, str]:
    """fast-bitrix24: ``BitrixAsync.call("crm.lead.add", items)``, its bucket matched to ours."""
    from fast_bitrix24 import BitrixAsync

    rps = DRAIN * args.scale
    settings = (
        f"BitrixAsync(verbose=False, request_pool_size={BURST} (default), "
        f"requests_per_second={rps:g} ({'default' if rps == DRAIN else 'matched; default 2'}))"
    )
    items = [{"fields": lead_fields("fast_bitrix24", i)} for i in range(args.commands)]
    run = ClientRun()

    async def main() -> None:
        b = BitrixAsync(url, verbose=False, request_pool_size=BURST, requests_per_second=rps)
        began = time.perf_counter()
        try:
            with anyio.fail_after(limit):
                ids = await b.call("crm.lead.add", items)
        finally:
            run.wall_s = time.perf_counter() - began
        returned = list(ids) if isinstance(ids, list | tuple) else [ids]
        run.ok = sum(1 for i in returned if i)
        if len(returned) != args.commands or run.ok != len(returned):
            run.not_ok = {"missing": args.commands - run.ok}

    orphans = _OrphanCounter()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addFilter(orphans)
    try:
        anyio.run(main, backend="asyncio")  # aiohttp needs asyncio
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        gc.collect()  # abandoned tasks report their exceptions when collected
        asyncio_log.removeFilter(orphans)
    if orphans.count:
        run.not_ok["orphaned_task_errors"] = orphans.count
    return run, settings


class _OrphanCounter(logging.Filter):
    """Counts, and keeps off the terminal, asyncio's "Task exception was never retrieved"."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "never retrieved" in record.getMessage():
            self.count += 1
            return False
        return True


RUNNERS: dict[str, Callable[[str, argparse.Namespace, float], tuple[ClientRun, str]]] = {
    "ours": run_ours,
    "fast_bitrix24": run_fast_bitrix24,
}


# --- one measurement -----------------------------------------------------------------------


def bound_seconds(commands: int, scale: float) -> float:
    """The bucket's physical bound: first ``BURST`` requests at once, then ``drain`` per s."""
    requests = math.ceil(commands / PER_REQUEST)
    return max(0, requests - BURST) / (DRAIN * scale)


def per_client_limit(args: argparse.Namespace) -> float:
    """Seconds one client may take before it is stopped."""
    return 3.0 * bound_seconds(args.commands, args.scale) + 60.0


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one client against a fresh emulator; return its row of figures."""
    emu = TracingEmulator(emulator_config(args.scale, args.server_time_scale))
    before = emu.count("lead")
    with serve_in_thread(emu, host=HOST) as base:
        run, settings = RUNNERS[name](emu.webhook_url(base), args, per_client_limit(args))
    stats = emu.stats
    stored = emu.count("lead") - before
    bound = bound_seconds(args.commands, args.scale)
    trace = emu.trace
    arrivals = [t for t, _, status in trace if status == 200]
    handle_ms = sorted(d * 1000 for _, d, _ in trace)
    emu.close()
    row: dict[str, Any] = {
        "client": name,
        "settings": settings,
        # the call returned normally and every add is stored: only then is the wall time a pace
        "completed": run.error is None and stored == args.commands,
        "wall_s": round(run.wall_s, 3),
        "bound_s": round(bound, 3),
        "bound_over_wall": round(bound / run.wall_s, 4) if run.wall_s > 0 else None,
        # first to last accepted request as the server saw them: pacing without the tails
        "server_span_s": round(arrivals[-1] - arrivals[0], 3) if arrivals else None,
        "http_requests": stats.requests,
        "status_200": stats.statuses[200],
        "status_503": stats.status_503,
        "share_503": round(stats.status_503 / stats.requests, 4) if stats.requests else 0.0,
        "status_429": stats.status_429,
        "other_statuses": {
            str(k): v for k, v in sorted(stats.statuses.items()) if k not in (200, 503, 429)
        },
        "commands_executed": stats.commands["crm.lead.add"],
        "batch_calls_executed": stats.commands["batch"],
        "leads_stored": stored,
        "duplicate_adds": sum(v - 1 for v in stats.duplicate_adds("lead").values()),
        "lost_adds": args.commands - stored,
        "client_ok": run.ok,
        "client_not_ok": run.not_ok,
        "client_error": run.error,
        "server_handle_ms": {
            "mean": round(statistics.fmean(handle_ms), 2) if handle_ms else None,
            "p99": round(handle_ms[int(0.99 * (len(handle_ms) - 1))], 2) if handle_ms else None,
            "max": round(handle_ms[-1], 2) if handle_ms else None,
        },
    }
    if name == "ours":
        row["meets_targets"] = bool(
            row["bound_over_wall"] is not None
            and row["bound_over_wall"] >= TARGET_RATIO
            and row["share_503"] <= TARGET_503_SHARE
            and row["duplicate_adds"] == 0
            and row["lost_adds"] == 0
        )
    return row


# --- how fast the server is with limits off (load from another process) ---------------------


async def _load_async(port: int, path: str, body: bytes, seconds: float, conns: int) -> Any:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        async with await anyio.connect_tcp(HOST, port) as stream:
            reader = BufferedByteReceiveStream(stream)
            while time.perf_counter() < deadline:
                await stream.send(request)
                head = await reader.receive_until(b"\r\n\r\n", 65536)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.receive_exactly(length)
                statuses[int(head.split(b" ", 2)[1])] += 1

    began = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(conns):
            group.start_soon(connection)
    return dict(statuses), time.perf_counter() - began


def _load(port: int, path: str, body: bytes, seconds: float, conns: int) -> Any:
    """Keep-alive HTTP/1.1 load on ``conns`` raw connections (runs in a child process)."""
    return anyio.run(_load_async, port, path, body, seconds, conns)


def probe_server(seconds: float) -> dict[str, Any]:
    """Requests per second the emulator serves over loopback with both limits off."""
    emu = Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))
    cmd = {f"a{k}": f"crm.lead.add?fields[TITLE]=probe {k}" for k in range(PER_REQUEST)}
    kinds = {
        "user.current": ("user.current", b"{}", 16),
        "batch of 50 crm.lead.add": ("batch", json.dumps({"halt": 0, "cmd": cmd}).encode(), 4),
    }
    out: dict[str, Any] = {"seconds": seconds, "load": "separate process, raw keep-alive HTTP"}
    spawn = multiprocessing.get_context("spawn")
    with (
        serve_in_thread(emu, host=HOST) as base,
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool,
    ):
        port = int(base.rsplit(":", 1)[1])
        prefix = emu.webhook_url(base)[len(base) :]
        for label, (method, body, conns) in kinds.items():
            job = pool.submit(_load, port, prefix + method, body, seconds, conns)
            statuses, took = job.result(timeout=seconds + 60)
            done = sum(statuses.values())
            out[label] = {
                "connections": conns,
                "requests_per_s": round(done / took),
                "statuses": {str(k): v for k, v in statuses.items()},
            }
    emu.close()
    return out


# --- report --------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """Where and with what the figures were taken."""
    versions = {}
    for package in ("bitrix_batch", "httpx", "anyio", "tenacity", "uvicorn", "h11"):
        versions[package] = _version(package)
    versions["fast-bitrix24"] = _version("fast-bitrix24")
    versions["aiohttp"] = _version("aiohttp")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
        "command": " ".join(["python", *sys.argv]),
        "scale": args.scale,
        "commands": args.commands,
        "requests_needed": math.ceil(args.commands / PER_REQUEST),
        "server": {
            "host": HOST,
            "bucket_burst": BURST,
            "bucket_drain_per_s": DRAIN * args.scale,
            "operating_limit": False,
            "add_cost_s": ADD_COST.fixed,
            "time_scale": args.server_time_scale,
        },
    }


def write_report(path: Path, report: dict[str, Any], args: argparse.Namespace) -> str:
    """Store this run in the JSON file under a key naming its shape; other runs are kept."""
    key = (
        f"commands={args.commands} scale={args.scale:g} "
        f"server_time_scale={args.server_time_scale:g}"
    )
    document: dict[str, Any] = {"benchmark": "bench_throttle (issue #4)", "runs": {}}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = None
        if isinstance(previous, dict) and isinstance(previous.get("runs"), dict):
            document["runs"] = previous["runs"]
    document["runs"][key] = report
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return key


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The figures as an aligned text table."""
    columns = [
        ("client", "client", "{}"),
        ("wall s", "wall_s", "{:.2f}"),
        ("bound s", "bound_s", "{:.2f}"),
        ("bound/wall", "bound_over_wall", "{:.1%}"),
        ("requests", "http_requests", "{}"),
        ("503", "status_503", "{}"),
        ("503 share", "share_503", "{:.2%}"),
        ("commands", "commands_executed", "{}"),
        ("stored", "leads_stored", "{}"),
        ("dup adds", "duplicate_adds", "{}"),
        ("lost adds", "lost_adds", "{}"),
    ]
    cells = [[title for title, _, _ in columns]]
    for row in rows:
        line = ["-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in columns]
        if not row["completed"]:
            line[3] = "aborted"  # a ratio of an aborted run would read as a speed
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for row in rows:
        print(f"  {row['client']}: {row['settings']}")
        if row["client_error"]:
            print(f"  {row['client']}: raised {row['client_error']}")
        if row["client_not_ok"]:
            print(f"  {row['client']}: not ok {row['client_not_ok']}")


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10_000, help="crm.lead.add commands")
    parser.add_argument(
        "--scale", type=float, default=5.0, help="drain multiplier on both sides (1 = real 2/s)"
    )
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help=f"comma-separated, from {','.join(CLIENTS)}"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--max-concurrency", type=int, default=16, help="bitrix_batch: requests in flight"
    )
    parser.add_argument(
        "--safety",
        type=float,
        default=LeakyBucket.DEFAULT_SAFETY,
        help="bitrix_batch: fraction of the drain rate held back",
    )
    parser.add_argument(
        "--server-time-scale",
        type=float,
        default=0.0,
        help="emulator: delay answers by modelled time x this (0 = at once; 0.1 = 0.25 s/batch)",
    )
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=1.0,
        help="server capacity probe per request kind (0 = skip)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="global limit in seconds (default: 3 x bound + 60 per client, + 120)",
    )
    args = parser.parse_args(argv)
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in args.clients if c not in RUNNERS]
    if unknown:
        parser.error(f"unknown clients {unknown}; choose from {list(RUNNERS)}")
    if args.commands < 1 or args.scale <= 0:
        parser.error("--commands must be >= 1 and --scale > 0")
    return args


def _watchdog(seconds: float) -> None:
    """Stop the whole process if the benchmark overruns its global time limit."""

    def expire() -> None:
        print(f"bench_throttle: global timeout of {seconds:.0f} s reached, stopping", flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clients = list(args.clients)
    if "fast_bitrix24" in clients and importlib.util.find_spec("fast_bitrix24") is None:
        print("fast-bitrix24 is not installed: skipping it (pip install fast-bitrix24)")
        clients.remove("fast_bitrix24")
    limit = args.timeout or len(clients) * per_client_limit(args) + args.probe_seconds * 2 + 120
    _watchdog(limit)
    report = environment(args)
    report["global_timeout_s"] = limit
    bound = bound_seconds(args.commands, args.scale)
    print(
        f"{args.commands} crm.lead.add in {report['requests_needed']} requests, bucket "
        f"{BURST} / {DRAIN * args.scale:g} per s (scale {args.scale:g}), bound {bound:.2f} s; "
        f"{report['python']} on {report['platform']}, {report['cpu_count']} cpus"
    )
    if args.probe_seconds > 0:
        probe = probe_server(args.probe_seconds)
        report["server_capacity_limits_off"] = probe
        print(
            "server, limits off: "
            + ", ".join(
                f"{k} {v['requests_per_s']} req/s" for k, v in probe.items() if isinstance(v, dict)
            )
        )
    rows = []
    for name in clients:
        print(f"running {name} ...", flush=True)
        rows.append(measure(name, args))
    report["results"] = rows
    print()
    print_table(rows)
    ours = next((r for r in rows if r["client"] == "ours"), None)
    if ours is not None:
        print(
            f"\nbitrix_batch targets: bound/wall >= {TARGET_RATIO:.0%}, 503 share <= "
            f"{TARGET_503_SHARE:.0%}, no duplicate or lost adds: "
            + ("met" if ours["meets_targets"] else "NOT met")
        )
    key = write_report(args.json, report, args)
    print(f"results written to {args.json} under runs[{key!r}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
