"""Second review of the executor and scheduler: property tests, and one test per bug found.

The property tests run random command graphs through the real client against a scripted portal
(random refusals, whole-request failures and holds) and through the bare scheduler state
machine, checking: every key gets exactly one outcome, nothing is sent before its producers are
known to be OK, no write is sent again after a request that may have run it, and halt=True sends
one request at a time in the caller's order. The tests after them pin down the bugs this review
found (all fixed).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import anyio
import anyio.lowlevel
import httpx
import pytest
from hypothesis import given, settings, strategies as st

from bitrix_batch import BitrixBatchError, BitrixClient, MethodPolicy, Ref, RetryPolicy, Status
from bitrix_batch._commands import parse_commands
from bitrix_batch._oauth import OAuth
from bitrix_batch._planner import plan
from bitrix_batch._response import BatchSections
from bitrix_batch._retry import command_verdict
from bitrix_batch._scheduler import ChunkRequest, Scheduler
from bitrix_batch._throttle import LeakyBucket, OperatingBudget, RateLimit
from tests.fake_bitrix import WEBHOOK, FakeBitrix, flaky, pause, store
from tests.fake_clock import FakeClock

WRITES = ("crm.lead.add", "crm.deal.add")
READS = ("crm.lead.get", "crm.deal.list")
METHODS = WRITES + READS
REFUSED = ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT")


@dataclass
class Graph:
    """A random command list in the caller's order: keys k0..kn-1, each a method and its deps."""

    methods: list[str]
    deps: list[list[int]]

    @staticmethod
    def key(i: int) -> str:
        return f"k{i}"

    @staticmethod
    def index(key: str) -> int:
        return int(key[1:])

    def read(self, i: int) -> bool:
        return self.methods[i] in READS

    def commands(self) -> dict[str, Any]:
        return {
            self.key(i): (m, {f"p{n}": Ref(self.key(d)) for n, d in enumerate(self.deps[i])})
            for i, m in enumerate(self.methods)
        }


def random_graph(rng: random.Random, max_size: int = 120) -> Graph:
    n = rng.randint(1, max_size)
    methods = [rng.choice(METHODS) for _ in range(n)]
    deps = [
        []
        if i == 0 or rng.random() < 0.5
        else sorted({rng.randrange(i) for _ in range(rng.randint(1, 2))})
        for i in range(n)
    ]
    return Graph(methods, deps)


# --- the client against a scripted portal --------------------------------------------------------


@dataclass
class Portal:
    """Answers batches with random faults; records what may have run; checks each arrival."""

    graph: Graph
    rng: random.Random
    halt: bool
    holds: bool  # per-command OPERATION_TIME_LIMIT, top-level 429, operating near the limit
    fatal: bool  # a 403 now and then: the job stops
    whole_rate: float = 0.15
    command_rate: float = 0.1
    hold_rate: float = 0.05
    requests: list[list[str]] = field(default_factory=list)
    maybe_ran: set[str] = field(default_factory=set)
    delivered_ok: set[str] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    fatal_sent: bool = False
    violations: list[str] = field(default_factory=list)
    ids: int = 0

    def check_arrival(self, keys: list[str]) -> None:
        g = self.graph
        for k in keys:
            i = g.index(k)
            if not g.read(i) and k in self.maybe_ran:
                self.violations.append(f"write {k} sent again though it may have run")
            for d in g.deps[i]:
                dk = g.key(d)
                if dk in keys:
                    if keys.index(dk) > keys.index(k) or not g.read(i):
                        self.violations.append(f"{k} shares a request with producer {dk}")
                elif dk not in self.delivered_ok:
                    self.violations.append(f"{k} sent before {dk} was known to be OK")
        if self.halt:
            if self.in_flight:
                self.violations.append("halt=True: two requests in flight")
            order = [g.index(k) for k in keys]
            if order != sorted(order):
                self.violations.append(f"halt=True: {keys} out of order")
            missing = [g.key(j) for j in range(min(order)) if g.key(j) not in self.delivered_ok]
            if missing:
                self.violations.append(f"halt=True: {keys} sent before {missing} were OK")

    async def handle(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        cmd: dict[str, str] = payload["cmd"]
        self.check_arrival(list(cmd))
        self.requests.append(list(cmd))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.rng.randint(0, 3)):
                await anyio.lowlevel.checkpoint()
            return self.answer(cmd, halt=bool(payload.get("halt")))
        finally:
            self.in_flight -= 1

    def answer(self, cmd: dict[str, str], *, halt: bool) -> httpx.Response:
        rng = self.rng
        if rng.random() < self.whole_rate:
            kinds = ["503", "html", "connect", "timeout"]
            kinds += ["403"] if self.fatal else []
            kinds += ["429"] if self.holds else []
            kind = rng.choice(kinds)
            if kind in ("503", "429", "403"):
                code = {
                    "503": "QUERY_LIMIT_EXCEEDED",
                    "429": "OPERATION_TIME_LIMIT",
                    "403": "ACCESS_DENIED",
                }[kind]
                self.fatal_sent = self.fatal_sent or kind == "403"
                return httpx.Response(int(kind), json={"error": code, "error_description": ""})
            if kind == "connect":
                raise httpx.ConnectError("refused")
            self.maybe_ran.update(cmd)  # the server may have run all of it
            if kind == "html":
                return httpx.Response(
                    500, text="<html>500</html>", headers={"content-type": "text/html"}
                )
            raise httpx.ReadTimeout("timed out")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        codes = ["QUERY_LIMIT_EXCEEDED", "INTERNAL_SERVER_ERROR", "ERROR_CORE"]
        codes += ["OPERATION_TIME_LIMIT"] if self.holds else []
        for key in cmd:  # a reference to a failed command gets garbage; the command runs
            fault = rng.choice(codes) if rng.random() < self.command_rate else None
            if fault is not None:
                errors[key] = {"error": fault, "error_description": ""}
                if fault not in REFUSED:
                    self.maybe_ran.add(key)
                if halt:
                    break
                continue
            self.maybe_ran.add(key)
            self.ids += 1
            results[key] = self.ids
            near = self.holds and rng.random() < self.hold_rate
            times[key] = {"operating": 450 if near else 0, "duration": 0.1}
        self.delivered_ok.update(results)
        sections: dict[str, Any] = {
            "result": results or [],
            "result_error": errors or [],
            "result_total": [],
            "result_next": [],
            "result_time": times or [],
        }
        return httpx.Response(200, json={"result": sections, "time": {"start": 1.0}})


@contextmanager
def no_busy_loop(limit: int = 20_000) -> Iterator[None]:
    """Fail instead of hanging when the executor spins without ever waiting."""
    real = Scheduler.next_requests
    calls = {"n": 0}

    def counted(self: Scheduler, *args: Any, **kwargs: Any) -> list[ChunkRequest]:
        calls["n"] += 1
        if calls["n"] > limit:
            raise AssertionError(f"the executor spins: {self!r}")
        return real(self, *args, **kwargs)

    with mock.patch.object(Scheduler, "next_requests", counted):
        yield


def check_outcomes(portal: Portal, result: Any, progress: list[tuple[int, int]]) -> None:
    g = portal.graph
    keys = [g.key(i) for i in range(len(g.methods))]
    assert list(result) == keys  # every key has exactly one final outcome
    sent = {k for r in portal.requests for k in r}
    for request in portal.requests:
        for k in request:
            for d in g.deps[g.index(k)]:
                if g.key(d) not in request:
                    assert result[g.key(d)].status is Status.OK, (k, g.key(d))
    for i, k in enumerate(keys):
        if k not in sent:
            assert result[k].status is Status.SKIPPED, (k, result[k])
        if result[k].status is Status.OK:
            assert all(result[g.key(d)].status is Status.OK for d in g.deps[i]), k
    if portal.halt:
        assert portal.max_in_flight <= 1
        statuses = [result[k].status for k in keys]
        bad = [n for n, s in enumerate(statuses) if s is not Status.OK]
        if bad:
            assert all(s in (Status.SKIPPED, Status.UNKNOWN) for s in statuses[bad[0] + 1 :])
    assert progress == sorted(progress)
    assert all(total == len(keys) and done <= total for done, total in progress)
    if not portal.fatal_sent:
        assert progress[-1] == (len(keys), len(keys))


async def run_job(portal: Portal, concurrency: int, *, stream: bool) -> None:
    clock = FakeClock()
    cmd = portal.graph.commands()
    progress: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        progress.append((done, total))

    client = BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(portal.handle),
        rate_limit=None,
        retry=RetryPolicy.testing(),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        max_concurrency=concurrency,
    )
    result: Any
    with no_busy_loop(), anyio.fail_after(20):
        async with client:
            if stream:
                seen: dict[str, Any] = {}
                async with client.stream(cmd, halt=portal.halt, progress=on_progress) as out:
                    async for r in out:
                        assert str(r.key) not in seen  # each outcome is yielded once
                        seen[str(r.key)] = r
                result = {k: seen[k] for k in cmd}
            else:
                try:
                    result = await client.batch(cmd, halt=portal.halt, progress=on_progress)
                except BitrixBatchError:
                    # Only when nothing ran at all: no write may have run.
                    g = portal.graph
                    assert not [k for k in portal.maybe_ran if not g.read(g.index(k))]
                    assert portal.violations == []
                    return
    assert portal.violations == []
    check_outcomes(portal, result, progress)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    halt=st.booleans(),
    holds=st.booleans(),
    concurrency=st.integers(1, 4),
    stream=st.booleans(),
)
async def test_random_jobs_keep_the_invariants(
    seed: int, halt: bool, holds: bool, concurrency: int, stream: bool
) -> None:
    """Random graphs, faults and holds: one outcome per key, nothing sent unsafely or early."""
    rng = random.Random(seed)
    portal = Portal(random_graph(rng), rng, halt, holds=holds, fatal=True)
    await run_job(portal, concurrency, stream=stream)


async def test_leaving_a_stream_early_stops_sending() -> None:
    """Breaking out of stream() returns promptly and nothing is sent after the block."""
    fake = store()
    async with fake_client(fake, max_concurrency=2) as client:
        with anyio.fail_after(5):
            async with client.stream([("crm.lead.add", {})] * 500) as results:
                async for _ in results:
                    break
            sent = len(fake.requests)
            await pause()
    assert len(fake.requests) == sent < 10


# --- the scheduler alone, driven at random --------------------------------------------------------


def drive_scheduler(
    seed: int, *, halt: bool, holds: bool, cancel: bool, give_back: bool
) -> None:
    """Hand out, answer, abort, give back and cancel at random; check every request sent."""
    rng = random.Random(seed)
    g = random_graph(rng)
    entries = parse_commands(g.commands(), MethodPolicy().reads_only)
    policy = RetryPolicy.testing()
    s = Scheduler(
        plan(entries, halt=halt),
        verdict=lambda e, err: command_verdict(err.code, read=e.read, policy=policy),
        command_attempts=policy.attempts,
    )
    held: set[str] = set()
    flying: list[ChunkRequest] = []
    maybe_ran: set[int] = set()
    stopped = False
    for _ in range(5000):
        if s.finished:
            break
        roll = rng.random()
        if roll < 0.1 and holds:
            held ^= {rng.choice(METHODS)}
        elif roll < 0.15:
            s.unpark()
        elif roll < 0.16 and cancel and not stopped:
            stopped = True
            s.cancel(RuntimeError("fatal"))
        elif roll < 0.5:
            for r in s.next_requests(limit=rng.randint(1, 4), held=held.__contains__):
                assert not stopped
                assert not (halt and flying), "halt=True: two requests in flight"
                for i in r.members:
                    assert s.outcome(i) is None
                    assert all(i not in f.members for f in flying)
                    assert entries[i].method not in held
                    assert entries[i].read or i not in maybe_ran, "a write sent twice"
                    for d in entries[i].deps:
                        if d in r.members:
                            assert entries[i].read
                            assert r.members.index(d) < r.members.index(i)
                        else:
                            outcome = s.outcome(d)
                            assert outcome is not None
                            assert outcome.status is Status.OK
                if halt:
                    for j in range(min(r.members)):
                        outcome = s.outcome(j)
                        assert outcome is not None
                        assert outcome.status is Status.OK
                flying.append(r)
        elif flying:
            r = flying.pop(rng.randrange(len(flying)))
            roll = rng.random()
            if roll < 0.15 and give_back:
                s.give_back(r)
            elif roll < 0.25:
                ran = rng.choice(["no", "unknown"])
                if ran == "unknown":
                    maybe_ran.update(r.members)
                s.abort(r, RuntimeError("failed"), ran="no" if ran == "no" else "unknown")
            else:
                results: dict[str, Any] = {}
                errors: dict[str, Any] = {}
                for wire, i in r.wire.items():
                    x = rng.random()
                    if x < 0.15:
                        code = rng.choice([*REFUSED, "INTERNAL_SERVER_ERROR", "ERROR_CORE"])
                        errors[wire] = {"error": code, "error_description": ""}
                        if code not in REFUSED:
                            maybe_ran.add(i)
                        if halt:
                            break
                    elif x < 0.18 and not halt:
                        maybe_ran.add(i)  # no entry in the answer
                    else:
                        results[wire] = i + 1
                        maybe_ran.add(i)
                s.complete(r, BatchSections(results, errors, {}, {}, {}, {}))
        elif not s.has_ready:
            assert s.parked, f"stalled: {s!r}"
            if not held:
                s.unpark()
                assert s.has_ready, f"parked with no hold: {s!r}"
        s.take_finished()
    assert s.finished, f"never finished: {s!r}"
    assert not flying
    assert len(s.results()) == len(entries)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), halt=st.booleans(), cancel=st.booleans())
def test_scheduler_state_machine_keeps_the_invariants(
    seed: int, halt: bool, cancel: bool
) -> None:
    """The bare scheduler under random answers, holds, hand-backs and cancels keeps its rules."""
    drive_scheduler(seed, halt=halt, holds=True, cancel=cancel, give_back=True)


# --- bugs found ----------------------------------------------------------------------------------


def budget_on(clock: FakeClock) -> OperatingBudget:
    return OperatingBudget(clock=clock, sleep=clock.sleep, wall_clock=clock.wall)


def fake_client(
    fake: FakeBitrix, handler: Any = None, clock: FakeClock | None = None, **kwargs: Any
) -> BitrixClient:
    clock = clock or FakeClock()
    kwargs.setdefault("operating_budget", budget_on(clock))
    kwargs.setdefault("retry", RetryPolicy.testing())
    kwargs.setdefault("rate_limit", None)
    return BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(handler or fake.handle),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        **kwargs,
    )


async def test_halt_parked_tail_waits_for_a_parked_retry_of_an_earlier_command() -> None:
    """halt=True: a tail parked for a hold is never sent before an earlier, refused command."""
    fake = store()
    fake.methods["crm.lead.add"] = flaky("OPERATION_TIME_LIMIT", fake.methods["fail.now"])
    clock = FakeClock()
    budget = budget_on(clock)
    budget.observe("crm.deal.add", {"operating": 450})  # held 60 s: b and c are parked
    async with fake_client(fake, clock=clock, operating_budget=budget) as client:
        # a goes alone and is refused: crm.lead.add is held for 300 s, longer than b and c.
        # When it is sent again it fails for real.
        result = await client.batch(
            {"a": "crm.lead.add", "b": "crm.deal.add", "c": "crm.deal.add"}, halt=True
        )
    assert fake.sent_keys() == ["a", "a"]  # b and c come after a in the caller's order
    assert result.result_error["a"].code == "ERROR_CORE"


async def test_a_request_handed_back_after_a_fatal_error_does_not_spin() -> None:
    """A request handed back for a hold after the job stopped is skipped; batch() returns."""
    fake = store()
    fake.methods["crm.lead.add"] = flaky("OPERATION_TIME_LIMIT", lambda p: 1)
    inner = fake.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        cmd = json.loads(request.content)["cmd"]
        if "a0" in cmd:
            await pause(50)
            return httpx.Response(
                403, json={"error": "ACCESS_DENIED", "error_description": "Access denied!"}
            )
        if "l" in cmd:
            await pause(200)  # answered after the 403, and after h0 put crm.lead.add on hold
            return httpx.Response(
                503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many"}
            )
        return await inner(request)  # h0 is refused: crm.lead.add is held for 300 s

    cmd: dict[str, Any] = {f"a{i}": "crm.deal.add" for i in range(50)}
    cmd |= {f"h{i}": "crm.lead.add" for i in range(50)}
    cmd["l"] = "crm.lead.add"
    with no_busy_loop(), anyio.fail_after(10):
        async with fake_client(fake, handler) as client:
            result = await client.batch(cmd)
    assert result["l"].status is Status.SKIPPED


async def test_a_write_that_may_have_run_on_an_earlier_attempt_is_unknown() -> None:
    """A write whose first attempt timed out is unknown, whatever later attempts failed with."""
    fake = store()
    fake.script = [
        httpx.ReadTimeout("the server may have run it"),
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
    ]
    policy = RetryPolicy(attempts=3, wait_initial=0, wait_max=0, wait_jitter=0,
                         resend_unknown_writes=True)
    async with fake_client(fake, retry=policy) as client:
        result = await client.batch({"w": "crm.lead.add"})
    assert len(fake.requests) == 3
    assert result["w"].status is Status.UNKNOWN


async def test_parked_commands_go_when_their_hold_ends_not_when_a_slow_request_returns() -> None:
    """A parked command is sent once its hold ends, even while an unrelated request is slow."""
    events: list[str] = []
    fake = store()
    inner = fake.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        cmd = json.loads(request.content)["cmd"]
        events.append(f"sent {','.join(cmd)}")
        if "slow" in cmd:
            await anyio.sleep(0.5)  # a heavy request; the hold on crm.deal.add ends at 0.02 s
            events.append("slow answered")
        return await inner(request)

    budget = OperatingBudget(default_hold=0.02)
    budget.observe("crm.deal.add", {"operating": 450})  # near the limit: held for 0.02 s
    client = BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(handler),
        rate_limit=None,
        retry=RetryPolicy.testing(),
        operating_budget=budget,
    )
    async with client:
        result = await client.batch({"slow": "crm.lead.add", "d": "crm.deal.add"})
    assert result.ok
    assert events == ["sent slow", "sent d", "slow answered"]


async def test_a_write_refused_with_401_is_not_unknown_when_the_token_provider_fails() -> None:
    """A 401 ran nothing: if the token provider then raises, the write is skipped, not unknown."""

    async def provider(stale: str | None) -> str:
        raise RuntimeError("the vault is down")

    fake = store()
    fake.script = [
        httpx.Response(401, json={"error": "expired_token", "error_description": "expired"})
    ]
    creds = OAuth(
        "https://example.bitrix24.com/rest/",
        access_token="stale-token-0123456789abcdef",
        token_provider=provider,
    )
    client = BitrixClient(
        creds, transport=fake.transport(), rate_limit=None, retry=RetryPolicy.testing()
    )
    async with client:
        with pytest.raises(RuntimeError, match="vault") as caught:
            await client.batch({"w": "crm.lead.add"})
    result = caught.value.bitrix_batch_result  # type: ignore[attr-defined]
    assert result["w"].status is Status.SKIPPED


async def test_a_batch_whose_method_is_held_while_it_waits_for_the_rate_limit_is_not_sent() -> None:
    """A method that goes over its budget while a batch waits in the bucket waits for its hold."""
    fake = store()
    clock = FakeClock()
    budget = budget_on(clock)
    sent_at: list[float] = []
    inner = fake.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(clock.now)
        response = await inner(request)
        if len(sent_at) == 1:  # the first answer: crm.lead.add is near its limit, held 60 s
            budget.observe("crm.lead.add", {"operating": 450})
        return response

    async def slow_sleep(seconds: float) -> None:
        clock.now += max(seconds, 0.0)
        await pause()  # the first answer arrives while the second batch waits in the bucket

    client = fake_client(
        fake,
        handler,
        clock,
        operating_budget=budget,
        rate_limit=LeakyBucket(RateLimit(burst=1, per_second=1.0), clock=clock, sleep=slow_sleep),
    )
    async with client:
        result = await client.batch(["crm.lead.add"] * 51)  # two batches, both crm.lead.add
    assert result.ok
    assert len(sent_at) == 2
    assert sent_at[1] >= 60
