"""One client across several event loops: separate anyio.run calls, asyncio then trio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from bitrix_batch import BitrixClient, EventLoopChangedError, RetryPolicy
from bitrix_batch.emulator import Emulator, EmulatorConfig, serve_in_thread
from tests.emulator_support import oauth_for

pytestmark = pytest.mark.integration


@pytest.fixture
def url() -> Iterator[str]:
    emu = Emulator(EmulatorConfig(operating_limit=False))
    with serve_in_thread(emu) as base:
        yield emu.webhook_url(base)


def adds(n: int) -> list[Any]:
    return [("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}) for i in range(n)]


def test_one_client_serves_several_runs_of_each_backend(url: str) -> None:
    """Its pool, rate limiter and locks follow the loop: no 'Event loop is closed'."""
    client = BitrixClient(url, retry=RetryPolicy.testing())

    async def job() -> int:
        async with client:  # closes the pool of this run; the next run opens another
            result = await client.batch(adds(60))
        result.raise_for_errors()
        return len(result.result)

    assert [anyio.run(job) for _ in range(2)] == [60, 60]
    assert anyio.run(job, backend="trio") == 60
    assert anyio.run(job) == 60


def test_a_callers_http_client_cannot_move_to_another_loop(url: str) -> None:
    """A shared httpx.AsyncClient belongs to its loop: a typed error, not httpx's raw one."""
    holder: dict[str, BitrixClient] = {}

    async def first() -> None:
        http = httpx.AsyncClient()
        holder["client"] = BitrixClient(url, http_client=http, retry=RetryPolicy.testing())
        await holder["client"].call("user.current")
        await http.aclose()

    async def second() -> None:
        await holder["client"].call("user.current")

    anyio.run(first)
    with pytest.raises(EventLoopChangedError, match="another event loop"):
        anyio.run(second)


def test_an_oauth_refresh_works_in_each_run() -> None:
    """The single-flight refresh lock is per loop too: a refresh in asyncio, then in trio."""
    emu = Emulator(EmulatorConfig(operating_limit=False, rate_limit=False))
    creds = oauth_for(emu)
    client = BitrixClient(creds, transport=httpx.ASGITransport(app=emu.app), rate_limit=None)

    async def job() -> Any:
        emu.expire_access_tokens()
        return await client.call("user.current")

    assert anyio.run(job)["ID"] == anyio.run(job, backend="trio")["ID"]
    assert emu.stats.oauth_refreshes == 2


def test_the_rate_limiter_drains_across_runs_of_trio_and_asyncio() -> None:
    """trio's clock starts at a random offset in each run: the bucket keeps real time, so
    a run after a trio run is paced, not stalled until the clocks meet."""
    from bitrix_batch import RateLimit

    emu = Emulator(EmulatorConfig(operating_limit=False, rate_limit=False))
    client = BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        rate_limit=RateLimit(burst=2, per_second=50.0),
    )

    async def job() -> None:
        with anyio.fail_after(5):
            for _ in range(6):
                await client.call("user.current")

    anyio.run(job, backend="trio")
    anyio.run(job)
    anyio.run(job, backend="trio")
    assert emu.stats.requests == 18
