"""A few client runs over real sockets: uvicorn serving the emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bitrix_batch import BitrixClient, RetryPolicy, Status
from bitrix_batch.emulator import Emulator, EmulatorConfig, serve_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def served() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(operating_limit=False))
    with serve_in_thread(emu) as base:
        yield emu, emu.webhook_url(base)


def adds(n: int) -> list[Any]:
    return [("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}) for i in range(n)]


async def test_1234_commands_over_loopback(served: tuple[Emulator, str]) -> None:
    """25 requests on real sockets, inside the server's burst: no 503, every lead once."""
    emu, url = served
    async with BitrixClient(url, retry=RetryPolicy.testing()) as client:
        result = await client.batch(adds(1234))
    result.raise_for_errors()
    assert emu.stats.requests == 25
    assert emu.stats.status_503 == 0
    assert emu.count("lead") == 1234


async def test_dropped_connection_after_writes_is_outcome_unknown(
    served: tuple[Emulator, str],
) -> None:
    """The server ran the adds and dropped the connection: unknown, not re-sent."""
    emu, url = served
    emu.faults.script("drop_after_run")
    async with BitrixClient(url, retry=RetryPolicy.testing()) as client:
        result = await client.batch(adds(20))
    assert {r.status for r in result.values()} == {Status.UNKNOWN}
    assert emu.stats.requests == 1
    assert emu.count("lead") == 20


async def test_read_timeout_retries_reads_only(served: tuple[Emulator, str]) -> None:
    """A slow answer times out: the reads are sent again, the writes are not."""
    emu, url = served
    emu.faults.script("slow", "ok", "slow")
    async with BitrixClient(url, timeout=0.2, retry=RetryPolicy.testing()) as client:
        reads = await client.batch([("user.current", {})] * 3)
        writes = await client.batch(adds(3))
    assert reads.ok
    assert set(writes.unknown) == {0, 1, 2}
    assert "ReadTimeout" in str(writes.unknown[0].uncertain)
