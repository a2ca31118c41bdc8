"""The shared operating-time budget (`SharedOperatingBudget`) against a real redis-server.

Local time is a `FakeClock` here: a hold's length is kept in seconds from now on both sides,
and Redis converts it to its own clock, so the virtual clock of each worker may differ.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from bitrix_batch import BitrixClient, MethodHeld, OperatingBudget
from tests.fake_clock import FakeClock
from tests.redis_support import (  # noqa: F401  (fixtures)
    ignore_coredis_leaks,
    needs_coredis,
    prefix_fixture,
    redis_fixture,
    redis_url_fixture,
)

pytestmark = [needs_coredis, ignore_coredis_leaks, pytest.mark.integration]


def make_budget(redis: Any, prefix: str, clock: FakeClock, **options: Any) -> Any:
    from bitrix_batch.redis import RedisLink, SharedOperatingBudget

    return SharedOperatingBudget(
        RedisLink(redis),
        f"{prefix}:holds",
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        **options,
    )


async def test_is_an_operating_budget(redis: Any, prefix: str) -> None:
    assert isinstance(make_budget(redis, prefix, FakeClock()), OperatingBudget)


async def test_a_hold_of_one_worker_holds_every_worker(redis: Any, prefix: str) -> None:
    one_clock, two_clock = FakeClock(), FakeClock(5_000.0)  # their clocks need not agree
    one = make_budget(redis, prefix, one_clock)
    two = make_budget(redis, prefix, two_clock)
    one.observe_blocked("CRM.Lead.Add", reset_at=one_clock.wall() + 120)
    assert one.unshared == {"crm.lead.add": 120.0}
    assert await one.wait("batch") == 0.0  # shares it; batch itself is not held
    assert one.unshared == {}
    assert not two.is_held("crm.lead.add")
    assert await two.sync()
    until = two.held_until("crm.lead.add")
    assert until is not None
    assert until - two_clock.now == pytest.approx(120.0, abs=0.5)
    assert not two.is_held("crm.task.add")  # only that method


async def test_near_the_limit_is_shared_too(redis: Any, prefix: str) -> None:
    clock = FakeClock()
    one, two = make_budget(redis, prefix, clock), make_budget(redis, prefix, clock)
    one.observe("crm.lead.add", {"operating": 430.0, "operating_reset_at": clock.wall() + 30})
    await one.sync()
    await two.sync()
    assert two.held_until("crm.lead.add") == pytest.approx(30.0, abs=0.5)


async def test_wait_sleeps_until_the_shared_hold_ends(redis: Any, prefix: str) -> None:
    # Real time: the hold ends on the Redis server's clock, which a FakeClock cannot move.
    from bitrix_batch.redis import RedisLink, SharedOperatingBudget

    one, two = (
        SharedOperatingBudget(RedisLink(redis), f"{prefix}:holds", default_block=0.3)
        for _ in range(2)
    )
    one.observe_blocked("batch")  # a 429 without a reset time: the default block
    await one.sync()
    waited = await two.wait("batch")
    assert 0.25 < waited < 2.0
    assert not two.is_held("batch")


async def test_holds_are_never_shortened(redis: Any, prefix: str) -> None:
    clock = FakeClock()
    one, two = make_budget(redis, prefix, clock), make_budget(redis, prefix, clock)
    one.observe_blocked("crm.deal.add", reset_at=clock.wall() + 300)
    await one.sync()
    two.observe_blocked("crm.deal.add", reset_at=clock.wall() + 10)  # a shorter one
    await two.sync()
    assert two.held_until("crm.deal.add") == pytest.approx(300.0, abs=0.5)
    fields = await redis.hgetall(f"{prefix}:holds")
    assert set(fields) == {"crm.deal.add"}


async def test_sync_is_rate_limited_without_news(redis: Any, prefix: str) -> None:
    clock = FakeClock()
    one, two = make_budget(redis, prefix, clock), make_budget(redis, prefix, clock)
    await two.wait("batch")  # looked at the (empty) shared holds just now
    one.observe_blocked("crm.lead.add", reset_at=clock.wall() + 100)
    await one.sync()
    await two.wait("batch")
    assert not two.is_held("crm.lead.add")  # within sync_interval: not looked again
    clock.now += 0.5
    await two.wait("batch")
    assert two.is_held("crm.lead.add")


async def test_the_hash_expires_with_its_last_hold(redis: Any, prefix: str) -> None:
    clock = FakeClock()
    one = make_budget(redis, prefix, clock)
    one.observe_blocked("crm.lead.add", reset_at=clock.wall() + 2)
    await one.sync()
    ttl = await redis.pttl(f"{prefix}:holds")
    assert 2000 < ttl <= 3100


async def test_the_client_parks_a_method_another_worker_held(redis: Any, prefix: str) -> None:
    """Worker one got the 429; worker two never sees one, yet holds the method till its end."""
    from bitrix_batch.emulator import Emulator, EmulatorConfig
    from bitrix_batch.redis import RedisLink, SharedOperatingBudget

    # Real time, as the hold ends on the Redis server's clock; a short default block.
    one, two = (
        SharedOperatingBudget(RedisLink(redis), f"{prefix}:holds", default_block=0.4)
        for _ in range(2)
    )
    one.observe_blocked("crm.lead.add")
    await one.sync()
    emu = Emulator(EmulatorConfig(rate_limit=False))
    events: list[Any] = []
    start = time.monotonic()
    async with BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        rate_limit=None,
        operating_budget=two,
        on_event=events.append,
    ) as client:
        cmd = {f"l{i}": ("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}) for i in range(60)}
        result = await client.batch(cmd)
    elapsed = time.monotonic() - start
    assert len(result.result) == 60
    assert emu.count("lead") == 60
    assert emu.stats.status_429 == 0
    held = [e for e in events if isinstance(e, MethodHeld)]
    assert [e.method for e in held][:1] == ["crm.lead.add"]
    assert 0.3 < elapsed < 3.0  # nothing of that method went before the hold ended
