"""Streams: commands read lazily from iterables and async iterables, with bounded memory."""

from __future__ import annotations

import gc
import json
import math
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from bitrix_batch import BitrixClient, Ref, RetryPolicy, SkipReason, Status
from bitrix_batch.emulator import Emulator, EmulatorConfig
from tests.fake_bitrix import WEBHOOK, Fail, FakeBitrix


def emulator() -> Emulator:
    return Emulator(EmulatorConfig(rate_limit=False, operating_limit=False, seed_users=3))


def client_for(emu: Emulator, **kwargs: Any) -> BitrixClient:
    return BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        rate_limit=None,
        retry=RetryPolicy.testing(),
        **kwargs,
    )


def adds(n: int, start: int = 0) -> Iterator[tuple[str, Any]]:
    for i in range(start, start + n):
        yield f"a{i}", ("crm.lead.add", {"fields": {"TITLE": f"Lead {i}"}})


def chains(n: int) -> Iterator[tuple[str, Any]]:
    """user.get -> crm.lead.add using the user -> crm.lead.get of the new lead, n times."""
    for i in range(n):
        yield f"u{i}", ("user.get", {"filter": {"ID": 1 + i % 3}})
        yield f"a{i}", ("crm.lead.add", {"fields": {"ASSIGNED_BY_ID": Ref(f"u{i}")[0]["ID"]}})
        yield f"g{i}", ("crm.lead.get", {"id": Ref(f"a{i}")})


async def collect(client: BitrixClient, cmd: Any, **kwargs: Any) -> list[Any]:
    async with client.stream(cmd, **kwargs) as results:
        return [r async for r in results]


async def test_a_generator_is_packed_like_a_list() -> None:
    """1,234 independent commands from a generator take ceil(1234/50) requests, all run once."""
    emu = emulator()
    async with client_for(emu) as client:
        out = await collect(client, adds(1234))
    assert len(out) == 1234
    assert all(r.status is Status.OK for r in out)
    assert emu.stats.requests == math.ceil(1234 / 50)
    assert not emu.stats.duplicate_adds("lead")


async def test_back_references_in_a_stream_resolve_as_in_a_list() -> None:
    """Chains read lazily give the same requests as the same chains planned whole."""
    emu_list, emu_stream = emulator(), emulator()
    async with client_for(emu_list) as client:
        whole = await client.batch(dict(chains(300)))
    async with client_for(emu_stream) as client:
        lazy = await client.batch(chains(300))
    assert whole.ok
    assert lazy.ok
    assert list(lazy) == list(whole)  # every key, in the caller's order
    assert emu_stream.stats.requests == emu_list.stats.requests
    for i in range(300):
        assert lazy.result[f"g{i}"]["ID"] == str(lazy.result[f"a{i}"])


async def test_a_small_window_still_resolves_references_across_windows() -> None:
    """With a window smaller than a chain's span, producers and users land in different
    windows; the client substitutes the values, nothing is lost."""
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(chains(200), window=7)
    assert result.ok
    for i in range(200):
        assert result.result[f"g{i}"]["ID"] == str(result.result[f"a{i}"])


async def test_the_input_is_read_only_a_window_ahead() -> None:
    """At no point are more than `window` commands read and not yet final."""
    emu = emulator()
    pulled = 0
    worst = 0

    def source() -> Iterator[tuple[str, Any]]:
        nonlocal pulled
        for item in adds(3000):
            pulled += 1
            yield item

    async with client_for(emu) as client, client.stream(source(), window=300) as results:
        seen = 0
        async for _ in results:
            seen += 1
            worst = max(worst, pulled - seen)
    assert seen == 3000
    # The window, plus what sits in the stream's hand-over buffer (50).
    assert worst <= 300 + 50


async def test_an_async_source_is_read_by_its_own_task() -> None:
    """An async generator that trickles in commands: chunks still filling are sent rather
    than waiting for a window that never fills."""
    emu = emulator()

    async def source() -> AsyncIterator[tuple[str, Any]]:
        for i in range(120):
            if i % 40 == 0:
                await anyio.sleep(0.01)
            yield f"a{i}", ("crm.lead.add", {"fields": {"TITLE": f"Lead {i}"}})
        yield "check", ("crm.lead.get", {"id": Ref("a119")})

    async with client_for(emu) as client:
        with anyio.fail_after(10):
            result = await client.batch(source())
    assert result.ok
    assert len(result) == 121
    assert result.result["check"]["TITLE"] == "Lead 119"


async def test_dict_items_is_a_stream() -> None:
    """Any iterable of pairs is read lazily, dict views included."""
    emu = emulator()
    cmd = dict(adds(60))
    async with client_for(emu) as client:
        result = await client.batch(cmd.items())
    assert list(result) == list(cmd)
    assert result.ok


async def test_an_invalid_command_in_a_stream_is_reported_and_the_job_goes_on() -> None:
    """A bad command mid-stream is skipped with its error; its dependents are skipped in turn;
    everything else runs."""
    emu = emulator()

    def source() -> Iterator[Any]:
        yield from adds(10)
        yield "bad", ("crm.lead.add", {"fields": {"TITLE": object()}})
        yield "uses_bad", ("crm.lead.get", {"id": Ref("bad")})
        yield "not_a_pair"
        yield "dup", "user.current"
        yield "dup", "user.current"
        yield from adds(10, start=10)

    async with client_for(emu) as client:
        result = await client.batch(source())
    assert len(result.result) == 21  # 20 adds and the first "dup"
    bad = result.skipped["bad"]
    assert bad.reason is SkipReason.INVALID_COMMAND
    assert "TITLE" in bad.detail
    assert "object" in bad.detail
    assert result.skipped["uses_bad"].reason is SkipReason.DEPENDENCY_FAILED
    assert result["dup"].status is Status.OK  # the first keeps the key's place
    not_a_pair, dup = result.rejected
    assert not_a_pair.key == 12  # an item that is no pair is reported by its position
    assert not_a_pair.skip is not None
    assert "pair" in not_a_pair.skip.detail
    assert dup.skip is not None
    assert "duplicate command key 'dup'" in dup.skip.detail
    assert not result.ok
    assert emu.stats.commands.get("crm.lead.add", 0) == 20


async def test_references_point_backwards_within_the_look_back() -> None:
    """In a stream a reference may name only one of the last `lookback` commands: a forward
    reference (how a cycle would have to start) and one too far back are reported, naming
    both keys, and never sent."""
    emu = emulator()

    def source() -> Iterator[tuple[str, Any]]:
        yield "first", ("crm.lead.add", {"fields": {"TITLE": "first"}})
        yield "ahead", ("crm.lead.get", {"id": Ref("later")})
        yield from adds(20)
        yield "far", ("crm.lead.get", {"id": Ref("first")})
        yield "near", ("crm.lead.get", {"id": Ref("a19")})
        yield "later", ("crm.lead.add", {"fields": {"TITLE": "later"}})

    async with client_for(emu) as client:
        out = {r.key: r async for r in _aiter(client, source(), lookback=5)}
    for key, target in (("ahead", "later"), ("far", "first")):
        skip = out[key].skip
        assert skip is not None and skip.reason is SkipReason.INVALID_COMMAND  # noqa: PT018
        assert repr(key) in skip.detail
        assert repr(target) in skip.detail
        assert "look-back" in skip.detail
    assert out["near"].ok and out["later"].ok  # noqa: PT018
    assert emu.stats.commands.get("crm.lead.get", 0) == 1


async def _aiter(client: BitrixClient, cmd: Any, **kwargs: Any) -> AsyncIterator[Any]:
    async with client.stream(cmd, **kwargs) as results:
        async for r in results:
            yield r


async def test_halt_in_a_stream_stops_reading() -> None:
    """halt=True: after the first failure nothing later runs, and the rest of the input is
    not even read."""
    fake = FakeBitrix()
    fake.methods["crm.lead.add"] = lambda params: 1

    def fail(params: dict[str, Any]) -> Any:
        raise Fail("ERROR_CORE", "no")

    fake.methods["crm.lead.update"] = fail
    pulled = 0

    def source() -> Iterator[tuple[str, Any]]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield f"c{i}", ("crm.lead.update" if i == 70 else "crm.lead.add", {"id": i})

    client = BitrixClient(WEBHOOK, transport=fake.transport(), rate_limit=None,
                          retry=RetryPolicy.testing())
    async with client:
        result = await client.batch(source(), halt=True, window=200)
    assert [k for k, r in result.items() if r.ok] == [f"c{i}" for i in range(70)]
    assert "c70" in result.result_error
    assert all(s.reason is SkipReason.HALTED for s in result.skipped.values())
    assert pulled < 1000


async def test_progress_counts_what_was_read() -> None:
    """For a stream, progress reports (done, read so far), ending at the whole job."""
    emu = emulator()
    seen: list[tuple[int, int]] = []
    async with client_for(emu) as client:
        await client.batch(adds(500), window=100, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (500, 500)
    assert all(d <= t for d, t in seen)
    assert seen == sorted(seen)


def _answer_every_add(request: httpx.Request) -> httpx.Response:
    """A portal that keeps nothing: every command in a batch gets an ID."""
    cmd = json.loads(request.content)["cmd"]
    result = dict.fromkeys(cmd, 7)
    timing = {key: {"operating": 0} for key in cmd}
    return httpx.Response(200, json={"result": {"result": result, "result_time": timing}})


def _stream_peak(n: int) -> int:
    """Peak traced memory of streaming `n` adds from a generator through a fake portal."""

    async def job() -> int:
        client = BitrixClient(WEBHOOK, transport=httpx.MockTransport(_answer_every_add),
                              rate_limit=None, retry=RetryPolicy.testing())
        count = 0
        async with client, client.stream(adds(n), window=500, lookback=500) as results:
            async for r in results:
                count += r.ok
        return count

    gc.collect()
    tracemalloc.start()
    try:
        assert anyio.run(job) == n
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stream_memory_is_bounded_by_the_window_not_the_job() -> None:
    """Memory of a stream consumed as it goes does not grow with the job: 4x the commands,
    (about) the same peak, far below what keeping every command would take."""
    _stream_peak(500)  # one-time costs (imports, caches) out of the way
    small = _stream_peak(5_000)
    big = _stream_peak(20_000)
    assert big < small * 1.25 + 100_000, (small, big)
    assert big < 20_000 * 100  # keeping 20,000 commands would cost several hundred bytes each


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_streams_run_on_both_backends(backend: str) -> None:
    """A lazily read async source under asyncio and trio alike."""
    emu = emulator()

    async def source() -> AsyncIterator[tuple[str, Any]]:
        for item in adds(75):
            yield item

    async def job() -> int:
        async with client_for(emu) as client:
            return len((await client.batch(source())).result)

    assert anyio.run(job, backend=backend) == 75


def _fake_adds() -> FakeBitrix:
    fake = FakeBitrix()
    fake.methods["crm.lead.add"] = lambda params: 1

    def fail(params: dict[str, Any]) -> Any:
        raise Fail("ERROR_CORE", "no")

    fake.methods["crm.fail"] = fail
    return fake


def _fake_client(fake: FakeBitrix) -> BitrixClient:
    return BitrixClient(WEBHOOK, transport=fake.transport(), rate_limit=None,
                        retry=RetryPolicy.testing())


async def test_what_a_packed_command_refers_to_is_kept_until_it_is_sent() -> None:
    """A write refers to a command within the look-back and waits for its request to fill up
    while the input is read on past the look-back: the value it needs is still there."""

    def source() -> Iterator[tuple[str, Any]]:
        yield from adds(50)
        yield "u", ("crm.lead.add", {"fields": {"TITLE": "u", "COMMENTS": Ref("a0")}})
        yield from adds(300, start=50)

    emu = emulator()
    async with client_for(emu) as client:
        out = {r.key: r for r in await collect(client, source(), lookback=60, window=151)}
    assert len(out) == 351
    assert out["u"].ok, out["u"]


async def test_lookback_counts_the_commands_before_it() -> None:
    """lookback=1: a command may refer to the one just before it, and no further."""
    source = iter([
        ("a", ("user.current", {})),
        ("b", ("user.get", {"ID": Ref("a")["ID"]})),
        ("c", ("user.get", {"ID": Ref("a")["ID"]})),
    ])
    emu = emulator()
    async with client_for(emu) as client:
        out = {r.key: r for r in await collect(client, source, lookback=1)}
    assert out["b"].ok
    assert out["c"].skip is not None
    assert out["c"].skip.reason is SkipReason.INVALID_COMMAND


async def test_an_int_and_a_str_key_are_one_key_in_a_stream() -> None:
    """'5' and 5 are one key, as on the server: the second is rejected, never sent."""
    source: Iterator[Any] = iter([("5", ("user.current", {})), (5, ("user.current", {}))])
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(source)
    assert list(result) == ["5"]
    [dup] = result.rejected
    assert dup.key == 5
    assert emu.stats.commands.get("user.current", 0) == 1


async def test_a_bad_item_never_takes_a_real_keys_place() -> None:
    """An item reported under its position (1) does not displace the real command 1."""
    source: Iterator[Any] = iter(
        [(0, ("user.current", {})), "garbage", (1, ("user.current", {}))]
    )
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(source)
    assert result[1].ok
    assert [r.key for r in result.rejected] == [1]


async def test_an_async_source_is_packed_like_a_sync_one() -> None:
    """A fast async generator fills requests as a list would (25 for 1,234 commands)."""

    async def source() -> AsyncIterator[tuple[str, Any]]:
        for item in adds(1234):
            yield item

    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(source())
    assert result.ok
    assert emu.stats.requests <= 26


async def test_a_window_of_one_with_an_async_source_runs_to_the_end() -> None:
    """The smallest window: one command at a time, no stall."""

    async def source() -> AsyncIterator[tuple[str, Any]]:
        for item in adds(5):
            yield item

    async with _fake_client(_fake_adds()) as client:
        with anyio.fail_after(10):
            out = await collect(client, source(), window=1)
    assert len(out) == 5


async def test_held_methods_and_an_async_source_on_an_injected_clock() -> None:
    """A method over its operating-time budget, an async source, the client's own clock:
    the job sleeps until the hold ends instead of waiting for the source forever."""
    from bitrix_batch.emulator import MethodCost
    from tests.fake_clock import FakeClock

    clock = FakeClock()
    emu = Emulator(EmulatorConfig(
        clock=clock.wall, rate_limit=False, operating_limit=True,
        costs={"crm.lead.add": MethodCost(2.0), "*": MethodCost(0.2)},
        request_time_limit=None,  # exaggerated costs: the holds, not the 60 s cap
    ))
    client = BitrixClient(emu.webhook_url(), transport=httpx.ASGITransport(app=emu.app),
                          clock=clock, sleep=clock.sleep, wall_clock=clock.wall,
                          rate_limit=None, retry=RetryPolicy(attempts=10, wait_jitter=0.0))

    async def source() -> AsyncIterator[tuple[str, Any]]:
        for item in adds(300):
            yield item

    with anyio.fail_after(20):
        async with client:
            out = await collect(client, source(), window=60)
    assert len(out) == 300
    assert all(r.ok for r in out)


async def test_halt_stops_an_async_source_cleanly() -> None:
    """halt=True, an async source and a failure: the job ends without an error of its own;
    what was read after the failure is reported halted, nothing after it runs."""

    async def source() -> AsyncIterator[tuple[str, Any]]:
        for i in range(1000):
            yield (f"x{i}", ("crm.fail", {})) if i == 120 else (f"a{i}", ("crm.lead.add", {}))
            await anyio.lowlevel.checkpoint()

    for _ in range(3):
        fake = _fake_adds()
        async with _fake_client(fake) as client:
            with anyio.fail_after(10):
                out = await collect(client, source(), halt=True, window=100)
        assert [r.key for r in out if r.ok] == [f"a{i}" for i in range(120)]
        assert out[120].key == "x120"
        assert all(r.skip is not None and r.skip.reason is SkipReason.HALTED for r in out[121:])


async def test_a_failing_source_stops_the_job_and_keeps_what_was_sent() -> None:
    """The caller's iterator raising ends the input there: what it gave before still runs,
    and the error comes out as itself with every command's outcome attached."""

    def source() -> Iterator[tuple[str, Any]]:
        yield from adds(170)
        raise ValueError("source broke")

    fake = _fake_adds()
    async with _fake_client(fake) as client:
        with pytest.raises(ValueError, match="source broke") as info:
            await client.batch(source(), window=100)
    result = info.value.bitrix_batch_result  # type: ignore[attr-defined]
    assert len(result) == 170
    assert result.ok
    assert sorted(fake.sent_keys()) == sorted(result)


def test_the_stream_import_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """examples/stream_import.py runs as written (at a small size)."""
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).parent.parent / "examples/stream_import.py"))
    anyio.run(example["main"], 300)
    assert capsys.readouterr().out.startswith("600 ok, 0 not ok, 12 requests")


async def test_a_key_repeated_beyond_the_look_back_runs_and_is_kept_apart() -> None:
    """Repeats are looked for only within the look-back: one further back is sent, and its
    outcome is kept in `repeated` (the key's place holds the first)."""
    source: Iterator[Any] = iter([
        ("a", ("user.current", {})),
        ("b", ("user.current", {})),
        ("c", ("user.current", {})),
        ("a", ("crm.lead.add", {"fields": {"TITLE": "x"}})),
    ])
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(source, lookback=1)
    assert list(result) == ["a", "b", "c"]
    [again] = result.repeated
    assert again.ok
    assert again.method == "crm.lead.add"
    assert not result.rejected
    assert result.ok  # everything ran and succeeded
    result.raise_for_errors()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_library_error_from_the_source_comes_out_as_itself(kind: str) -> None:
    """A source that itself calls Bitrix24 and fails with one of our errors: that error comes
    out of batch(), not a partial result that looks complete."""
    from bitrix_batch import TransportError

    failure = TransportError("reading the next page failed", method="crm.lead.list")

    def sync_source() -> Iterator[tuple[str, Any]]:
        yield from adds(3)
        raise failure

    async def async_source() -> AsyncIterator[tuple[str, Any]]:
        for item in adds(3):
            yield item
        await anyio.sleep(0.05)
        raise failure

    emu = emulator()
    async with client_for(emu) as client:
        with pytest.raises(TransportError) as info:
            await client.batch(sync_source() if kind == "sync" else async_source(), window=3)
    assert info.value is failure
    assert len(info.value.bitrix_batch_result.result) == 3  # type: ignore[attr-defined]


async def test_a_source_error_comes_after_every_outcome_read_before_it() -> None:
    """The caller's iterator fails after 120 commands: a reader still gets all 120 outcomes,
    then the error itself (repeated: the order of the tasks varies between runs)."""

    class SourceBroke(Exception):
        pass

    def source() -> Iterator[tuple[str, Any]]:
        yield from adds(120)
        raise SourceBroke

    for _ in range(30):
        fake = _fake_adds()
        seen: list[Any] = []
        with pytest.raises(SourceBroke):  # noqa: PT012 - the error follows the outcomes
            async with _fake_client(fake) as client, client.stream(source()) as results:
                async for outcome in results:
                    seen.append(outcome.key)
        assert len(seen) == 120


@pytest.mark.parametrize("read", [0, 5, 60])
async def test_a_source_error_is_raised_when_the_reader_leaves_early(read: int) -> None:
    """The reader stops before the end: the source's error still comes out of the block."""

    class SourceBroke(Exception):
        pass

    def source() -> Iterator[tuple[str, Any]]:
        yield from adds(120)
        raise SourceBroke

    fake = _fake_adds()
    with pytest.raises(SourceBroke):  # noqa: PT012 - raised when the block is left
        async with _fake_client(fake) as client, client.stream(source()) as results:
            iterator = aiter(results)
            for _ in range(read):
                await anext(iterator)
            for _ in range(20):  # let the job read the whole source and fill the buffer
                await anyio.lowlevel.checkpoint()
