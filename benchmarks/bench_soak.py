"""Fault soak: a mixed job against an emulator that misbehaves, then an audit of every write.

    python -m benchmarks.bench_soak                  # 20,000 commands
    python -m benchmarks.bench_soak --commands 2000 --seed 3

The job is groups of four commands: an add (a unique title), an update of that lead by
reference, a get of it by reference, and a list filtered on its title. The emulator (in
process, limits off) injects seeded faults: 503s and HTML 5xx pages before running, dropped
connections before and after running, HTML 500s after running (the ambiguous case), answers
slower than the client's deadline (they ran; their answer is lost), and access tokens that
expire every few answers. A transport in front of it adds 429 ``OPERATION_TIME_LIMIT``
refusals: of a whole call (nothing ran), and of single commands inside a batch (the update
of that request is refused, as a portal refuses a method over its budget, and the rest run);
holds are scaled down to a twentieth of a second. The audit then compares the emulator's own
write counters with what the client reported:

- **duplicates**: adds with the same fields stored twice, updates applied twice (must be 0);
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

from bitrix_batch import (
    BitrixClient,
    CommandInput,
    Literal,
    OAuth,
    OperatingBudget,
    Ref,
    RetryPolicy,
    Status,
)
from bitrix_batch.emulator import Emulator, EmulatorConfig, FaultConfig

__all__ = ["audit", "main", "soak"]



def faults(seed: int) -> FaultConfig:
    """Fault rates per request: enough that a 20,000-command job meets each many times."""
    return FaultConfig(
        seed=seed,
        # Direct calls too: the commands holding Literal text (see `job`).
        methods=frozenset({"batch", "crm.lead.add", "crm.lead.list"}),
        unavailable_503=0.04,
        html_5xx=0.03,
        drop_before_run=0.03,
        fail_after_run=0.03,
        drop_after_run=0.03,
        slow=0.01,
        slow_seconds=SLOW_SECONDS,
    )


#: A slow answer's delay, and the client's deadline per call, which it passes.
SLOW_SECONDS = 0.5
DEADLINE = 0.25
#: How often a call (a batch or a direct call) is refused whole with a 429, and how often
#: the update inside a batch alone.
HOLD_CALL = 0.02
HOLD_COMMAND = 0.05
_LIMIT_TEXT = "Method is blocked due to operation time limit."


class _FaultyFront(httpx.AsyncBaseTransport):
    """Passes requests to the emulator, adding the faults it has no knob for: every
    `every`-th answer expires all access tokens, and seeded 429 ``OPERATION_TIME_LIMIT``
    refusals of a whole batch or of one command inside it."""

    def __init__(self, emu: Emulator, every: int, seed: int) -> None:
        import random

        self.inner = httpx.ASGITransport(app=emu.app)
        self.emu = emu
        self.every = every
        self.rng = random.Random(seed)
        self.answers = 0
        self.expiries = 0
        self.held_calls = 0
        self.held_commands = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/oauth/" in request.url.path:
            return await self.inner.handle_async_request(request)
        refused: str | None = None
        draw = self.rng.random()
        if draw < HOLD_CALL:  # a batch, or a direct call, refused whole: nothing ran
            self.held_calls += 1
            body = {"error": "OPERATION_TIME_LIMIT", "error_description": _LIMIT_TEXT}
            return httpx.Response(429, json=body)
        if draw < HOLD_CALL + HOLD_COMMAND and request.url.path.endswith("/batch"):
            request, refused = self._without_an_update(request)
        response = await self.inner.handle_async_request(request)
        self.answers += 1
        if self.answers % self.every == 0:
            self.emu.expire_access_tokens()
            self.expiries += 1
        if refused is not None and response.status_code == 200:
            response = await self._refusing(response, refused)
        return response

    def _without_an_update(self, request: httpx.Request) -> tuple[httpx.Request, str | None]:
        """The request with its first update taken out, and that update's key."""
        payload = json.loads(request.content)
        cmd = payload.get("cmd") or {}
        key = next((k for k, v in cmd.items() if v.startswith("crm.lead.update")), None)
        if key is None:
            return request, None
        del cmd[key]
        self.held_commands += 1
        content = json.dumps(payload).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return httpx.Request("POST", request.url, content=content, headers=headers), key

    @staticmethod
    async def _refusing(response: httpx.Response, key: str) -> httpx.Response:
        """The answer with `key` refused as the portal refuses a method over its budget."""
        body = json.loads(await response.aread())
        inner = body.get("result")
        if not isinstance(inner, dict):
            return httpx.Response(200, json=body)
        errors = inner.get("result_error") or {}
        errors[key] = {"error": "OPERATION_TIME_LIMIT", "error_description": _LIMIT_TEXT}
        inner["result_error"] = errors
        return httpx.Response(200, json=body)


#: Every this many groups, the title holds text the server would read as a reference: as
#: `Literal` text, its add and its list go as direct calls of their own (planner Rule 7).
LITERAL_EVERY = 100


def title_of(i: int) -> str:
    """The unique title of group `i`."""
    return f"soak-{i} costs $total[x]" if i % LITERAL_EVERY == 0 else f"soak-{i}"


def job(groups: int) -> dict[str, CommandInput]:
    """`groups` groups of (add, update by reference, get by reference, list by title)."""
    cmd: dict[str, CommandInput] = {}
    for i in range(groups):
        title: str | Literal = title_of(i)
        if i % LITERAL_EVERY == 0:
            title = Literal(title_of(i))
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
    transport = _FaultyFront(emu, expire_every, seed)
    cmd = job(groups)
    started = time.perf_counter()
    # Holds scaled down: a 429 without a reset time holds the method 0.05 s, not 300 s.
    budget = OperatingBudget(default_block=0.05, default_hold=0.05)
    async with BitrixClient(
        creds,
        transport=transport,
        rate_limit=None,
        operating_budget=budget,
        deadline=DEADLINE,
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
            "faults_injected": {
                **emu.stats.faults,
                "held_call_429": transport.held_calls,
                "held_command_429": transport.held_commands,
            },
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
        rows = stored.get(title_of(i), [])
        if len(rows) > 1:
            problems.append(f"add{i}: stored {len(rows)} times")
        if add.status is Status.OK and (len(rows) != 1 or int(rows[0]["ID"]) != int(add.result)):
            problems.append(f"add{i}: reported ok, stored {len(rows)}")
        if add.status in (Status.SKIPPED, Status.FAILED) and rows:
            problems.append(f"add{i}: reported {add.status.value}, but stored")
        if add.status is not Status.OK and upd.status is not Status.SKIPPED:
            problems.append(f"upd{i}: sent although add{i} is {add.status.value}")
        updated = bool(rows) and rows[0].get("COMMENTS") == f"updated {i}"
        if rows:
            times = emu.stats.writes_of("lead", int(rows[0]["ID"])).get("update", 0)
            if times > 1:  # a refused or lost update must never be applied twice
                problems.append(f"upd{i}: applied {times} times")
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
