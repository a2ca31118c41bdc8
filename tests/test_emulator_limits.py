"""The leaky bucket (503) and the operating-time limit (429), on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from bitrix_batch.emulator import MethodCost
from bitrix_batch.emulator.config import DEFAULT_COSTS
from tests.emulator_support import FakeClock, api, make_emulator

QUERY_LIMIT = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
OPERATION_LIMIT = {
    "error": "OPERATION_TIME_LIMIT",
    "error_description": "Method is blocked due to operation time limit.",
}


def costly(**overrides: MethodCost) -> dict[str, MethodCost]:
    """The default cost model with some methods made expensive."""
    return {**DEFAULT_COSTS, **overrides}


async def test_leaky_bucket_burst_then_drain() -> None:
    clock = FakeClock()
    emu = make_emulator(clock=clock, rate_limit=True)
    async with api(emu) as a:
        statuses = [(await a.call("user.current"))[0] for _ in range(50)]
        assert statuses == [200] * 50
        status, body = await a.call("user.current")
        assert (status, body) == (503, QUERY_LIMIT)
        clock.advance(0.5)  # drains one request at 2/s
        assert (await a.call("user.current"))[0] == 200
        assert (await a.call("user.current"))[0] == 503
        clock.advance(10)  # 20 slots
        statuses = [(await a.call("user.current"))[0] for _ in range(21)]
        assert statuses == [200] * 20 + [503]
    assert emu.stats.query_limit_exceeded == 3
    assert emu.stats.status_503 == 3


async def test_a_batch_counts_as_one_request_even_with_50_commands() -> None:
    emu = make_emulator(rate_limit=True, rate_burst=2)
    async with api(emu) as a:
        body = await a.batch(["user.current"] * 50)
        assert len(body["result"]) == 50
        assert (await a.call("user.current"))[0] == 200
        assert (await a.call("user.current"))[0] == 503


async def test_enterprise_plan_numbers() -> None:
    clock = FakeClock()
    emu = make_emulator(clock=clock, rate_limit=True, plan="enterprise")
    async with api(emu) as a:
        statuses = [(await a.call("user.current"))[0] for _ in range(251)]
        assert statuses.count(200) == 250
        assert statuses[-1] == 503
        clock.advance(1.0)  # 5/s
        statuses = [(await a.call("user.current"))[0] for _ in range(6)]
        assert statuses == [200] * 5 + [503]


async def test_rejected_requests_can_count() -> None:
    clock = FakeClock()
    emu = make_emulator(clock=clock, rate_limit=True, rate_burst=1, rate_count_rejected=True)
    async with api(emu) as a:
        assert (await a.call("user.current"))[0] == 200
        assert (await a.call("user.current"))[0] == 503
        clock.advance(0.5)  # drained 1, but the rejected one also counted
        assert (await a.call("user.current"))[0] == 503


async def test_operating_limit_blocks_one_method_at_top_level() -> None:
    clock = FakeClock()
    emu = make_emulator(
        clock=clock,
        operating_limit=True,
        request_time_limit=None,  # 100 s calls: past the cloud's 60 s cap
        costs=costly(**{"crm.lead.list": MethodCost(100)}),
    )
    async with api(emu) as a:
        operating = []
        for _ in range(5):
            status, body = await a.call("crm.lead.list")
            assert status == 200
            operating.append(body["time"]["operating"])
        assert operating == pytest.approx([100, 200, 300, 400, 500])
        status, body = await a.call("crm.lead.list")
        assert (status, body) == (429, OPERATION_LIMIT)
        # Other methods keep working.
        assert (await a.call("crm.deal.list"))[0] == 200
        # The basket opened with the first call; it leaves the window ten minutes later.
        clock.advance(599)
        assert (await a.call("crm.lead.list"))[0] == 429
        clock.advance(1)
        status, body = await a.call("crm.lead.list")
        assert status == 200
    assert emu.stats.operation_time_limit == 2
    assert emu.stats.status_429 == 2


async def test_operating_reset_at_is_ten_minutes_after_the_oldest_baskets_first_call() -> None:
    clock = FakeClock(start=1_700_000_030.5)
    emu = make_emulator(
        clock=clock, operating_limit=True, costs=costly(**{"crm.lead.list": MethodCost(0.5)})
    )
    async with api(emu) as a:
        _, first = await a.call("crm.lead.list")
        clock.advance(45)  # same basket: it holds the next 60 s
        _, second = await a.call("crm.lead.list")
        clock.advance(30)  # 75 s after the first call: a second basket opens
        _, third = await a.call("crm.lead.list")
        clock.advance(600 - 75)  # the first basket has left the window
        _, fourth = await a.call("crm.lead.list")
    assert first["time"]["operating_reset_at"] == 1_700_000_630
    assert first["time"]["operating"] == pytest.approx(0.5)
    assert second["time"]["operating_reset_at"] == 1_700_000_630
    assert second["time"]["operating"] == pytest.approx(1.0)
    assert third["time"]["operating_reset_at"] == 1_700_000_630
    assert third["time"]["operating"] == pytest.approx(1.5)
    assert fourth["time"]["operating_reset_at"] == 1_700_000_705
    assert fourth["time"]["operating"] == pytest.approx(1.0)  # the third call's basket + own


async def test_window_mode_keeps_the_older_clock_aligned_buckets() -> None:
    clock = FakeClock(start=1_700_000_030.0)
    emu = make_emulator(
        clock=clock,
        operating_limit=True,
        operating_mode="window",
        costs=costly(**{"crm.lead.list": MethodCost(0.5)}),
    )
    async with api(emu) as a:
        _, body = await a.call("crm.lead.list")
    assert body["time"]["operating_reset_at"] == 1_700_000_000 // 60 * 60 + 600
    assert body["time"]["operating"] == pytest.approx(0.5)


async def test_uncharged_time_block_is_as_portals_send_it() -> None:
    """Nothing charged: `operating` is the int 0 and the reset is the start + 600 (captures)."""
    clock = FakeClock(start=1_729_696_689.155923)
    emu = make_emulator(clock=clock, operating_limit=True)
    async with api(emu) as a:
        response = await a.raw("crm.lead.add", json={"fields": {"TITLE": "x"}})
        body = await a.batch({"order0": "crm.lead.add?fields[TITLE]=y"})
    assert '"operating_reset_at":1729697289,"operating":0}' in response.text
    time = response.json()["time"]
    assert type(time["operating"]) is int
    assert list(time) == [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    ]
    inner = body["result_time"]["order0"]
    assert (inner["operating_reset_at"], inner["operating"]) == (1_729_697_289, 0)
    assert type(inner["operating"]) is int


async def test_calls_under_the_floor_cost_nothing() -> None:
    emu = make_emulator(
        operating_limit=True,
        operating_limit_seconds=1,
        costs=costly(**{"crm.lead.get": MethodCost(0.1)}),
    )
    async with api(emu) as a:
        await a.call("crm.lead.add", {"fields": {"TITLE": "x"}})
        for _ in range(30):
            status, body = await a.call("crm.lead.get", {"id": 1})
            assert status == 200
            assert body["time"]["operating"] == 0


async def test_per_command_429_inside_a_batch_with_submethod_charging() -> None:
    emu = make_emulator(
        operating_limit=True,
        operating_limit_seconds=10,
        costs=costly(**{"crm.lead.list": MethodCost(4)}),
    )
    async with api(emu) as a:
        # A request's time is counted when it ends (§4.2): the first batch runs whole...
        first = await a.batch([f"crm.lead.list?start={i}" for i in range(3)])
        # ...and leaves crm.lead.list over its 10 s, so the next batch is refused per command.
        body = await a.batch([f"crm.lead.list?start={i}" for i in range(2)] + ["user.current"])
    assert len(first["result"]) == 3  # keys 0..2 all present: PHP sends a list
    assert first["result_time"][2]["operating"] == pytest.approx(12)
    assert list(body["result"]) == ["2"]  # an object: key 2 alone is no list
    assert body["result_error"] == [OPERATION_LIMIT, OPERATION_LIMIT]  # keys 0, 1: a list
    assert emu.stats.operation_time_limit_commands == 2


async def test_batch_charged_as_a_whole() -> None:
    emu = make_emulator(
        operating_limit=True,
        operating_limit_seconds=10,
        batch_charge="batch",
        costs=costly(**{"crm.lead.list": MethodCost(4)}),
    )
    async with api(emu) as a:
        first = await a.call("batch", {"cmd": ["crm.lead.list"] * 6})
        assert first[0] == 200
        assert first[1]["result"]["result_error"] == []
        # 6 x 4 s at x0.5 = 12 s charged to "batch".
        assert first[1]["time"]["operating"] == pytest.approx(12.001)
        status, body = await a.call("batch", {"cmd": ["user.current"]})
        assert (status, body) == (429, OPERATION_LIMIT)
        # The inner method itself was not charged.
        assert (await a.call("crm.lead.list"))[0] == 200


async def test_ban_mode_blocks_for_a_fixed_time() -> None:
    clock = FakeClock()
    emu = make_emulator(
        clock=clock,
        operating_limit=True,
        operating_limit_seconds=10,
        operating_mode="ban",
        costs=costly(**{"crm.lead.list": MethodCost(11)}),
    )
    async with api(emu) as a:
        assert (await a.call("crm.lead.list"))[0] == 200
        status, _ = await a.call("crm.lead.list")
        assert status == 429
        clock.advance(299)
        assert (await a.call("crm.lead.list"))[0] == 429
        clock.advance(2)
        assert (await a.call("crm.lead.list"))[0] == 200


async def test_operating_budget_is_per_webhook() -> None:
    emu = make_emulator(
        operating_limit=True,
        operating_limit_seconds=1,
        costs=costly(**{"crm.lead.list": MethodCost(2)}),
    )
    other = emu.add_webhook("second", user_id=1)
    async with api(emu) as a:
        await a.call("crm.lead.list")
        assert (await a.call("crm.lead.list"))[0] == 429
        response = await a.client.post("/" + other + "crm.lead.list", json={})
        assert response.status_code == 200


async def test_limit_off_charges_nothing() -> None:
    """With the limit off, `operating` keeps the cloud's shape but stays 0, so a client that
    respects it is not held back by a limit the test turned off."""
    emu = make_emulator(request_time_limit=None, costs=costly(**{"crm.lead.list": MethodCost(300)}))
    async with api(emu) as a:
        for _ in range(3):
            status, body = await a.call("crm.lead.list")
            assert status == 200
    assert body["time"]["operating"] == 0


async def test_time_model_fixed_plus_per_row() -> None:
    emu = make_emulator(seed_leads=50)
    async with api(emu) as a:
        _, body = await a.call("crm.lead.list")
    time: dict[str, Any] = body["time"]
    # Calibrated on the median of 154 captured 50-row pages (0.037 s).
    assert abs(time["processing"] - (0.0125 + 0.0005 * 50)) < 1e-9
    assert time["date_start"].endswith("+03:00")


async def test_reset_limits() -> None:
    emu = make_emulator(rate_limit=True, rate_burst=1)
    async with api(emu) as a:
        assert (await a.call("user.current"))[0] == 200
        assert (await a.call("user.current"))[0] == 503
        emu.reset_limits()
        assert (await a.call("user.current"))[0] == 200
