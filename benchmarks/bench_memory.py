"""Memory and planning at bulk scale: stream() peak RSS, batch() bytes per command, planning
throughput, and the time to report a dependency cycle.

    python -m benchmarks.bench_memory                 # stream 50k and 200k; batch 100k; plan 200k
    python -m benchmarks.bench_memory --full          # stream 100k/300k/1M; batch, plan, cycle 1M
    PYTHONPATH=/tmp/before python -m benchmarks.bench_memory   # the engine in /tmp/before

Every figure is taken in a fresh process of its own; the emulator, when one is needed, runs
in another process (uvicorn on 127.0.0.1, limits off, answers at once), so the memory figures
are the client's alone. The figures:

- **stream peak RSS**: a whole client process runs ``client.stream(generator)`` over N
  ``crm.lead.add`` (a generator of ``(key, command)`` pairs) and drops each result as it
  arrives. RSS (``VmRSS``) and the peak so far (``VmHWM``) are read from ``/proc/self/status``
  at every 10% of the results: for 1M that is once per 100k. The figure is the process's peak
  (imports and all). An engine that refuses a generator ("cmd must be a mapping or a
  sequence": the 'before' engine) gets the same commands as a list, and the figure says so.
- **batch bytes per command**: ``await client.batch(list of N adds)`` in a fresh process.
  ``held`` = RSS after the call (the result still referenced) minus RSS before it (the input
  list already built), divided by N; ``peak`` = the same with the peak (``VmHWM``). In a second
  process at a smaller N, tracemalloc's count of bytes allocated by the call and still alive
  (``traced held``) and at its peak (``traced peak``), per command.
- **planning throughput**: ``client.plan(list of N independent crm.lead.add with nested
  fields)`` (checks, graph and chunks; nothing is sent), commands per second of wall time on
  one core (median of the repetitions; the rate by CPU time too).
- **cycle report time**: a list of N commands whose last two refer to each other;
  seconds from ``client.plan(list)`` to ``DependencyCycleError``, and the RSS it took.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks._support import (
    MB,
    EmulatorProcess,
    emit,
    engine_info,
    environment,
    fmt,
    md_table,
    proc_status,
    run_worker,
    text_table,
    watchdog,
    write_json,
)
from benchmarks.bench_cpu import lead_fields

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_memory.json"
PARTS = ("stream", "batch", "plan", "cycle")
STREAM_TARGET_MB = 120.0
PLAN_TARGET = 150_000.0
CYCLE_TARGET_S = 10.0
OLD_ENGINE_REFUSAL = "mapping or a sequence"
MODULE = "benchmarks.bench_memory"


def add(i: int, tag: str) -> tuple[str, dict[str, Any]]:
    return ("crm.lead.add", {"fields": lead_fields(tag, i)})


def pairs(n: int, tag: str) -> Iterator[tuple[str, tuple[str, dict[str, Any]]]]:
    """The lazy input: ``(key, command)`` pairs, made one at a time."""
    for i in range(n):
        yield f"m{i}", add(i, tag)


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


# --- workers (each in its own process) ----------------------------------------------------


def work_stream(p: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from bitrix_batch import BitrixClient, InvalidCommandError, Status

    n = int(p["n"])
    marks = [max(1, n * k // 10) for k in range(1, 11)]
    samples: list[dict[str, Any]] = []
    seen = Counter[str]()
    out: dict[str, Any] = {"engine": engine_info()}

    async def consume(results: Any, began: float) -> None:
        mark = 0
        async for r in results:  # each result is dropped at once: nothing is kept here
            seen["ok" if r.status is Status.OK else r.status.value] += 1
            done = seen.total()
            while mark < len(marks) and done >= marks[mark]:
                mem = proc_status()
                samples.append(
                    {
                        "done": done,
                        "rss_mb": _mb(mem.get("VmRSS")),
                        "hwm_mb": _mb(mem.get("VmHWM")),
                        "s": round(time.perf_counter() - began, 2),
                    }
                )
                mark += 1

    async def main() -> None:
        async with BitrixClient(p["url"], rate_limit=None) as client:
            start = proc_status()
            out["rss_at_start_mb"] = _mb(start.get("VmRSS"))
            began = time.perf_counter()
            out["input"] = "generator"
            try:
                async with client.stream(pairs(n, p["tag"])) as results:
                    await consume(results, began)
            except InvalidCommandError as exc:
                if seen.total() or OLD_ENGINE_REFUSAL not in str(exc):
                    raise
                # The engine refuses a generator: give it what it takes, a list.
                out["input"] = "list (this engine refuses a generator)"
                commands = [command for _, command in pairs(n, p["tag"])]
                async with client.stream(commands) as results:
                    del commands  # the engine holds what it needs; the benchmark holds nothing
                    await consume(results, began)
            out["wall_s"] = round(time.perf_counter() - began, 2)

    anyio.run(main)
    end = proc_status()
    out.update(
        ok=seen["ok"] == n and seen.total() == n,
        n=n,
        results=dict(seen),
        samples=samples,
        peak_rss_mb=_mb(end.get("VmHWM")),
        rss_at_end_mb=_mb(end.get("VmRSS")),
    )
    if not out["ok"]:
        out["error"] = f"{seen['ok']} of {n} ok: {dict(seen)}"
    return out


def work_batch(p: dict[str, Any]) -> dict[str, Any]:
    import tracemalloc

    import anyio

    from bitrix_batch import BitrixClient

    n, traced = int(p["n"]), bool(p.get("tracemalloc"))
    out: dict[str, Any] = {"engine": engine_info(), "n": n, "tracemalloc": traced}

    async def main() -> None:
        async with BitrixClient(p["url"], rate_limit=None) as client:
            commands = [add(i, p["tag"]) for i in range(n)]
            gc.collect()
            before = proc_status()
            if traced:
                tracemalloc.start()
            began = time.perf_counter()
            result = await client.batch(commands)
            out["wall_s"] = round(time.perf_counter() - began, 2)
            if traced:
                current, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                out["traced_held_bytes_per_command"] = round(current / n)
                out["traced_peak_bytes_per_command"] = round(peak / n)
            after = proc_status()  # `result` is still alive here: held = what batch() keeps
            ok = len(result.result)
            out["ok"] = ok == n
            if ok != n:
                out["error"] = f"{ok} of {n} ok"
            if not traced:
                rss0 = before["VmRSS"]
                out["rss_before_mb"] = _mb(rss0)
                out["rss_after_mb"] = _mb(after["VmRSS"])
                out["peak_rss_mb"] = _mb(after["VmHWM"])
                out["held_bytes_per_command"] = round((after["VmRSS"] - rss0) / n)
                out["peak_bytes_per_command"] = round((after["VmHWM"] - rss0) / n)
            del result

    anyio.run(main)
    return out


def _plan_client() -> Any:
    from bitrix_batch import BitrixClient

    # plan() sends nothing; the URL is never contacted.
    return BitrixClient("http://127.0.0.1:9/rest/1/plan-only/", rate_limit=None)


def work_plan(p: dict[str, Any]) -> dict[str, Any]:
    n, repeat = int(p["n"]), int(p["repeat"])
    client = _plan_client()
    commands = [add(i, "plan") for i in range(n)]
    walls, cpus, chunks = [], [], 0
    for _ in range(repeat):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        plan = client.plan(commands)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        chunks = len(plan.chunks)
        del plan
    expected = math.ceil(n / 50)
    out: dict[str, Any] = {
        "engine": engine_info(),
        "n": n,
        "ok": chunks == expected,
        "chunks": chunks,
        "wall_s": [round(w, 3) for w in walls],
        "commands_per_s": round(n / statistics.median(walls)),
        "commands_per_cpu_s": round(n / statistics.median(cpus)),
        "best_commands_per_s": round(n / min(walls)),
        "peak_rss_mb": _mb(proc_status().get("VmHWM")),
    }
    if chunks != expected:
        out["error"] = f"{chunks} chunks, expected {expected}"
    return out


def work_cycle(p: dict[str, Any]) -> dict[str, Any]:
    from bitrix_batch import DependencyCycleError, PlanError, Ref

    n = int(p["n"])
    client = _plan_client()
    # List keys are 0..n-1; the last two commands refer to each other.
    commands: list[Any] = [add(i, "cycle") for i in range(n - 2)]
    commands.append(("crm.lead.get", {"id": Ref(n - 1)["ID"]}))
    commands.append(("crm.lead.get", {"id": Ref(n - 2)["ID"]}))
    gc.collect()
    rss0 = proc_status()["VmRSS"]
    out: dict[str, Any] = {"engine": engine_info(), "n": n}
    began = time.perf_counter()
    try:
        client.plan(commands)
    except DependencyCycleError as exc:
        out["seconds"] = round(time.perf_counter() - began, 3)
        named = {str(k) for k in exc.cycle}
        out["ok"] = {str(n - 1), str(n - 2)} <= named
        out["message"] = str(exc)[:200]
    except PlanError as exc:
        out["seconds"] = round(time.perf_counter() - began, 3)
        out["ok"] = False
        out["error"] = f"reported as {type(exc).__name__}, not a cycle: {exc}"[:300]
    else:
        out["ok"] = False
        out["error"] = "the cycle was not reported"
    mem = proc_status()
    out["rss_growth_mb"] = _mb(mem["VmHWM"] - rss0)
    out["peak_rss_mb"] = _mb(mem["VmHWM"])
    if not out["ok"] and "error" not in out:
        out["error"] = f"the cycle named {out.get('message')!r}"
    return out


WORKERS = {"stream": work_stream, "batch": work_batch, "plan": work_plan, "cycle": work_cycle}


# --- the driver -----------------------------------------------------------------------------


def _with_server(kind: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    with EmulatorProcess() as server:
        result = run_worker(MODULE, {**payload, "kind": kind, "url": server.webhook}, timeout)
        stats = server.stats()
    executed = stats["commands"].get("crm.lead.add", 0)
    result["server_commands_executed"] = executed
    if result.get("ok") and executed != payload["n"]:
        result["ok"] = False
        result["error"] = f"the server ran {executed} adds of {payload['n']}"
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "bench_memory", "environment": environment()}
    engine: dict[str, Any] = {}
    began = time.perf_counter()
    t = args.worker_timeout
    if "stream" in args.parts:
        report["stream"] = []
        for n in args.stream_sizes:
            print(f"stream() of {n:,} adds from a generator ...", flush=True)
            r = _with_server("stream", {"n": n, "tag": f"stream {n}"}, t)
            engine = r.pop("engine", None) or engine
            report["stream"].append(r)
            _say(r, lambda r: f"peak RSS {r['peak_rss_mb']} MB ({r['input']}), {r['wall_s']} s")
    if "batch" in args.parts:
        print(f"batch() of {args.batch_commands:,} adds ...", flush=True)
        r = _with_server("batch", {"n": args.batch_commands, "tag": "batch"}, t)
        engine = r.pop("engine", None) or engine
        report["batch"] = r
        _say(
            r,
            lambda r: (
                f"{r['held_bytes_per_command']} B/command held, "
                f"{r['peak_bytes_per_command']} B/command at the peak"
            ),
        )
        if args.tracemalloc_commands:
            n = args.tracemalloc_commands
            print(f"batch() of {n:,} adds under tracemalloc ...", flush=True)
            r = _with_server("batch", {"n": n, "tag": "traced", "tracemalloc": True}, t)
            r.pop("engine", None)
            report["batch_traced"] = r
            _say(
                r,
                lambda r: (
                    f"{r['traced_held_bytes_per_command']} B/command held, "
                    f"{r['traced_peak_bytes_per_command']} B/command at the peak"
                ),
            )
    if "plan" in args.parts:
        n = args.plan_commands
        print(f"plan() of {n:,} independent adds, {args.plan_repeat} repetitions ...", flush=True)
        r = run_worker(MODULE, {"kind": "plan", "n": n, "repeat": args.plan_repeat}, t)
        engine = r.pop("engine", None) or engine
        report["plan"] = r
        _say(r, lambda r: f"{r['commands_per_s']:,} commands/s")
    if "cycle" in args.parts:
        n = args.cycle_commands
        print(f"plan() of {n:,} commands with a cycle at the end ...", flush=True)
        r = run_worker(MODULE, {"kind": "cycle", "n": n}, t)
        engine = r.pop("engine", None) or engine
        report["cycle"] = r
        _say(r, lambda r: f"reported in {r['seconds']} s, +{r['rss_growth_mb']} MB")
    report["engine"] = engine
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


def _say(r: dict[str, Any], figures: Any) -> None:
    print("  " + (figures(r) if r.get("ok") else "FAILED: " + str(r.get("error"))[:300]))


# --- report ---------------------------------------------------------------------------------


def stream_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "commands",
        "input",
        "peak RSS MB",
        "RSS at start MB",
        "RSS at each 10% (MB)",
        "wall s",
        "ok",
    ]
    out = []
    for r in report.get("stream", []):
        if not r.get("ok") and "samples" not in r:
            out.append(
                [f"{r.get('n', '?')}", "-", "failed", "-", str(r.get("error"))[:80], "-", "no"]
            )
            continue
        marks = " ".join(f"{s['rss_mb']:.0f}" for s in r["samples"])
        out.append(
            [
                f"{r['n']:,}",
                r["input"].split(" ")[0],
                fmt(r["peak_rss_mb"], "{:.1f}"),
                fmt(r["rss_at_start_mb"], "{:.1f}"),
                marks,
                fmt(r["wall_s"], "{:.1f}"),
                "yes" if r["ok"] else "**no**",
            ]
        )
    return headers, out


def figure_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    out: list[list[str]] = []

    def failed(r: dict[str, Any]) -> str:
        return "failed: " + str(r.get("error"))[:100]

    b = report.get("batch")
    if b:
        out.append(
            [
                f"batch() of {b['n']:,} adds: bytes per command, held / at the peak (RSS)",
                f"{b['held_bytes_per_command']:,} / {b['peak_bytes_per_command']:,}"
                f" (peak RSS {b['peak_rss_mb']} MB)"
                if b.get("ok")
                else failed(b),
            ]
        )
    bt = report.get("batch_traced")
    if bt:
        out.append(
            [
                f"batch() of {bt['n']:,} adds: bytes per command, held / at the peak (tracemalloc)",
                f"{bt['traced_held_bytes_per_command']:,} / {bt['traced_peak_bytes_per_command']:,}"
                if bt.get("ok")
                else failed(bt),
            ]
        )
    p = report.get("plan")
    if p:
        out.append(
            [
                f"plan() of {p['n']:,} independent adds (target >= {PLAN_TARGET:,.0f}/s)",
                f"{p['commands_per_s']:,} commands/s (by CPU time {p['commands_per_cpu_s']:,}/s)"
                if p.get("ok")
                else failed(p),
            ]
        )
    c = report.get("cycle")
    if c:
        out.append(
            [
                f"cycle at the end of {c['n']:,} commands (target < {CYCLE_TARGET_S:.0f} s)",
                f"reported in {c['seconds']} s, RSS +{c['rss_growth_mb']} MB"
                if c.get("ok")
                else failed(c),
            ]
        )
    return ["figure", "value"], out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Engine: `{report.get('engine', {}).get('path', '?')}`. Each figure in a fresh "
        "process; the emulator in another (127.0.0.1, limits off). stream(): the whole "
        f"process's peak RSS (target < {STREAM_TARGET_MB:.0f} MB), RSS read at every 10% of "
        "the results.",
        "",
    ]
    if report.get("stream"):
        lines += [md_table(*stream_rows(report)), ""]
    lines.append(md_table(*figure_rows(report)))
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(f"engine: {report.get('engine', {}).get('path', '?')}")
    if report.get("stream"):
        print(text_table(*stream_rows(report)))
        print()
    print(text_table(*figure_rows(report)))


# --- main -----------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the real sizes (1M commands)")
    parser.add_argument("--parts", default=",".join(PARTS), help="stream,batch,plan,cycle")
    parser.add_argument("--stream-sizes", type=_sizes, help="default 50000,200000")
    parser.add_argument("--batch-commands", type=int, help="default 100000 (--full 1000000)")
    parser.add_argument("--tracemalloc-commands", type=int, help="0 skips; default 20000")
    parser.add_argument("--plan-commands", type=int, help="default 200000 (--full 1000000)")
    parser.add_argument("--plan-repeat", type=int, default=3)
    parser.add_argument("--cycle-commands", type=int, help="default 200000 (--full 1000000)")
    parser.add_argument("--worker-timeout", type=float, default=1800.0, help="seconds per part")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the figures go")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    full = args.full
    if args.stream_sizes is None:
        args.stream_sizes = [100_000, 300_000, 1_000_000] if full else [50_000, 200_000]
    if args.batch_commands is None:
        args.batch_commands = 1_000_000 if full else 100_000
    if args.tracemalloc_commands is None:
        args.tracemalloc_commands = 100_000 if full else 20_000
    if args.plan_commands is None:
        args.plan_commands = 1_000_000 if full else 200_000
    if args.cycle_commands is None:
        args.cycle_commands = 1_000_000 if full else 200_000
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if any(p not in PARTS for p in args.parts):
        parser.error(f"--parts from {PARTS}")
    if min([*args.stream_sizes, args.batch_commands, args.plan_commands]) < 10:
        parser.error("sizes must be >= 10")
    if args.cycle_commands < 3:
        parser.error("--cycle-commands must be >= 3")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        payload = json.loads(args.worker)
        try:
            emit(WORKERS[payload["kind"]](payload))
        except Exception as exc:
            emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
        return 0
    with watchdog(args.worker_timeout * (len(args.stream_sizes) + 5) + 120, "bench_memory"):
        report = run(args)
    print_report(report)
    if args.json:
        write_json(args.json, report)
        print(f"results written to {args.json}")
    parts = [*report.get("stream", []), *(report.get(k) for k in ("batch", "plan", "cycle"))]
    return 0 if all(r.get("ok") for r in parts if r is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
