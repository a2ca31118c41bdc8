"""Issue #11: one portal's bucket shared by worker processes through Redis.

    python -m benchmarks.bench_shared_limit                 # 10,000 adds, 4 workers, 50 / 20 per s
    python -m benchmarks.bench_shared_limit --drain 2       # the real 2/s drain (75 s a run)
    python -m benchmarks.bench_shared_limit --smoke         # 1,000 adds, bucket 10: the harness
    python -m benchmarks.bench_shared_limit --json out.json

One emulator process (``python -m bitrix_batch.emulator`` on 127.0.0.1) with the plan's bucket
shape, burst 50, and a drain scaled up to ``--drain`` per second so that a run takes seconds;
the operating-time limit off. Four worker processes, two on asyncio and two on trio, each
import their own quarter of ``--commands`` ``crm.lead.add`` commands (distinct titles) into
that one portal through `BitrixClient.batch` with a `Journal` of their own, all starting at
the same instant. Two runs, each against a fresh emulator:

- ``shared``: every worker paces on one `RedisBucket` (`SharedLimits` over a redis-server of
  the benchmark's own on 127.0.0.1, or ``--redis URL``), with the defaults (headroom 2,
  the server's own drain rate);
- ``local``: every worker paces on a `LeakyBucket` of its own, of the whole plan (what a
  worker without a shared limiter does), for contrast.

Figures per run: HTTP requests and 503 answers as the emulator counted them, leads stored,
duplicate adds (the emulator's fingerprint counter: an add with the same fields twice) and
results not ok; the bucket's bound: ``R`` accepted requests cannot take less than
``(R - burst) / drain`` seconds. Two ratios to it: ``wall/bound``, the time from the first
request of any worker to the last worker's end, and ``total/bound``, the whole run from the
common start (so with the start-up: each worker planning its 2,500 commands and opening its
journal, on CPUs the other workers share; the imports come before the start).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

MODES = ("shared", "local")
BACKENDS = ("asyncio", "trio")
PER_REQUEST = 50
#: Seconds between the launch of the workers and their common start (imports, connecting).
START_DELAY = 4.0


# --- a worker process ----------------------------------------------------------------------


def commands_of(first: int, last: int) -> dict[str, Any]:
    """This worker's slice: ``crm.lead.add`` for leads ``first`` to ``last - 1``."""
    return {
        f"lead{i}": ("crm.lead.add", {"fields": {"TITLE": f"Lead {i}", "OPPORTUNITY": i}})
        for i in range(first, last)
    }


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    """Import one slice into the portal; return when it started and ended, and the outcomes."""
    import anyio

    from bitrix_batch import BitrixClient, RateLimit, RequestSent, Status
    from bitrix_batch.journal import Journal

    if payload["mode"] == "shared":  # imported before the common start, not inside the run
        import coredis

        from bitrix_batch.redis import RedisLink, SharedLimits

    out: dict[str, Any] = {"ok": False, "engine": engine_info(), "backend": payload["backend"]}
    limit = RateLimit(payload["burst"], payload["drain"])
    cmd = commands_of(payload["first"], payload["last"])
    degraded: list[bool] = []
    sent: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, RequestSent):
            sent.append(time.time())

    async def run(journal: Journal) -> Any:
        if payload["mode"] == "local":
            async with BitrixClient(
                payload["url"],
                rate_limit=limit,
                on_event=on_event,
                max_concurrency=payload["concurrency"],
            ) as client:
                return await client.batch(cmd, journal=journal)
        async with coredis.Redis.from_url(payload["redis"]) as redis:
            # A deadline above the default 1 s: six processes share the CPUs here, and a
            # worker that gives up on Redis paces on its share (see docs/shared-limits.md).
            limits = SharedLimits(
                RedisLink(redis, timeout=5.0),
                payload["url"],
                rate_limit=limit,
                workers=payload["workers"],
                prefix=payload["prefix"],
            )
            async with BitrixClient(
                payload["url"],
                on_event=on_event,
                max_concurrency=payload["concurrency"],
                **limits.client_options(),
            ) as client:
                result = await client.batch(cmd, journal=journal)
            degraded.append(limits.link.failures > 0)
            return result

    time.sleep(max(0.0, payload["start_at"] - time.time()))
    try:
        with Journal(payload["journal"]) as journal:
            result = anyio.run(run, journal, backend=payload["backend"])
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:400]
        out["ended_at"] = time.time()
        return out
    out["ended_at"] = time.time()
    out["first_sent_at"] = min(sent, default=None)
    statuses = [r.status for r in result.values()]
    out.update(
        ok=True,
        commands=len(cmd),
        results_ok=sum(s is Status.OK for s in statuses),
        results_not_ok=sum(s is not Status.OK for s in statuses),
        redis_failed=bool(degraded and degraded[0]),
    )
    return out


# --- one run -------------------------------------------------------------------------------


def bound_seconds(requests: int, burst: int, drain: float) -> float:
    """The bucket's bound: ``burst`` requests at once, then ``drain`` per second."""
    return max(0, requests - burst) / drain


def measure(mode: str, args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    """One run of all the workers against a fresh emulator; its row of figures."""
    limits = [
        "--rate-burst",
        str(args.burst),
        "--rate-drain",
        str(args.drain),
        "--no-operating-limit",
    ]
    per = math.ceil(args.commands / args.workers)
    ideal = math.ceil(per / PER_REQUEST) * args.workers
    timeout = START_DELAY + 5 * bound_seconds(ideal, args.burst, args.drain) + 120
    folder = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    with EmulatorProcess(startup_timeout=120.0, limits=limits) as server:
        start_at = time.time() + (START_DELAY / 2 if args.smoke else START_DELAY)
        payloads = [
            {
                "mode": mode,
                "url": server.webhook,
                "redis": redis_url,
                "prefix": f"bench-{uuid.uuid4().hex[:8]}",
                "backend": BACKENDS[n % len(BACKENDS)],
                "first": n * per,
                "last": min(args.commands, (n + 1) * per),
                "burst": args.burst,
                "drain": args.drain,
                "workers": args.workers,
                "concurrency": args.concurrency,
                "start_at": start_at,
                "journal": str(folder / f"worker{n}.journal"),
            }
            for n in range(args.workers)
        ]
        prefix = payloads[0]["prefix"]
        for p in payloads:
            p["prefix"] = prefix  # one portal, one bucket
        with ThreadPoolExecutor(args.workers) as pool:
            runs = list(
                pool.map(
                    lambda p: run_worker("benchmarks.bench_shared_limit", p, timeout), payloads
                )
            )
        stats = server.stats()
    requests = int(stats["requests"])
    status_503 = int(stats.get("status_503", 0))
    ok = all(r.get("ok") for r in runs)
    sending = ok and all(r.get("first_sent_at") for r in runs)
    first = min(r["first_sent_at"] for r in runs) if sending else None
    ended = max(r["ended_at"] for r in runs) if sending else None
    # The bucket binds from the first request on; before it each worker plans its job and
    # opens its journal, which no limiter can speed up: that start-up is reported apart.
    wall = ended - first if ended is not None and first is not None else None
    bound = bound_seconds(requests - status_503, args.burst, args.drain)
    leads = len(stats.get("writes", {}).get("lead", {}))
    duplicates = int(stats.get("duplicate_adds", {}).get("lead", 0))
    not_ok = sum(int(r.get("results_not_ok", 0)) for r in runs)
    return {
        "mode": mode,
        "ok": ok,
        "errors": [r["error"] for r in runs if r.get("error")],
        "backends": [r.get("backend") for r in runs],
        "http_requests": requests,
        "status_503": status_503,
        "share_503": round(status_503 / requests, 4) if requests else None,
        "leads_stored": leads,
        "duplicate_adds": duplicates,
        "results_not_ok": not_ok,
        "complete": ok and leads == args.commands and duplicates == 0 and not_ok == 0,
        "wall_s": round(wall, 3) if wall is not None else None,
        "bound_s": round(bound, 3),
        "wall_over_bound": round(wall / bound, 4) if wall and bound else None,
        "total_over_bound": (
            round((ended - start_at) / bound, 4) if ended is not None and bound else None
        ),
        "ideal_requests": ideal,
        "ideal_bound_s": round(bound_seconds(ideal, args.burst, args.drain), 3),
        "setup_s": round(first - start_at, 3) if first is not None else None,
        "total_s": round(ended - start_at, 3) if ended is not None else None,
        "redis_failed": any(r.get("redis_failed") for r in runs),
        "engine": runs[0].get("engine"),
    }


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The figures as an aligned text table, then any worker's error."""
    headers = [
        "limiter",
        "requests",
        "503",
        "503 %",
        "leads",
        "dupes",
        "not ok",
        "start-up s",
        "wall s",
        "bound s",
        "wall/bound",
        "total s",
        "total/bound",
    ]
    body = [
        [
            r["mode"],
            str(r["http_requests"]),
            str(r["status_503"]),
            fmt(r["share_503"], "{:.1%}"),
            str(r["leads_stored"]),
            str(r["duplicate_adds"]),
            str(r["results_not_ok"]),
            fmt(r["setup_s"], "{:.2f}"),
            fmt(r["wall_s"], "{:.2f}"),
            fmt(r["bound_s"], "{:.2f}"),
            fmt(r["wall_over_bound"], "{:.3f}"),
            fmt(r["total_s"], "{:.2f}"),
            fmt(r["total_over_bound"], "{:.3f}"),
        ]
        for r in rows
    ]
    print(text_table(headers, body))
    for r in rows:
        for error in r["errors"]:
            print(f"  {r['mode']}: a worker failed: {error}")


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=None, help="crm.lead.add (10,000)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--burst", type=int, default=None, help="the bucket's burst (50)")
    parser.add_argument("--drain", type=float, default=20.0, help="drain per second (20)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="each worker's max_concurrency (16)"
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"from {','.join(MODES)}")
    parser.add_argument("--redis", default=None, help="a Redis URL on 127.0.0.1 to use")
    parser.add_argument("--smoke", action="store_true", help="1,000 adds, burst 10")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.commands is None:
        args.commands = 1_000 if args.smoke else 10_000
    if args.burst is None:
        args.burst = 10 if args.smoke else 50
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(args.modes) - set(MODES):
        parser.error(f"--modes: choose from {list(MODES)}")
    if args.commands < 1 or args.workers < 1 or args.burst < 1 or args.drain <= 0:
        parser.error("--commands, --workers, --burst must be >= 1 and --drain > 0")
    if args.redis and "127.0.0.1" not in args.redis and "localhost" not in args.redis:
        parser.error("--redis must be on 127.0.0.1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        emit(worker(json.loads(args.worker)))
        return 0
    import contextlib

    from bitrix_batch.redis import LocalRedisServer

    report = environment()
    report.update(
        commands=args.commands,
        workers=args.workers,
        backends=[BACKENDS[n % len(BACKENDS)] for n in range(args.workers)],
        bucket={"burst": args.burst, "drain": args.drain},
    )
    print(
        f"{args.commands:,} crm.lead.add from {args.workers} worker processes "
        f"({', '.join(report['backends'])}) into one portal; bucket {args.burst} / "
        f"{args.drain:g} per s; {report['python']}, {report['cpu_count']} cpus"
    )
    results = []
    with contextlib.ExitStack() as stack:
        redis_url = args.redis or stack.enter_context(LocalRedisServer()).url
        with watchdog(len(args.modes) * 900, "bench_shared_limit"):
            for mode in args.modes:
                print(f"running {mode} ...", flush=True)
                results.append(measure(mode, args, redis_url))
    report["results"] = results
    print()
    print_table(results)
    if args.json is not None:
        write_json(args.json, report)
        print(f"results written to {args.json}")
    return 0 if all(r["complete"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
