"""The sync facade against the emulator in-process: plain (blocking) tests, on both backends."""

from __future__ import annotations

import asyncio
import gc
import inspect
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, cast

import anyio
import httpx
import pytest

import bitrix_batch
from bitrix_batch import (
    MAX_BATCH,
    BitrixBatchError,
    BitrixClient,
    ClientClosedError,
    DependencyCycleError,
    Ref,
    RetryPolicy,
)
from bitrix_batch.emulator import Emulator
from bitrix_batch.sync import SyncBitrixClient
from tests.emulator_support import make_emulator

Backend = Literal["asyncio", "trio"]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test runs the client's loop on asyncio, and on trio."""
    return cast(Backend, request.param)


def sync_client(emu: Emulator, backend: Backend, **kwargs: Any) -> SyncBitrixClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.testing())
    url = kwargs.pop("url", emu.webhook_url())
    return SyncBitrixClient(
        url, transport=httpx.ASGITransport(app=emu.app), backend=backend, **kwargs
    )


def portal_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("bitrix_batch-")}


def test_batch_with_references_across_requests(backend: Backend) -> None:
    """More than 50 commands: several requests, user.current's ID substituted client-side."""
    emu = make_emulator()
    cmd: dict[str, Any] = {"me": "user.current"}
    for i in range(60):
        cmd[f"lead{i}"] = (
            "crm.lead.add",
            {"fields": {"TITLE": f"#{i} for {Ref('me')['NAME']}",
                        "ASSIGNED_BY_ID": Ref("me")["ID"]}},
        )
        cmd[f"get{i}"] = ("crm.lead.get", {"id": Ref(f"lead{i}")})
    with sync_client(emu, backend) as client:
        plan = client.plan(cmd)
        result = client.batch(cmd).raise_for_errors()
    assert len(plan.chunks) >= 3
    assert emu.stats.requests == len(plan.chunks)
    me = result.result["me"]
    assert result.result["get59"]["ASSIGNED_BY_ID"] == str(me["ID"])
    assert result.result["get59"]["TITLE"] == f"#59 for {me['NAME']}"
    assert emu.count("lead") == 60
    assert emu.stats.duplicate_adds("lead") == {}


def test_many_calls_in_a_row_and_several_clients_at_once(backend: Backend) -> None:
    """One loop per client, kept for its whole life: calls repeat, clients coexist."""
    emu = make_emulator()
    before = portal_threads()
    with sync_client(emu, backend) as first, sync_client(emu, backend) as second:
        ids = []
        for i in range(20):
            client = first if i % 2 else second
            ids.append(client.call("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}))
        page = first.request("crm.lead.list", {"select": ["ID"]})
        assert len(portal_threads() - before) == 2
    assert len(set(ids)) == 20
    assert page.total == 20
    assert portal_threads() == before  # each client's thread stopped with it


def test_one_client_from_several_threads(backend: Backend) -> None:
    """Calls from several threads at once run side by side on the client's loop."""
    emu = make_emulator()
    with sync_client(emu, backend) as client, ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda i: client.batch([("crm.lead.add", {"fields": {"N": i}})] * 60),
                     range(8))
        )
    assert all(r.ok for r in results)
    assert emu.count("lead") == 8 * 60


def test_stream_is_lazy_and_bounded(backend: Backend) -> None:
    """A generator is read a window ahead of what was consumed, not to its end."""
    emu = make_emulator()
    read = 0

    def source() -> Iterator[tuple[str, Any]]:
        nonlocal read
        for i in range(1000):
            read += 1
            yield f"lead{i}", ("crm.lead.add", {"fields": {"TITLE": f"#{i}"}})

    window = 100
    with sync_client(emu, backend) as client, client.stream(source(), window=window) as results:
        first = [next(results) for _ in range(5)]
        time.sleep(0.2)  # give the job every chance to read ahead
        assert read <= window + 2 * MAX_BATCH
        rest = list(results)
    assert all(r.ok for r in first + rest)
    assert len({r.key for r in first + rest}) == 1000
    assert read == 1000


def test_leaving_a_stream_early_then_more_calls(backend: Backend) -> None:
    """Leaving the block cancels the job; the client goes on working."""
    emu = make_emulator()
    source = ((f"k{i}", ("crm.lead.add", {"fields": {"N": i}})) for i in range(10_000))
    with sync_client(emu, backend) as client:
        with client.stream(source, window=50) as results:
            for r in results:
                assert r.ok
                break
        with pytest.raises(ClientClosedError, match="with block has ended"):
            next(results)
        assert client.call("user.current")["ID"]
        with client.stream({"a": "user.current", "b": "user.current"}) as again:
            assert {r.key for r in again} == {"a", "b"}
    assert emu.count("lead") < 10_000


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_works_inside_a_running_event_loop(backend: Backend, loop: str) -> None:
    """A notebook cell: the caller's own loop is running; the client blocks it and works."""

    async def cell() -> tuple[Any, int]:
        emu = make_emulator()
        with sync_client(emu, backend) as client:
            me = client.call("user.current")
            with client.stream([("user.current", {})] * 3) as results:
                outcomes = list(results)
        return me, len(outcomes)

    if loop == "asyncio":
        me, n = asyncio.run(cell())
    else:
        me, n = anyio.run(cell, backend="trio")
    assert me["ID"]
    assert n == 3


def test_calls_after_close_raise_a_typed_error(backend: Backend) -> None:
    """Every method refuses with ClientClosedError once closed; closing twice is harmless."""
    emu = make_emulator()
    client = sync_client(emu, backend)
    client.close()
    client.close()
    assert client.closed
    calls: list[Callable[[], object]] = [
        lambda: client.call("user.current"),
        lambda: client.request("user.current"),
        lambda: client.batch({"a": "user.current"}),
        lambda: client.plan({"a": "user.current"}),
        lambda: client.stream({"a": "user.current"}).__enter__(),
    ]
    for call in calls:
        with pytest.raises(ClientClosedError, match="closed") as info:
            call()
        assert isinstance(info.value, BitrixBatchError)
    with sync_client(emu, backend) as other:
        pass
    with pytest.raises(ClientClosedError):
        other.call("user.current")


def test_close_cancels_what_runs_in_another_thread(backend: Backend) -> None:
    """A batch blocked in another thread ends with ClientClosedError when the client closes."""
    emu = make_emulator()
    started = threading.Event()

    async def source() -> AsyncIterator[tuple[str, Any]]:
        yield "me", "user.current"
        await anyio.sleep(3600)  # a queue that never delivers again

    client = sync_client(emu, backend)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.batch, source(), progress=lambda *_: started.set())
        assert started.wait(10)
        client.close()
        with pytest.raises(ClientClosedError, match="while this call was running"):
            running.result(10)


def test_close_inside_a_stream_block(backend: Backend) -> None:
    """Closing cuts an open stream short: reading on, or leaving the block, says so."""
    emu = make_emulator()
    client = sync_client(emu, backend)
    block = client.stream(((f"k{i}", "user.current") for i in range(5_000)), window=100)
    results = block.__enter__()
    next(results)
    client.close()
    with pytest.raises(ClientClosedError, match="cut short"):
        next(results)
    with pytest.raises(ClientClosedError, match="while this call was running"):
        block.__exit__(None, None, None)


def test_exceptions_come_out_as_themselves(backend: Backend) -> None:
    """Bad input, a callback's error and a source's error reach the caller unchanged."""
    emu = make_emulator()
    boom = LookupError("the callback broke")

    def progress(done: int, total: int) -> None:
        raise boom

    def failing_source() -> Iterator[tuple[str, Any]]:
        yield "me", "user.current"
        raise broken

    broken = KeyError("the source broke")
    with sync_client(emu, backend) as client:
        with pytest.raises(DependencyCycleError, match="'a' -> 'b' -> 'a'"):
            client.batch({"a": ("crm.lead.get", {"id": Ref("b")}),
                          "b": ("crm.lead.get", {"id": Ref("a")})})
        with pytest.raises(LookupError) as info:
            client.batch({"a": "user.current"}, progress=progress)
        assert info.value is boom
        with pytest.raises(DependencyCycleError), client.stream(
            {"a": ("crm.lead.get", {"id": Ref("a")})}
        ):
            pytest.fail("the block must not run")  # pragma: no cover
        with client.stream(failing_source()) as results:
            seen: list[Any] = []
            with pytest.raises(KeyError) as source_info:
                seen.extend(r.key for r in results)
        assert source_info.value is broken
        assert seen == ["me"]
        assert client.call("user.current")["ID"]  # the client goes on working


def test_a_wrong_webhook_is_an_auth_error(backend: Backend) -> None:
    """The server's refusal comes out as the project's own error, as from BitrixClient."""
    emu = make_emulator()
    url = emu.webhook_url().replace(emu.config.webhook_code, "wrong")
    with sync_client(emu, backend, url=url) as client:
        with pytest.raises(bitrix_batch.AuthError):
            client.call("user.current")
        with pytest.raises(bitrix_batch.AuthError):
            client.batch({"a": "user.current"})


def test_callbacks_run_in_the_clients_thread_and_cannot_call_it(backend: Backend) -> None:
    """progress runs in the loop's thread; calling the client from there is a clear error."""
    emu = make_emulator()
    threads: set[int] = set()
    with sync_client(emu, backend) as client:
        client.batch({"a": "user.current"}, progress=lambda *_: threads.add(threading.get_ident()))
        assert threads
        assert threading.get_ident() not in threads
        with pytest.raises(RuntimeError, match="its own event loop's thread"):
            client.batch({"a": "user.current"},
                         progress=lambda *_: client.call("user.current"))
        with pytest.raises(RuntimeError, match="its own event loop's thread"):
            client.batch({"a": "user.current"}, progress=lambda *_: client.close())
        assert not client.closed


def test_repr_hides_the_secret(backend: Backend) -> None:
    """The webhook code is in no repr, before or after close."""
    emu = make_emulator()
    code = emu.config.webhook_code
    client = sync_client(emu, backend)
    try:
        assert code not in repr(client)
        assert "***" in repr(client)
        assert backend in repr(client)
    finally:
        client.close()
    assert code not in repr(client)
    assert "closed" in repr(client)


def test_a_client_dropped_without_close_stops_its_thread(backend: Backend) -> None:
    """Forgetting close leaks no thread once the client is collected."""
    emu = make_emulator()
    before = portal_threads()
    client = sync_client(emu, backend)
    assert client.call("user.current")["ID"]
    del client
    gc.collect()
    assert portal_threads() == before


def test_bad_options_fail_in_the_constructor_and_leave_no_thread() -> None:
    """A constructor error is BitrixClient's own, raised to the caller; no thread survives."""
    before = portal_threads()
    with pytest.raises(ValueError, match="webhook URL"):
        SyncBitrixClient("https://portal.example/not-a-webhook")
    with pytest.raises(ValueError, match="backend"):
        SyncBitrixClient("https://portal.example/rest/1/x/", backend="curio")  # type: ignore[arg-type]
    assert portal_threads() == before


def test_list_all_and_get_by_ids(backend: Backend) -> None:
    """The list helpers, without await: every row once, sorted; lookups in the order asked."""
    emu = make_emulator(seed_leads=130)
    with sync_client(emu, backend) as client:
        rows = client.list_all("crm.lead.list", {"select": ["ID", "TITLE"]})
        found = client.get_by_ids("crm.lead.get", [7, 99_999, 3])
        with pytest.raises(bitrix_batch.InvalidCommandError, match="start"):
            client.list_all("crm.lead.list", {"start": 50})
    ids = [int(row["ID"]) for row in rows]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == 130
    assert [int(row["ID"]) for row in found.rows] == [7, 3]
    assert found.missing == [99_999]


@pytest.mark.parametrize(
    "name", ["__init__", "call", "request", "plan", "batch", "stream", "list_all", "get_by_ids"]
)
def test_mirrors_the_async_client(name: str) -> None:
    """Every option of BitrixClient is offered with the same default (http_client aside)."""
    ours = inspect.signature(getattr(SyncBitrixClient, name)).parameters
    theirs = dict(inspect.signature(getattr(BitrixClient, name)).parameters)
    if name == "__init__":
        theirs.pop("http_client")
        assert list(ours)[-1] == "backend"
        ours = {k: v for k, v in ours.items() if k != "backend"}  # type: ignore[assignment]
    assert list(ours) == list(theirs)
    for key, param in theirs.items():
        assert ours[key].default == param.default, key
        assert ours[key].kind == param.kind, key


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_stops_the_job_and_the_client_goes_on(backend: Backend) -> None:
    """Interrupting the wait (a notebook's interrupt) cancels the work in the loop too."""
    emu = make_emulator()
    started, cancelled = threading.Event(), threading.Event()

    async def source() -> AsyncIterator[tuple[str, Any]]:
        yield "me", "user.current"
        try:
            await anyio.sleep(3600)
        finally:
            cancelled.set()

    def interrupt() -> None:
        assert started.wait(10)
        time.sleep(0.05)  # let the main thread settle into its wait
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    helper = threading.Thread(target=interrupt)
    with sync_client(emu, backend) as client:
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            client.batch(source(), progress=lambda *_: started.set())
        helper.join()
        assert cancelled.wait(10)
        assert client.call("user.current")["ID"]
