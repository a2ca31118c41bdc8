"""`Literal` text the server would read as a reference, sent from `batch()`: each such command
goes on its own as a direct call (planner Rule 7), where nothing is substituted, and reaches the
portal byte for byte; its references and its users' references are resolved by the client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bitrix_batch import BitrixClient, Literal, Ref, RetryPolicy, SkipReason, Status
from bitrix_batch._commands import parse_commands
from bitrix_batch._methods import MethodPolicy
from bitrix_batch._planner import Packer, plan
from bitrix_batch.emulator import FaultConfig
from bitrix_batch.journal import Journal
from tests.fake_clock import FakeClock
from tests.test_client_emulator import client_for, emulator

READS = MethodPolicy().reads_only
TRICKY = "Price $total[x] incl. VAT"


def tricky_add(title: str = TRICKY, **fields: Any) -> tuple[str, dict[str, Any]]:
    return ("crm.lead.add", {"fields": {"TITLE": Literal(title), **fields}})


def test_a_direct_command_is_a_chunk_of_its_own_and_nobody_joins_it() -> None:
    cmd = {
        "x": ("crm.lead.list", {"select": ["ID"]}),
        "t": tricky_add(),
        "read_t": ("crm.lead.get", {"id": Ref("t")}),
        "plain": ("crm.lead.add", {"fields": {"TITLE": "a"}}),
    }
    entries = parse_commands(cmd, READS)
    p = plan(entries)
    (direct,) = [c for c in p.chunks if c.direct]
    assert [e.key for e in direct.entries] == ["t"]
    # The read of its result goes in a later request, with the value substituted by the client.
    reader = p.chunks[p.chunk_of[2]]
    assert reader is not direct
    assert direct.id in reader.after
    assert not p.server_side(2, 1)


def test_a_direct_command_waits_for_its_producers() -> None:
    cmd = {
        "u": "user.current",
        "t": tricky_add(ASSIGNED_BY_ID=Ref("u")["ID"]),
    }
    p = plan(parse_commands(cmd, READS))
    assert len(p.chunks) == 2
    assert p.chunks[1].direct
    assert p.chunks[0].id in p.chunks[1].after


def test_with_halt_a_direct_command_is_a_slice_in_its_place() -> None:
    cmd = {"a": "user.current", "t": tricky_add(), "b": "user.current", "c": "user.current"}
    p = plan(parse_commands(cmd, READS), halt=True)
    assert [c.members for c in p.chunks] == [[0], [1], [2, 3]]
    assert p.chunks[1].direct
    assert p.chunks[1].after == {0}
    assert p.chunks[2].after == {1}


def test_a_stream_packs_direct_commands_alone_too() -> None:
    entries = parse_commands(
        {f"k{i}": tricky_add() if i % 3 == 0 else "user.current" for i in range(9)}, READS
    )
    packer = Packer()
    chunks = [c for e in entries for c in packer.add(e)] + packer.flush()
    for chunk in chunks:
        if any(e.direct for e in chunk.entries):
            assert chunk.direct
            assert len(chunk.entries) == 1
    assert sorted(i for c in chunks for i in c.members) == list(range(9))


async def test_batch_sends_literal_text_byte_identical_and_resolves_around_it() -> None:
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(
            {
                "x": ("crm.lead.add", {"fields": {"TITLE": "x"}}),
                # It refers to x (client-side), and its own result is used by two others.
                "t": tricky_add(COMMENTS=Ref("x")),
                "get_t": ("crm.lead.get", {"id": Ref("t")}),
                "upd_t": ("crm.lead.update", {"id": Ref("t"), "fields": {"TITLE": "changed"}}),
            }
        )
    assert all(r.ok for r in result.values()), [r.status for r in result.values()]
    record = emu.records("lead", {"ID": result["t"].result})[0]
    assert record["COMMENTS"] == str(result["x"].result)
    assert result["get_t"].result["TITLE"] == TRICKY  # read before the update
    assert record["TITLE"] == "changed"
    assert emu.stats.commands["crm.lead.add"] == 2
    # One batch for x, the direct call for t, one batch for its two users: 3 requests.
    assert emu.stats.requests == 3
    assert emu.stats.batches == 2


async def test_a_direct_commands_failure_is_its_own_and_its_users_are_not_sent() -> None:
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(
            {
                "t": ("crm.lead.update", {"id": 987654, "fields": {"TITLE": Literal(TRICKY)}}),
                "after": ("crm.lead.get", {"id": Ref("t")}),
                "other": ("crm.lead.add", {"fields": {"TITLE": "independent"}}),
            }
        )
    failed = result["t"]
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.key == "t"
    assert failed.error.method == "crm.lead.update"
    assert result["after"].status is Status.SKIPPED
    assert result["after"].skip is not None
    assert result["after"].skip.reason is SkipReason.DEPENDENCY_FAILED
    assert result["other"].ok  # a command's failure is not the job's


async def test_with_halt_a_failing_direct_command_stops_what_follows() -> None:
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(
            {
                "a": ("crm.lead.add", {"fields": {"TITLE": "first"}}),
                "t": ("crm.lead.update", {"id": 987654, "fields": {"TITLE": Literal(TRICKY)}}),
                "b": ("crm.lead.add", {"fields": {"TITLE": "never"}}),
            },
            halt=True,
        )
    assert result["a"].ok
    assert result["t"].status is Status.FAILED
    assert result["b"].status is Status.SKIPPED
    assert result["b"].skip is not None
    assert result["b"].skip.reason is SkipReason.HALTED
    assert [r["TITLE"] for r in emu.records("lead")] == ["first"]


@pytest.mark.parametrize("body", ["json", "form"])
async def test_direct_commands_in_a_stream_with_a_journal_resume_without_resending(
    body: str, tmp_path: Any
) -> None:
    emu = emulator()
    cmds = {
        f"k{i}": tricky_add(f"{TRICKY} #{i}") if i % 10 == 0 else ("user.current", {})
        for i in range(40)
    }
    path = tmp_path / "job.sqlite"
    async with client_for(emu, body=body) as client:
        with Journal(path) as journal:
            async with client.stream(iter(cmds.items()), journal=journal) as results:
                first = [r async for r in results]
        with Journal(path) as journal:
            async with client.stream(iter(cmds.items()), journal=journal) as results:
                again = [r async for r in results]
    assert [r.status for r in first] == [Status.OK] * 40
    assert [r.status for r in again] == [Status.OK] * 40
    titles = sorted(r["TITLE"] for r in emu.records("lead"))
    assert titles == sorted(f"{TRICKY} #{i}" for i in range(0, 40, 10))  # each once


async def test_a_direct_write_whose_answer_is_lost_is_unknown_and_never_sent_twice() -> None:
    emu = emulator(faults=FaultConfig(fail_after_run=1.0, methods=frozenset({"crm.lead.add"})))
    async with client_for(emu) as client:
        result = await client.batch(
            {
                "t": tricky_add(),
                "get_t": ("crm.lead.get", {"id": Ref("t")}),
                "plain": ("user.current", {}),
            }
        )
    assert result["t"].status is Status.UNKNOWN
    assert result["get_t"].status is Status.SKIPPED
    assert result["plain"].ok
    assert [r["TITLE"] for r in emu.records("lead")] == [TRICKY]  # ran once, not re-sent
    assert emu.stats.commands["crm.lead.add"] == 1


async def test_a_direct_call_outside_the_tokens_scope_fails_alone() -> None:
    """A method outside the webhook's scope is that command's failure, as in a batch, not
    the job's end."""
    emu = emulator(webhook_scopes=frozenset({"user"}))
    cmd = {"t": tricky_add(), **{f"u{i}": ("user.current", {}) for i in range(3)}}
    async with client_for(emu) as client:
        result = await client.batch(cmd)
    failed = result["t"]
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.code.lower() == "insufficient_scope"
    assert all(result[f"u{i}"].ok for i in range(3))


class _RefusingAdds(httpx.AsyncBaseTransport):
    """Answers the first `refusals` direct ``crm.lead.add`` calls with a 429 hold."""

    def __init__(self, emu: Any, refusals: int, clock: FakeClock, hold: float) -> None:
        self.inner = httpx.ASGITransport(app=emu.app)
        self.left = refusals
        self.clock = clock
        self.hold = hold
        self.answers: list[tuple[float, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        self.answers.append((self.clock(), method))
        if method == "crm.lead.add" and self.left > 0:
            self.left -= 1
            body = {
                "error": "OPERATION_TIME_LIMIT",
                "error_description": "Method is blocked due to operation time limit.",
                "operating_reset_at": self.clock.wall() + self.hold,
            }
            return httpx.Response(429, json=body)
        return await self.inner.handle_async_request(request)


async def test_a_held_direct_call_is_parked_and_other_methods_go_on() -> None:
    """A 429 on a direct call holds its method; the calls of that method wait parked, not in
    concurrency slots, so the requests of other methods are not delayed by the hold."""
    emu = emulator()
    clock = FakeClock()
    transport = _RefusingAdds(emu, 1, clock, hold=30.0)
    cmd = {f"t{i}": tricky_add(f"{TRICKY} {i}") for i in range(2)}
    cmd |= {f"u{i}": ("user.current", {}) for i in range(60)}
    async with BitrixClient(
        emu.webhook_url(),
        transport=transport,
        rate_limit=None,
        retry=RetryPolicy(attempts=5, wait_jitter=0.0),
        max_concurrency=2,
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
    ) as client:
        result = await client.batch(cmd)
    assert all(r.ok for r in result.values())
    batches = [t for t, method in transport.answers if method == "batch"]
    adds = [t for t, method in transport.answers if method == "crm.lead.add"]
    assert len(batches) == 2
    assert max(batches) < 1.0  # not behind the 30 s hold
    assert len(adds) == 3  # one refused, then each once after the hold
    assert min(adds[1:]) >= 30.0
    assert sorted(r["TITLE"] for r in emu.records("lead")) == [f"{TRICKY} 0", f"{TRICKY} 1"]


async def test_a_form_body_one_value_past_max_input_vars_with_the_token_goes_as_json() -> None:
    """A command checked at the limit gets the access token as one value more: sent as a form,
    PHP would cut the token; the call goes as JSON, which PHP does not count."""
    from tests.emulator_support import oauth_for

    emu = emulator()
    fields = {f"UF_{i}": "x" for i in range(999)} | {"TITLE": Literal(TRICKY)}
    async with client_for(emu, url=oauth_for(emu), body="form") as client:
        result = await client.batch({"t": ("crm.lead.add", {"fields": fields})})
    assert result["t"].ok, result["t"]
    assert [r["TITLE"] for r in emu.records("lead")] == [TRICKY]
