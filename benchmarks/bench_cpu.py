"""Client CPU per 1,000 commands: bitrix_batch against fast-bitrix24, b24pysdk and a bare loop.

    python -m benchmarks.bench_cpu                         # 20,000 adds and 20,000 gets, 3 reps
    python -m benchmarks.bench_cpu --commands 5000 --repeat 5 --clients ours,baseline
    PYTHONPATH=/tmp/before python -m benchmarks.bench_cpu  # another engine (see the report)

The emulator is served by uvicorn on 127.0.0.1 in its own process, with both limits off and
answers at once, so the client is the only thing that costs. Each client runs in its own
process; its CPU time (user + sys, every thread of the process) is taken around the job only:
after imports, after the input data is built and the client constructed, and before the
results are checked. Each repetition of each client gets a fresh server (seeded with the leads
to read, for gets). Clients:

- ``ours``: bitrix_batch, ``BitrixClient(url, rate_limit=None)`` (other settings are the
  library's defaults), one ``await client.batch(commands)``.
- ``fast_bitrix24``: ``BitrixAsync(url, verbose=False, requests_per_second=1e6)`` (its bucket
  effectively off; up to 50 requests in flight, its default), one ``await b.call(method, items)``.
- ``b24pysdk``: ``client.call_batches([client.crm.lead.add(...), ...]).result`` (sync and
  sequential by design; the SDK's hard-coded https is patched to http, the documented way).
- ``baseline``: written here: encode each command's params like PHP's ``http_build_query``,
  POST 50 per ``batch`` request with one ``httpx.AsyncClient`` (4 requests in flight), decode
  the JSON. What any client must at least do.

Workloads: ``crm.lead.add`` with a few fields (a distinct TITLE and one nested phone) and
``crm.lead.get`` of existing ids. Figures: median over the repetitions of CPU seconds per
1,000 commands, per workload and both together, wall time, and the ratios ours / fast-bitrix24
(target <= 1.0) and ours / baseline (target <= 1.3), taken from the medians. A run counts only
if every command succeeded, by the client's own results and by the server's counters (exactly
N commands executed, no errors, no duplicate adds); a client that fails is reported as failed.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchmarks._support import (
    EmulatorProcess,
    emit,
    engine_info,
    environment,
    fmt,
    md_table,
    median,
    run_worker,
    text_table,
    watchdog,
    write_json,
)

CLIENTS = ("ours", "fast_bitrix24", "b24pysdk", "baseline")
LABELS = {
    "ours": "bitrix_batch",
    "fast_bitrix24": "fast-bitrix24",
    "b24pysdk": "b24pysdk",
    "baseline": "bare httpx baseline",
}
PEER_MODULES = {"fast_bitrix24": "fast_bitrix24", "b24pysdk": "b24pysdk"}
WORKLOADS = ("add", "get")
METHODS = {"add": "crm.lead.add", "get": "crm.lead.get"}
PER_REQUEST = 50
BASELINE_CONCURRENCY = 4
TARGET_VS_FAST = 1.0
TARGET_VS_BASELINE = 1.3
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_cpu.json"


# --- the workloads (built before the clock starts) ------------------------------------------


def lead_fields(tag: str, i: int) -> dict[str, Any]:
    """A lead with a few fields, one of them nested; the TITLE is unique per tag and index."""
    return {
        "TITLE": f"cpu {tag} lead {i:07d}",
        "NAME": f"Name{i}",
        "LAST_NAME": "Bench",
        "SOURCE_ID": "WEB",
        "OPPORTUNITY": 100 + i % 900,
        "PHONE": [{"VALUE": f"+7900{i:07d}", "VALUE_TYPE": "WORK"}],
    }


def items_for(workload: str, n: int, tag: str) -> list[dict[str, Any]]:
    """The parameters of each command: adds of new leads, or gets of leads 1..n (seeded)."""
    if workload == "add":
        return [{"fields": lead_fields(tag, i)} for i in range(n)]
    return [{"id": i} for i in range(1, n + 1)]


# --- the bare baseline -------------------------------------------------------------------


def http_build_query(params: dict[str, Any]) -> str:
    """PHP's ``http_build_query`` for the shapes used here: nested dicts and lists, scalars."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, list | tuple):
            for k, v in enumerate(value):
                walk(f"{prefix}[{k}]", v)
        elif value is None:
            return  # PHP drops nulls
        elif isinstance(value, bool):
            pairs.append((prefix, "1" if value else "0"))
        else:
            pairs.append((prefix, str(value)))

    for key, value in params.items():
        walk(str(key), value)
    return urlencode(pairs)


# --- one client's job, in its own process -------------------------------------------------


def _job_ours(url: str, method: str, items: list[dict[str, Any]], p: dict[str, Any]) -> Any:
    import anyio

    from bitrix_batch import BitrixClient, Status

    async def main() -> tuple[dict[str, float], Any]:
        async with BitrixClient(url, rate_limit=None) as client:
            before = _clock()
            commands = [(method, item) for item in items]
            result = await client.batch(commands)
            spent = _spent(before)
        values = list(result.result.values())
        bad = Counter(r.status.value for r in result.values() if r.status is not Status.OK)
        return spent, (values, dict(bad), len(result))

    return anyio.run(main)


def _job_fast_bitrix24(
    url: str, method: str, items: list[dict[str, Any]], p: dict[str, Any]
) -> Any:
    import anyio
    from fast_bitrix24 import BitrixAsync

    async def main() -> tuple[dict[str, float], Any]:
        # requests_per_second this high empties its bucket at once: the throttle is off; the
        # server has no limit either. Up to 50 requests in flight is its own default.
        b = BitrixAsync(url, verbose=False, request_pool_size=50, requests_per_second=1e6)
        before = _clock()
        returned = await b.call(method, items)
        spent = _spent(before)
        values = list(returned) if isinstance(returned, list | tuple) else [returned]
        return spent, (values, {}, len(values))

    return anyio.run(main, backend="asyncio")  # aiohttp needs asyncio


def _job_b24pysdk(url: str, method: str, items: list[dict[str, Any]], p: dict[str, Any]) -> Any:
    import b24pysdk

    # The SDK hard-codes https; its documented one-line patch points it at plain http.
    caller = importlib.import_module("b24pysdk.api.callers.call_method")
    caller._MethodCaller._base_url = property(lambda self: f"http://{self._domain}/rest")
    base, _, token = url.removeprefix("http://").partition("/rest/")
    client = b24pysdk.Client(b24pysdk.BitrixWebhook(domain=base, webhook_token=token.strip("/")))
    before = _clock()
    if method == "crm.lead.add":
        requests = [client.crm.lead.add(fields=item["fields"]) for item in items]
    else:
        requests = [client.crm.lead.get(bitrix_id=item["id"]) for item in items]
    answer = client.call_batches(requests).result
    spent = _spent(before)
    result = answer.result
    values = list(result.values()) if isinstance(result, dict) else list(result)
    errors = answer.result_error
    bad = {"error": len(errors)} if errors else {}
    return spent, (values, bad, len(values) + len(errors or ()))


def _job_baseline(url: str, method: str, items: list[dict[str, Any]], p: dict[str, Any]) -> Any:
    import anyio
    import httpx

    concurrency = int(p.get("concurrency", BASELINE_CONCURRENCY))

    async def main() -> tuple[dict[str, float], Any]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            before = _clock()
            results: dict[str, Any] = {}
            errors: dict[str, Any] = {}
            starts = iter(range(0, len(items), PER_REQUEST))

            async def worker() -> None:
                for start in starts:  # one iterator shared by the workers: each chunk once
                    chunk = items[start : start + PER_REQUEST]
                    cmd = {
                        f"c{start + k}": f"{method}?{http_build_query(params)}"
                        for k, params in enumerate(chunk)
                    }
                    response = await http.post(url + "batch", json={"halt": 0, "cmd": cmd})
                    response.raise_for_status()
                    body = response.json()["result"]
                    results.update(body["result"] or {})
                    errors.update(body["result_error"] or {})

            async with anyio.create_task_group() as group:
                for _ in range(concurrency):
                    group.start_soon(worker)
            spent = _spent(before)
        bad = {"error": len(errors)} if errors else {}
        return spent, (list(results.values()), bad, len(results) + len(errors))

    return anyio.run(main)


JOBS: dict[str, Callable[[str, str, list[dict[str, Any]], dict[str, Any]], Any]] = {
    "ours": _job_ours,
    "fast_bitrix24": _job_fast_bitrix24,
    "b24pysdk": _job_b24pysdk,
    "baseline": _job_baseline,
}


def _clock() -> tuple[float, float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole process: every thread
    return time.perf_counter(), usage.ru_utime, usage.ru_stime


def _spent(before: tuple[float, float, float]) -> dict[str, float]:
    wall, user, system = (b - a for a, b in zip(before, _clock(), strict=True))
    return {"wall_s": wall, "user_s": user, "sys_s": system, "cpu_s": user + system}


def _check(workload: str, values: list[Any], n: int) -> int:
    """How many of the client's results are right: an id for an add, the lead for a get."""
    if workload == "add":
        return sum(1 for v in values if isinstance(v, int | str) and int(v) > 0)
    ids = {str(v.get("ID")) for v in values if isinstance(v, dict)}
    return len(ids & {str(i) for i in range(1, n + 1)})


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    """One client, one workload: runs in its own process."""
    client, workload, n = payload["client"], payload["workload"], payload["n"]
    items = items_for(workload, n, payload["tag"])
    gc.collect()  # start every client from the same clean heap
    try:
        spent, (values, bad, count) = JOBS[client](
            payload["url"], METHODS[workload], items, payload
        )
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    good = _check(workload, values, n)
    ok = good == n and not bad and count == n
    out: dict[str, Any] = {"ok": ok, **spent, "results_ok": good, "not_ok": bad}
    if not ok:
        out["error"] = f"{good} of {n} results right, {count} returned, not ok: {bad}"
    if client == "ours":
        out["engine"] = engine_info()
    return out


# --- the driver -----------------------------------------------------------------------------


def measure(
    client: str, workload: str, n: int, rep: int, args: argparse.Namespace
) -> dict[str, Any]:
    """A fresh server, one client process; the client's figures checked by the server's."""
    method = METHODS[workload]
    with EmulatorProcess(seed_leads=n if workload == "get" else 0) as server:
        payload = {
            "client": client,
            "workload": workload,
            "n": n,
            "url": server.webhook,
            "tag": f"{client} r{rep}",
            "concurrency": args.baseline_concurrency,
        }
        run = run_worker("benchmarks.bench_cpu", payload, timeout=args.worker_timeout)
        stats = server.stats()
    executed = stats["commands"].get(method, 0)
    duplicates = stats.get("duplicate_adds", {}).get("lead", 0)
    server_errors = sum(stats.get("command_errors", {}).values())
    statuses = {k: v for k, v in stats["statuses"].items() if k != "200"}
    run["server"] = {
        "requests": stats["requests"],
        "commands_executed": executed,
        "command_errors": server_errors,
        "duplicate_adds": duplicates,
        "other_statuses": statuses,
    }
    if run.get("ok") and (executed != n or server_errors or duplicates or statuses):
        run["ok"] = False
        run["error"] = f"server saw {executed} of {n} {method}, {server_errors} errors, " + (
            f"{duplicates} duplicate adds, statuses {statuses}"
        )
    if run.get("ok"):
        run["cpu_per_1000"] = run["cpu_s"] / n * 1000
    return run


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]], n: int) -> dict[str, Any]:
    """Medians per client and workload, then the ratios from the medians."""
    clients: dict[str, Any] = {}
    for client, by_workload in runs.items():
        row: dict[str, Any] = {"label": LABELS[client], "ok": True, "errors": []}
        for workload, reps in by_workload.items():
            good = [r for r in reps if r.get("ok")]
            failed = [r.get("error", "?") for r in reps if not r.get("ok")]
            if failed:
                row["ok"] = False
                row["errors"].extend(f"{workload}: {e}" for e in failed)
            row[workload] = {
                "repetitions": len(reps),
                "succeeded": len(good),
                "cpu_per_1000_s": median([r["cpu_per_1000"] for r in good]) if not failed else None,
                "cpu_per_1000_all_s": [round(r["cpu_per_1000"], 5) for r in good],
                "wall_s": median([r["wall_s"] for r in good]) if not failed else None,
                "user_share": median([r["user_s"] / r["cpu_s"] for r in good if r["cpu_s"]]),
                "requests": median([r["server"]["requests"] for r in good]),
            }
        parts = [row[w]["cpu_per_1000_s"] for w in by_workload]
        row["total_cpu_per_1000_s"] = (
            sum(parts) / len(parts) if parts and all(p is not None for p in parts) else None
        )
        clients[client] = row

    def ratio(a: str, b: str, key: str) -> float | None:
        x = _dig(clients, a, key)
        y = _dig(clients, b, key)
        return x / y if x is not None and y else None

    ratios: dict[str, Any] = {}
    for other, target in (("fast_bitrix24", TARGET_VS_FAST), ("baseline", TARGET_VS_BASELINE)):
        if "ours" in clients and other in clients:
            per = {w: ratio("ours", other, w) for w in WORKLOADS}
            total = ratio("ours", other, "total")
            ratios[f"ours/{other}"] = {
                **per,
                "total": total,
                "target": target,
                "met": None if total is None else total <= target,
            }
    return {"commands": n, "clients": clients, "ratios": ratios}


def _dig(clients: dict[str, Any], client: str, key: str) -> float | None:
    row = clients.get(client)
    if row is None:
        return None
    value = (
        row["total_cpu_per_1000_s"] if key == "total" else row.get(key, {}).get("cpu_per_1000_s")
    )
    return float(value) if value is not None else None


# --- report ---------------------------------------------------------------------------------


def _cpu_cell(row: dict[str, Any], workload: str) -> str:
    """The median, and the range over the repetitions when there are several."""
    if workload not in row:
        return "-"
    median_s = row[workload]["cpu_per_1000_s"]
    if median_s is None:
        return "failed"
    every = row[workload]["cpu_per_1000_all_s"]
    spread = f" ({min(every):.3f}-{max(every):.3f})" if len(every) > 1 else ""
    return f"{median_s:.3f}{spread}"


def rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "client",
        "adds: CPU s / 1k (range)",
        "gets: CPU s / 1k (range)",
        "both: CPU s / 1k",
        "adds: wall s",
        "gets: wall s",
        "runs ok",
    ]
    out = []
    for row in summary["clients"].values():
        reps = [row[w] for w in WORKLOADS if w in row]
        ok_runs = f"{sum(r['succeeded'] for r in reps)}/{sum(r['repetitions'] for r in reps)}"
        out.append(
            [
                row["label"],
                _cpu_cell(row, "add"),
                _cpu_cell(row, "get"),
                fmt(row["total_cpu_per_1000_s"], missing="failed"),
                fmt(row.get("add", {}).get("wall_s"), "{:.2f}"),
                fmt(row.get("get", {}).get("wall_s"), "{:.2f}"),
                ok_runs,
            ]
        )
    return headers, out


def ratio_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["ratio", "adds", "gets", "both", "target", "met"]
    out = []
    for name, r in summary["ratios"].items():
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        label = "bitrix_batch / " + LABELS[name.split("/")[1]]
        out.append(
            [
                label,
                fmt(r.get("add"), "{:.2f}"),
                fmt(r.get("get"), "{:.2f}"),
                fmt(r["total"], "{:.2f}"),
                f"<= {r['target']:.1f}",
                met,
            ]
        )
    return headers, out


def markdown(report: dict[str, Any]) -> str:
    """The RESULTS.md section for one run."""
    summary = report["summary"]
    n = summary["commands"]
    lines = [
        f"{n:,} `crm.lead.add` and {n:,} `crm.lead.get`, median of {report['repeat']} "
        "repetitions, each client in its own process against a fresh emulator in another "
        "(uvicorn on 127.0.0.1, limits off). CPU = user + sys of the client process around "
        "the job only; the range is over the repetitions; both = the mean of the two "
        "medians (a job of half adds, half gets), the ratios' basis. "
        f"Engine: `{report.get('engine', {}).get('path', '?')}`.",
        "",
        md_table(*rows(summary)),
        "",
        md_table(*ratio_rows(summary)),
    ]
    for row in summary["clients"].values():
        for error in row["errors"][:3]:
            lines.append(f"\n- {row['label']} failed: {error}")
    for name in report.get("skipped", []):
        lines.append(f"\n- {LABELS[name]}: not installed, skipped")
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    summary = report["summary"]
    print()
    print(text_table(*rows(summary)))
    print()
    print(text_table(*ratio_rows(summary)))
    for row in summary["clients"].values():
        for error in row["errors"]:
            print(f"  {row['label']} FAILED: {error}")
    for name in report.get("skipped", []):
        print(f"  {LABELS[name]}: not installed, skipped")


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000, help="commands per workload")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (the median counts)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="add,get")
    parser.add_argument("--baseline-concurrency", type=int, default=BASELINE_CONCURRENCY)
    parser.add_argument("--worker-timeout", type=float, default=600.0, help="per client run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the figures go")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None:
        args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
        args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        bad = [c for c in args.clients if c not in CLIENTS]
        bad += [w for w in args.workloads if w not in WORKLOADS]
        if bad:
            parser.error(f"unknown {bad}; clients {CLIENTS}, workloads {WORKLOADS}")
        if args.commands < 1 or args.repeat < 1:
            parser.error("--commands and --repeat must be >= 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    clients = list(args.clients)
    skipped = [c for c in clients if c in PEER_MODULES and not importlib.util.find_spec(c)]
    clients = [c for c in clients if c not in skipped]
    for name in skipped:
        print(f"{LABELS[name]} is not installed: skipped")
    n = args.commands
    print(
        f"client CPU: {n:,} commands per workload ({', '.join(args.workloads)}), "
        f"{args.repeat} repetitions, clients {', '.join(clients)}",
        flush=True,
    )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        c: {w: [] for w in args.workloads} for c in clients
    }
    engine: dict[str, Any] = {}
    began = time.perf_counter()
    for rep in range(args.repeat):
        # The order turns every repetition, so no client always runs first (or after a
        # heavy one) on a shared machine.
        order = clients[rep % len(clients) :] + clients[: rep % len(clients)]
        for workload in args.workloads:
            for client in order:
                result = measure(client, workload, n, rep, args)
                engine = result.pop("engine", None) or engine
                runs[client][workload].append(result)
                status = (
                    f"{result['cpu_per_1000']:.4f} CPU s / 1k, wall {result['wall_s']:.2f} s"
                    if result.get("ok")
                    else "FAILED: " + str(result.get("error"))[:200]
                )
                print(f"  rep {rep + 1} {workload:3} {client:13} {status}", flush=True)
    report = {
        "benchmark": "bench_cpu",
        "environment": environment(),
        "engine": engine,
        "commands": n,
        "repeat": args.repeat,
        "workloads": list(args.workloads),
        "skipped": skipped,
        "settings": {
            "ours": "BitrixClient(url, rate_limit=None), library defaults otherwise "
            "(max_concurrency=16); one batch() call",
            "fast_bitrix24": "BitrixAsync(verbose=False, request_pool_size=50, "
            "requests_per_second=1e6); one call(method, items)",
            "b24pysdk": "Client(BitrixWebhook).call_batches([...]).result, http patch",
            "baseline": f"httpx.AsyncClient, {args.baseline_concurrency} in flight, "
            "http_build_query + json",
            "server": "python -m bitrix_batch.emulator --no-rate-limit --no-operating-limit "
            "--time-scale 0, fresh per run",
        },
        "seconds": round(time.perf_counter() - began, 1),
        "runs": runs,
        "summary": summarize(runs, n),
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        emit(worker(json.loads(args.worker)))
        return 0
    limit = args.worker_timeout * args.repeat * len(args.clients) * len(args.workloads) + 120
    with watchdog(limit, "bench_cpu"):
        report = run(args)
    print_report(report)
    if args.json:
        write_json(args.json, report)
        print(f"results written to {args.json}")
    failed = [c for c, row in report["summary"]["clients"].items() if not row["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
