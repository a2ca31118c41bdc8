"""Planner figures: requests and rounds for typical workloads, and planning throughput.

    python benchmarks/bench_planner.py                # the figures recorded in RESULTS.md
    python benchmarks/bench_planner.py --commands 20000 --repeat 3

1. Request count for 1,234 independent commands, counted by the emulator (in-process).
2. Requests and rounds for a 3-level dependency chain workload (search -> add -> get), run on
   the emulator and checked for correctness.
3. Throughput of the pure core: commands checked, planned and encoded into batch command
   strings per second on one core, against a baseline measured in the same run: naive chunking
   (encode every command and slice the list into fifties, no references, no graph), which is
   what clients without a planner do. The ratio is what the planner costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from bitrix_batch import BitrixClient, MethodPolicy, Ref, RetryPolicy
from bitrix_batch._commands import parse_commands
from bitrix_batch._encoding import encode_command
from bitrix_batch._planner import plan
from bitrix_batch._scheduler import Scheduler
from bitrix_batch.emulator import Emulator, EmulatorConfig


def chain_workload(chains: int) -> dict[str, Any]:
    """`chains` chains of user.get -> crm.lead.add (uses the user) -> crm.lead.get (the lead)."""
    cmd: dict[str, Any] = {}
    for i in range(chains):
        user = Ref(f"u{i}")[0]
        cmd[f"u{i}"] = ("user.get", {"filter": {"ID": 1 + i % 3}})
        cmd[f"a{i}"] = (
            "crm.lead.add",
            {"fields": {"TITLE": f"Lead {i} for {user['NAME']}", "ASSIGNED_BY_ID": user["ID"]}},
        )
        cmd[f"g{i}"] = ("crm.lead.get", {"id": Ref(f"a{i}")})
    return cmd


def independent_workload(n: int) -> list[Any]:
    return [
        ("crm.lead.add", {"fields": {"TITLE": f"Lead {i}", "PHONE": [{"VALUE": f"+7 900 {i}"}]}})
        for i in range(n)
    ]


async def run_on_emulator(cmd: Any) -> dict[str, Any]:
    emu = Emulator(EmulatorConfig(rate_limit=False, operating_limit=False, seed_users=3))
    client = BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        rate_limit=None,
        retry=RetryPolicy.testing(),
    )
    async with client:
        p = client.plan(cmd)
        result = await client.batch(cmd)
    return {
        "commands": len(p.entries),
        "requests_planned": len(p.chunks),
        "requests_sent": emu.stats.requests,
        "rounds": p.rounds,
        "ok": len(result.result),
        "failed_or_skipped": len(result) - len(result.result),
        "duplicate_adds": len(emu.stats.duplicate_adds("lead")),
    }


def plan_and_encode(cmd: Any) -> int:
    """Everything the core does before I/O, for a list whose chunks need no results."""
    entries = parse_commands(cmd, MethodPolicy().reads_only)
    scheduler = Scheduler(plan(entries))
    return sum(len(r.cmd) for r in scheduler.next_requests())


def naive_chunks(cmd: list[Any]) -> int:
    """The baseline: encode each command, slice into fifties."""
    strings = [encode_command(method, params) for method, params in cmd]
    return sum(len(strings[i : i + 50]) for i in range(0, len(strings), 50))


def best_rate(fn: Any, arg: Any, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = fn(arg)
        best = min(best, time.perf_counter() - start)
        assert done == n, (done, n)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=100_000, help="for the throughput run")
    parser.add_argument("--chains", type=int, default=1000, help="chains in the 3-level workload")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/bench_planner.json")
    args = parser.parse_args()

    independent = anyio.run(run_on_emulator, independent_workload(1234))
    chains = anyio.run(run_on_emulator, chain_workload(args.chains))

    work = independent_workload(args.commands)
    ours = best_rate(plan_and_encode, work, args.commands, args.repeat)
    baseline = best_rate(naive_chunks, work, args.commands, args.repeat)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cpus",
        "independent_1234": independent,
        f"chain_3_levels_x{args.chains}": chains,
        "throughput": {
            "commands": args.commands,
            "planned_encoded_per_s": round(ours),
            "naive_chunking_per_s": round(baseline),
            "ratio_to_naive": round(ours / baseline, 3),
        },
    }
    print(f"1,234 independent commands: {independent['requests_sent']} requests "
          f"(planned {independent['requests_planned']}), {independent['rounds']} round(s)")
    print(f"3-level chains x{args.chains} ({chains['commands']} commands): "
          f"{chains['requests_sent']} requests in {chains['rounds']} rounds, "
          f"{chains['ok']} ok, {chains['failed_or_skipped']} not ok")
    print(f"planner+encoder: {ours:,.0f} commands/s; naive chunking {baseline:,.0f}/s; "
          f"ratio {ours / baseline:.2f} (one core, {args.commands:,} commands, best of "
          f"{args.repeat})")
    if args.json:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
