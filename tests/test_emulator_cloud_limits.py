"""Today's cloud limits: the 60 s request cap, per-method baskets, and crm.item.batchImport."""

from __future__ import annotations

from typing import Any

import httpx

from bitrix_batch import BitrixClient, RetryPolicy
from bitrix_batch.emulator import Emulator, EmulatorConfig, MethodCost
from bitrix_batch.emulator.config import DEFAULT_COSTS
from bitrix_batch.emulator.engine import CallContext, MethodResult
from bitrix_batch.emulator.php import PhpKey
from tests.emulator_support import FakeClock, api, make_emulator
from tests.fake_clock import FakeClock as VirtualClock

INTERNAL = {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}


def costs(**overrides: MethodCost) -> dict[str, MethodCost]:
    """The default cost model with some methods made expensive."""
    return {**DEFAULT_COSTS, **overrides}


def deals(n: int, prefix: str = "Deal") -> list[dict[str, Any]]:
    """``data`` for crm.item.batchImport: ``n`` deals with distinct titles."""
    return [{"title": f"{prefix} {i}", "opportunity": i} for i in range(n)]


# -- the defaults are today's cloud -----------------------------------------------------------


def test_defaults_model_the_2026_limits_page() -> None:
    config = EmulatorConfig()
    assert config.operating_mode == "baskets"
    assert config.batch_charge == "submethods"  # outer batch free, nested calls counted
    assert (config.operating_window_seconds, config.operating_bucket_seconds) == (600, 60)


async def test_outer_batch_is_not_counted_each_nested_call_is() -> None:
    emu = make_emulator(operating_limit=True, costs=costs(**{"crm.lead.list": MethodCost(3)}))
    async with api(emu) as a:
        status, body = await a.call("batch", {"cmd": ["crm.lead.list"] * 3 + ["user.current"]})
    assert status == 200
    times = body["result"]["result_time"]
    assert [t["operating"] for t in times[:3]] == [3, 6, 9]  # this request's time so far
    assert times[3]["operating"] == 0  # user.current: fast, under the 0.1 s floor
    assert body["time"]["operating"] == 0  # the batch itself is never charged
    assert emu.engine.limiter.state("apauth:1:emulatorwebhookcode", "crm.lead.list").operating == 9
    assert emu.engine.limiter.state("apauth:1:emulatorwebhookcode", "batch").operating == 0


# -- the 60 s cap -----------------------------------------------------------------------------


async def test_a_batch_past_60_seconds_is_cut_off_after_what_it_ran() -> None:
    emu = make_emulator(request_time_limit=60, costs=costs(**{"crm.lead.add": MethodCost(2.0)}))
    async with api(emu) as a:
        cmd = [f"crm.lead.add?fields[TITLE]=L{i}" for i in range(50)]
        status, body = await a.call("batch", {"halt": 0, "cmd": cmd})
        after = await a.call("user.current")
    assert (status, body) == (500, INTERNAL)
    # 30 adds fill 60 s exactly; the 31st started in time and ran over; none started after.
    assert emu.count("lead") == 31
    assert [r["TITLE"] for r in emu.records("lead")] == [f"L{i}" for i in range(31)]
    assert emu.stats.request_timeouts == 1
    assert after[0] == 200


async def test_a_single_call_past_the_cap_ran_but_answers_500() -> None:
    emu = make_emulator(request_time_limit=60, costs=costs(**{"crm.lead.add": MethodCost(61.0)}))
    async with api(emu) as a:
        status, body = await a.call("crm.lead.add", {"fields": {"TITLE": "slow"}})
    assert (status, body) == (500, INTERNAL)
    assert emu.count("lead") == 1


async def test_the_cap_is_the_clouds_by_default_and_can_be_lifted() -> None:
    assert EmulatorConfig().request_time_limit == 60.0
    slow = costs(**{"crm.lead.add": MethodCost(2.0)})
    for options in ({"request_time_limit": None}, {"request_time_limit": 120.0}):
        emu = make_emulator(costs=slow, **options)
        async with api(emu) as a:
            body = await a.batch([f"crm.lead.add?fields[TITLE]=L{i}" for i in range(50)])
        assert len(body["result"]) == 50
        assert emu.stats.request_timeouts == 0


async def test_the_client_stays_inside_the_baskets_and_the_cap() -> None:
    """The client's OperatingBudget against the basket model: 1,000 adds of 1 s each, a
    480 s limit per 10 minutes and the 60 s cap; no 429 and no cut-off request."""
    clock = VirtualClock()
    emu = Emulator(
        EmulatorConfig(
            clock=clock.wall,
            rate_limit=True,
            operating_limit=True,
            request_time_limit=60.0,
            costs=costs(**{"crm.lead.add": MethodCost(1.0)}),
        )
    )
    client = BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        retry=RetryPolicy(attempts=10, wait_jitter=0.0),
    )
    cmd = [("crm.lead.add", {"fields": {"TITLE": f"lead {i}"}}) for i in range(1000)]
    async with client:
        result = await client.batch(cmd)
    result.raise_for_errors()
    assert emu.count("lead") == 1000
    assert emu.stats.status_429 == 0
    assert emu.stats.operation_time_limit_commands == 0
    assert emu.stats.request_timeouts == 0
    # 1,000 s of operating time at 480 s per 600 s cannot be done in under two windows.
    assert clock.now >= 1200


# -- crm.item.batchImport ---------------------------------------------------------------------


async def test_batch_import_creates_each_item_and_answers_its_id() -> None:
    async with api() as a:
        status, body = await a.call("crm.item.batchImport", {"entityTypeId": 2, "data": deals(3)})
        ids = [entry["item"]["id"] for entry in body["result"]["items"]]
        _, got = await a.call("crm.item.get", {"entityTypeId": 2, "id": ids[1]})
    assert status == 200
    assert body["result"] == {"items": [{"item": {"id": i}} for i in ids]}
    assert len(set(ids)) == 3
    assert a.emulator.count("deal") == 3
    assert got["result"]["item"]["title"] == "Deal 1"
    # One add's modelled time per item created, on top of a fixed part.
    assert abs(body["time"]["processing"] - (0.02 + 0.05 * 3)) < 1e-9


async def test_batch_import_over_20_items_refuses_the_whole_call() -> None:
    async with api() as a:
        status, body = await a.call("crm.item.batchImport", {"entityTypeId": 2, "data": deals(21)})
        ok, _ = await a.call("crm.item.batchImport", {"entityTypeId": 2, "data": deals(20)})
    assert (status, body) == (
        400,
        {
            "error": "MAX_IMPORT_BATCH_SIZE_EXCEEDED",
            "error_description": "You cannot import more than 20 items",
        },
    )
    assert ok == 200
    assert a.emulator.count("deal") == 20


async def test_batch_import_argument_errors() -> None:
    async with api() as a:
        unknown = await a.call("crm.item.batchImport", {"entityTypeId": 999, "data": deals(2)})
        no_data = await a.call("crm.item.batchImport", {"entityTypeId": 2})
        no_type = await a.call("crm.item.batchImport", {"data": deals(1)})
    assert unknown[0] == 400
    assert unknown[1]["error"] == "NOT_FOUND"
    assert no_data == (
        400,
        {"error": 100, "error_description": "Could not find value for parameter {data}"},
    )
    assert no_type[0] == 400
    assert no_type[1]["error"] == 100
    assert a.emulator.count("deal") == 0


async def test_batch_import_reports_per_item_errors_and_goes_on() -> None:
    """A failing element gets its own error entry; the others are still created."""
    emu = make_emulator()
    add = emu.engine.lookup("crm.item.add")
    assert add is not None

    def picky(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        fields = params.get("fields")
        if isinstance(fields, dict) and fields.get("title") == "":
            from bitrix_batch.emulator.errors import RestError

            raise RestError("CRM_FIELD_ERROR_REQUIRED", 'The "Name" field is required')
        return add.handler(ctx, params)

    emu.engine.register("crm.item.add", picky, "crm")
    async with api(emu) as a:
        data = [{"title": "first"}, {"title": ""}, {"title": "third"}]
        _, body = await a.call("crm.item.batchImport", {"entityTypeId": 2, "data": data})
    items = body["result"]["items"]
    assert items[1] == {
        "error": "CRM_FIELD_ERROR_REQUIRED",
        "error_description": 'The "Name" field is required',
    }
    assert "item" in items[0]
    assert "item" in items[2]
    assert sorted(r["TITLE"] for r in emu.records("deal")) == ["first", "third"]


async def test_fifty_imports_in_one_batch_create_a_thousand_items() -> None:
    async with api() as a:
        cmd: dict[str, str] = {}
        for n in range(50):
            parts = [f"data[{k}][title]=D{n}-{k}" for k in range(20)]
            cmd[f"i{n}"] = "crm.item.batchImport?entityTypeId=2&" + "&".join(parts)
        body = await a.batch(cmd)
    assert body["result_error"] == []
    assert sum(len(r["items"]) for r in body["result"].values()) == 1000
    assert a.emulator.count("deal") == 1000
    assert a.emulator.stats.requests == 1


async def test_batch_import_needs_the_crm_scope() -> None:
    emu = make_emulator(webhook_scopes=frozenset({"user"}), clock=FakeClock())
    async with api(emu) as a:
        status, body = await a.call("crm.item.batchImport", {"entityTypeId": 2, "data": deals(1)})
    assert (status, body["error"]) == (401, "insufficient_scope")
