"""Fault soak: a mixed job against an emulator that misbehaves, then an audit of every write.

    python -m benchmarks.bench_soak                  # 20,000 commands
    python -m benchmarks.bench_soak --commands 2000 --seed 3

The job is groups of four commands: an add (a unique title), an update of that lead by
reference, a get of it by reference, and a list filtered on its title. The emulator (in
process, limits off) injects seeded faults: 503s and HTML 5xx pages before running, dropped
connections before and after running, HTML 500s after running (the ambiguous case), and
access tokens that expire every few answers. The audit then compares the emulator's own
write counters with what the client reported:

- **duplicates**: adds with the same fields stored twice (must be 0);
- **silent losses**: a command reported ok whose write is not there, or a command reported
  not run whose write is (must be 0);
- **accounted**: every command has exactly one outcome;
- **unknown**: only where a fault hit a request after it ran.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

import anyio
import httpx

from bitrix_batch import BitrixClient, CommandInput, OAuth, Ref, RetryPolicy, Status
from bitrix_batch.emulator import Emulator, EmulatorConfig, FaultConfig

__all__ = ["audit", "main", "soak"]



def faults(seed: int) -> FaultConfig:
    """Fault rates per request: enough that a 20,000-command job meets each many times."""
    return FaultConfig(
        seed=seed,
        methods=frozenset({"batch"}),
        unavailable_503=0.04,
        html_5xx=0.03,
        drop_before_run=0.03,
        fail_after_run=0.03,
        drop_after_run=0.03,
    )


class _ExpiringTokens(httpx.AsyncBaseTransport):
    """Passes requests to the emulator; every `every`-th answer expires all access tokens."""

    def __init__(self, emu: Emulator, every: int) -> None:
        self.inner = httpx.ASGITransport(app=emu.app)
        self.emu = emu
        self.every = every
        self.answers = 0
        self.expiries = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if "/oauth/" not in request.url.path:
            self.answers += 1
            if self.answers % self.every == 0:
                self.emu.expire_access_tokens()
                self.expiries += 1
        return response


def job(groups: int) -> dict[str, CommandInput]:
    """`groups` groups of (add, update by reference, get by reference, list by title)."""
    cmd: dict[str, CommandInput] = {}
    for i in range(groups):
        title = f"soak-{i}"
        cmd[f"add{i}"] = ("crm.lead.add", {"fields": {"TITLE": title}})
        cmd[f"upd{i}"] = (
            "crm.lead.update",
            {"id": Ref(f"add{i}"), "fields": {"COMMENTS": f"updated {i}"}},
        )
        cmd[f"get{i}"] = ("crm.lead.get", {"id": Ref(f"add{i}")})
        cmd[f"list{i}"] = ("crm.lead.list", {"filter": {"TITLE": title}, "select": ["ID"]})
    return cmd


async def soak(commands: int = 20_000, seed: int = 0, expire_every: int = 7) -> dict[str, Any]:
    """Run the soak; return the figures and the audit."""
    groups = max(1, commands // 4)
    emu = Emulator(
        EmulatorConfig(
            rate_limit=False,
            operating_limit=False,
            faults=faults(seed),
        )
    )
    reply = emu.issue_oauth_token()
    creds = OAuth(
        emu.oauth_url(),
        access_token=reply["access_token"],
        refresh_token=reply["refresh_token"],
        client_id=emu.config.oauth_client_id,
        client_secret=emu.config.oauth_client_secret,
        oauth_url="http://testserver/oauth/token/",
    )
    transport = _ExpiringTokens(emu, expire_every)
    cmd = job(groups)
    started = time.perf_counter()
    async with BitrixClient(
        creds,
        transport=transport,
        rate_limit=None,
        max_concurrency=8,
        retry=RetryPolicy.testing(attempts=8),
    ) as client:
        result = await client.batch(cmd)
    seconds = time.perf_counter() - started
    report = audit(emu, groups, result)
    report.update(
        {
            "commands": len(cmd),
            "seconds": round(seconds, 2),
            "requests": emu.stats.requests,
            "faults_injected": dict(emu.stats.faults),
            "token_expiries": transport.expiries,
            "oauth_refreshes": emu.stats.oauth_refreshes,
            "seed": seed,
        }
    )
    return report


def audit(emu: Emulator, groups: int, result: Any) -> dict[str, Any]:
    """Compare the client's report with what the emulator stored."""
    stored: dict[str, list[dict[str, Any]]] = {}
    for row in emu.records("lead"):
        stored.setdefault(str(row["TITLE"]), []).append(row)
    statuses = Counter(r.status.value for r in result.values())
    problems: list[str] = []
    for i in range(groups):
        add, upd = result[f"add{i}"], result[f"upd{i}"]
        rows = stored.get(f"soak-{i}", [])
        if len(rows) > 1:
            problems.append(f"add{i}: stored {len(rows)} times")
        if add.status is Status.OK and (len(rows) != 1 or int(rows[0]["ID"]) != int(add.result)):
            problems.append(f"add{i}: reported ok, stored {len(rows)}")
        if add.status in (Status.SKIPPED, Status.FAILED) and rows:
            problems.append(f"add{i}: reported {add.status.value}, but stored")
        if add.status is not Status.OK and upd.status is not Status.SKIPPED:
            problems.append(f"upd{i}: sent although add{i} is {add.status.value}")
        updated = bool(rows) and rows[0].get("COMMENTS") == f"updated {i}"
        if upd.status is Status.OK and not updated:
            problems.append(f"upd{i}: reported ok, not applied")
        if upd.status in (Status.SKIPPED, Status.FAILED) and updated:
            problems.append(f"upd{i}: reported {upd.status.value}, but applied")
    unknown_keys = [k for k, r in result.items() if r.status is Status.UNKNOWN]
    return {
        "statuses": dict(statuses),
        "accounted": sum(statuses.values()),
        "duplicates": len(emu.duplicates("lead")),
        "duplicate_adds": len(emu.stats.duplicate_adds("lead")),
        "problems": problems[:20],
        "problem_count": len(problems),
        "unknown_reads": sum(1 for k in unknown_keys if k.startswith(("get", "list"))),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its figures; exit 1 if the audit found anything."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    report = anyio.run(soak, args.commands, args.seed)
    for name in ("commands", "seconds", "requests", "faults_injected", "token_expiries",
                 "oauth_refreshes", "statuses", "accounted", "duplicates", "duplicate_adds",
                 "unknown_reads", "problem_count"):
        print(f"{name:16} {report[name]}")
    for problem in report["problems"]:
        print("  problem:", problem)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    ok = not report["problem_count"] and not report["duplicates"] and not report["duplicate_adds"]
    return 0 if ok and report["accounted"] == report["commands"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
