"""Fault scenarios on the emulator: every command ends accounted for, no write duplicated.

Each scenario runs the client and the emulator on one virtual clock, so limits and holds take
no real time. "Accounted for" means each command is OK, FAILED with the server's error,
SKIPPED with a reason, or UNKNOWN (a write whose outcome the client cannot know).
"""

from __future__ import annotations

from typing import Any

import httpx

from bitrix_batch import BatchResult, BitrixClient, RetryPolicy, Status
from bitrix_batch.emulator import Emulator, EmulatorConfig, FaultConfig, MethodCost
from tests.fake_clock import FakeClock


def setup(clock: FakeClock, **options: Any) -> tuple[Emulator, BitrixClient]:
    options.setdefault("rate_limit", True)
    options.setdefault("operating_limit", False)
    emu = Emulator(EmulatorConfig(clock=clock.wall, **options))
    client = BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        retry=RetryPolicy(attempts=10, wait_jitter=0.0),
    )
    return emu, client


def adds(n: int, prefix: str = "lead") -> list[Any]:
    return [("crm.lead.add", {"fields": {"TITLE": f"{prefix} {i}"}}) for i in range(n)]


def accounted(result: BatchResult, n: int) -> None:
    assert len(result) == n
    assert all(r.status in Status for r in result.values())
    assert len(result.result) + len(result.result_error) + len(result.skipped) + len(
        result.unknown
    ) == n


async def test_503_storm_loses_and_duplicates_nothing() -> None:
    """Every other request answered 503 for a while: all adds land exactly once."""
    clock = FakeClock()
    emu, client = setup(clock, faults=FaultConfig(seed=7, unavailable_503=0.5))
    async with client:
        result = await client.batch(adds(2000))
    accounted(result, 2000)
    result.raise_for_errors()
    assert emu.stats.status_503 > 5
    assert emu.count("lead") == 2000
    assert emu.stats.duplicate_adds("lead") == {}


async def test_a_method_hitting_its_operating_limit_mid_run() -> None:
    """crm.lead.add runs out of operating time: it waits alone, gets go on, all adds land once."""
    clock = FakeClock()
    emu, client = setup(
        clock,
        rate_limit=False,
        operating_limit=True,
        costs={"crm.lead.add": MethodCost(2.0), "*": MethodCost(0.2)},
        request_time_limit=None,  # 50 adds of 2 s would pass the 60 s cap: holds are the point
    )
    cmd: dict[str, Any] = {f"a{i}": add for i, add in enumerate(adds(600))}
    cmd |= {f"u{i}": ("user.current", {}) for i in range(600)}
    order: list[str] = []
    async with client, client.stream(cmd) as results:
        async for r in results:
            assert r.ok, r
            order.append(str(r.key))
    # 600 adds x 2 s = 1,200 s of operating time against 480 s per 600 s: it had to wait.
    assert clock.now >= 600
    # The reads were never held back behind the blocked method: they all finished before
    # the adds that had to wait for the budget.
    last_read = max(order.index(f"u{i}") for i in range(600))
    assert sum(1 for key in order[last_read:] if key.startswith("a")) >= 100
    assert emu.count("lead") == 600
    assert emu.stats.duplicate_adds("lead") == {}
    assert len(order) == 1200


async def test_html_500_after_run_storm_never_duplicates() -> None:
    """A fifth of batches answer HTML 500 after running: those adds are unknown, none doubled."""
    clock = FakeClock()
    emu, client = setup(clock, faults=FaultConfig(seed=3, fail_after_run=0.2))
    async with client:
        result = await client.batch(adds(1500))
    accounted(result, 1500)
    assert result.unknown
    assert emu.count("lead") == 1500  # they all ran, even the unknown ones
    assert emu.stats.duplicate_adds("lead") == {}
    assert len(result.result) + len(result.unknown) == 1500


async def test_reads_are_retried_through_dropped_connections() -> None:
    """Connections dropped after running: reads are re-sent and all succeed."""
    clock = FakeClock()
    emu, client = setup(clock, faults=FaultConfig(seed=5, drop_after_run=0.3))
    async with client:
        result = await client.batch([("user.current", {})] * 1000)
    result.raise_for_errors()
    assert emu.stats.faults["drop_after_run"] > 0
