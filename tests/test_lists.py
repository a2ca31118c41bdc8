"""`list_all` and `get_by_ids` against the emulator in-process (httpx.ASGITransport).

Every count of requests is the emulator's own (`emu.stats.requests`). The rate limit is off
except in the test of pacing, which runs the server's bucket and the client's on one fake
clock, so nothing here sleeps for real.
"""

from __future__ import annotations

import gc
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitrix_batch import (
    BitrixClient,
    FoundRows,
    InvalidCommandError,
    InvalidResponseError,
    ListExport,
    ListShape,
    RateLimit,
    RetryPolicy,
)
from bitrix_batch.emulator import Emulator, EmulatorConfig
from bitrix_batch.emulator.tasks import seed_tasks
from tests.fake_clock import WALL_EPOCH, FakeClock

ROWS_PER_REQUEST = 2_500


def emulator(leads: int = 0, **options: Any) -> Emulator:
    options.setdefault("rate_limit", False)
    options.setdefault("operating_limit", False)
    return Emulator(EmulatorConfig(seed_leads=leads, **options))


def client_for(
    emu: Emulator, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any
) -> BitrixClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.testing())
    return BitrixClient(
        emu.webhook_url(), transport=transport or httpx.ASGITransport(app=emu.app), **kwargs
    )


def delete(emu: Emulator, ids: list[int], table: str = "crm_lead") -> None:
    with emu.lock:
        emu.store.db.executemany(f"DELETE FROM {table} WHERE ID = ?", [(i,) for i in ids])


def stored_ids(emu: Emulator, table: str = "crm_lead") -> set[int]:
    with emu.lock:
        return {int(r[0]) for r in emu.store.db.execute(f"SELECT ID FROM {table}")}


class Meddling(httpx.AsyncBaseTransport):
    """The emulator's transport, calling `before` ahead of every request: another user of
    the portal changing the data between the export's requests."""

    def __init__(self, emu: Emulator, before: Callable[[], None]) -> None:
        self.inner = httpx.ASGITransport(app=emu.app)
        self.before = before

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.before()
        return await self.inner.handle_async_request(request)


def ids_of(rows: list[dict[str, Any]], key: str = "ID") -> list[int]:
    return [int(r[key]) for r in rows]


# --- list_all: the guarantee ---------------------------------------------------------------


async def test_20000_rows_with_gaps_and_deletions_mid_walk_each_survivor_exactly_once() -> None:
    """Gaps (random and a block) before the walk, rows deleted and added between requests:
    every row that exists throughout comes exactly once, and nothing comes twice."""
    emu = emulator(20_000)
    rng = random.Random(8)
    delete(emu, rng.sample(range(1, 20_001), 2_000) + list(range(7_000, 8_500)))
    initial = stored_ids(emu)
    deleted: set[int] = set()
    added: set[int] = set()

    def meddle() -> None:
        victims = rng.sample(sorted(initial - deleted), 150)
        delete(emu, victims)
        deleted.update(victims)
        before = stored_ids(emu)
        emu.seed("lead", 20)
        added.update(stored_ids(emu) - before)

    got: list[int] = []
    async with client_for(emu, Meddling(emu, meddle)) as client:
        async for row in client.list_all("crm.lead.list", {"select": ["ID", "TITLE"]}):
            got.append(int(row["ID"]))
    assert not [i for i, n in Counter(got).items() if n > 1], "a row came twice"
    survivors = initial - deleted
    assert survivors <= set(got), f"lost {sorted(survivors - set(got))[:10]}"
    assert set(got) <= initial | added
    assert len(deleted) > 500  # the walk really ran while rows went away
    assert emu.stats.requests <= math.ceil(len(initial) / ROWS_PER_REQUEST) + 4


@pytest.mark.parametrize("rows", [1, 49, 50, 51, 2_449, 2_450, 2_451, 2_500, 5_001, 12_345])
async def test_short_last_pages_and_page_boundaries(rows: int) -> None:
    """Every count around a page and a request boundary: all rows, once, in few requests."""
    emu = emulator(rows)
    async with client_for(emu) as client:
        got = await client.list_all("crm.lead.list", {"select": ["ID"]})
    assert ids_of(got) == list(range(1, rows + 1))
    expected = 1 if rows <= 49 * 50 else math.ceil(rows / ROWS_PER_REQUEST) + 2
    assert emu.stats.requests <= expected


async def test_an_empty_list_takes_one_request_and_caller_bounds_that_exclude_all_none() -> None:
    emu = emulator(0)
    async with client_for(emu) as client:
        assert await client.list_all("crm.lead.list") == []
        assert emu.stats.requests == 1
        emu.seed("lead", 10)
        assert await client.list_all("crm.lead.list", {"filter": {"STATUS_ID": "NONE"}}) == []
        emu.reset_stats()
        assert await client.list_all("crm.lead.list", {"filter": {">ID": 5, "<=ID": 5}}) == []
    assert emu.stats.requests == 0  # the bounds alone say there is nothing


@pytest.mark.parametrize("deleted_share", [0.0, 0.1])
async def test_request_count_is_about_rows_over_2500(deleted_share: float) -> None:
    """25,000 rows (10% deleted or none): rows/2,500 requests and a small constant."""
    emu = emulator(25_000)
    delete(emu, random.Random(3).sample(range(1, 25_001), int(25_000 * deleted_share)))
    rows = len(stored_ids(emu))
    async with client_for(emu) as client:
        got = await client.list_all("crm.lead.list", {"select": ["TITLE"]})
    assert len(got) == len(set(ids_of(got))) == rows
    assert emu.stats.requests <= math.ceil(rows / ROWS_PER_REQUEST) + 2
    # No request is wasted on pages past the end, beyond a few margin pages per range.
    assert emu.stats.commands["crm.lead.list"] <= rows / 50 + 10 * 8 + 50


async def test_one_range_at_a_time_is_one_chain_of_full_requests() -> None:
    emu = emulator(10_000)
    async with client_for(emu) as client:
        got = await client.list_all("crm.lead.list", {"select": ["ID"]}, concurrency=1)
    assert ids_of(got) == list(range(1, 10_001))
    assert emu.stats.requests == 5  # 49 pages + the probe, then 50, 50, 50 and the last 1


async def test_the_callers_filter_bounds_and_select_are_kept() -> None:
    emu = emulator(6_000)
    wanted = {
        int(r["ID"])
        for r in emu.records("lead", {"STATUS_ID": "NEW", ">=ID": 100, "<ID": 5_000})
    }
    params = {"FILTER": {"STATUS_ID": "NEW", ">=ID": "100", "<ID": 5_000}, "SELECT": ["TITLE"]}
    async with client_for(emu) as client:
        got = await client.list_all("crm.lead.list", params)
    assert ids_of(got) == sorted(wanted)
    assert all(set(row) == {"ID", "TITLE"} for row in got)  # ID added, and kept


async def test_iteration_yields_what_await_returns_sorted() -> None:
    emu = emulator(9_000)
    async with client_for(emu) as client:
        export = client.list_all("crm.lead.list", {"select": ["ID"]})
        assert isinstance(export, ListExport)
        streamed = [int(r["ID"]) async for r in export]
        collected = ids_of(await export)
    assert sorted(streamed) == collected == list(range(1, 9_001))


async def test_leaving_the_loop_early_stops_the_walk() -> None:
    """Nothing is left suspended (no warning on trio either) and nothing more is sent."""
    emu = emulator(9_000)
    async with client_for(emu) as client:
        async for row in client.list_all("crm.lead.list"):
            assert row["ID"] == "1"
            break
        gc.collect()  # under trio, a generator dropped unfinished would warn here
    assert emu.stats.requests == 1


async def test_paced_by_the_rate_limit_without_a_503() -> None:
    """The server's bucket and the client's on one fake clock: 503-free, near the bound."""
    clock = FakeClock()
    emu = emulator(
        30_000, rate_limit=True, rate_burst=5, rate_drain=2.0, clock=lambda: WALL_EPOCH + clock.now
    )
    async with client_for(
        emu, rate_limit=RateLimit(5, 2.0), clock=clock, sleep=clock.sleep
    ) as client:
        got = await client.list_all("crm.lead.list", {"select": ["ID"]})
    assert len(got) == 30_000
    assert emu.stats.status_503 == 0
    requests = emu.stats.requests
    assert requests <= math.ceil(30_000 / ROWS_PER_REQUEST) + 2
    bound = (requests - 5) / 2.0
    assert bound <= clock.now <= bound / 0.95 + 1.0


# --- list_all: other shapes and the fall-back ----------------------------------------------


async def test_crm_item_list_rows_under_items_with_id() -> None:
    emu = emulator(3_000)
    delete(emu, list(range(1_000, 1_400)))
    async with client_for(emu) as client:
        got = await client.list_all("crm.item.list", {"entityTypeId": 1, "select": ["title"]})
        same = await client.list_all(
            "crm.item.list",
            {"entityTypeId": 1, "select": ["title"]},
            shape=ListShape(items_key="items", id_param="id", id_key="id"),
        )
    assert ids_of(got, "id") == sorted(stored_ids(emu))
    assert got == same
    assert set(got[0]) == {"id", "title"}


async def test_tasks_task_list_filters_on_ID_and_prints_id() -> None:
    emu = emulator()
    seed_tasks(emu.store, 3_100, emu.config.clock())
    delete(emu, list(range(50, 120)), table="tasks")
    async with client_for(emu) as client:
        got = await client.list_all("tasks.task.list", {"select": ["TITLE"]})
    assert ids_of(got, "id") == sorted(stored_ids(emu, "tasks"))
    assert set(got[0]) == {"id", "title"}
    assert emu.stats.requests == 2


async def test_start_next_fall_back_keeps_the_callers_order() -> None:
    emu = emulator(1_234)
    expected = sorted(emu.records("lead"), key=lambda r: (r["TITLE"], r["ID"]), reverse=True)
    params = {"order": {"TITLE": "DESC", "ID": "DESC"}, "select": ["TITLE"]}
    async with client_for(emu) as client:
        export = client.list_all("crm.lead.list", params, by_id=False)
        got = await export
    assert [r["TITLE"] for r in got] == [r["TITLE"] for r in expected]
    assert ids_of(got) == [r["ID"] for r in expected]
    assert emu.stats.requests == 2  # the first page, then the other 24 in one batch


async def test_user_get_pages_by_offset_by_default() -> None:
    emu = emulator(seed_users=130)
    async with client_for(emu) as client:
        export = client.list_all("user.get", {"filter": {"ACTIVE": True}})
        assert not export.by_id
        got = await export
    active = [u for u in emu.store.select("users") if u["ACTIVE"]]
    assert ids_of(got) == [u["ID"] for u in active]


async def test_a_method_ignoring_the_id_order_is_caught() -> None:
    """department.get takes no filter/order maps: forced onto the cursor, it must fail loudly
    rather than return rows twice."""
    emu = emulator(seed_users=3)
    async with client_for(emu) as client:
        with pytest.raises(InvalidResponseError, match="by_id=False"):
            await client.list_all("department.get", by_id=True)


# --- bad input, refused before any request -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "kwargs", "match"),
    [
        ("crm.lead.list", {"order": {"TITLE": "ASC"}}, {}, "by_id=False"),
        ("crm.lead.list", {"order": {"ID": "DESC"}}, {}, "ascending"),
        ("crm.lead.list", {"start": 0}, {}, "start"),
        ("crm.lead.list", {"filter": {">ID": "ten"}}, {}, "integer"),
        ("crm.lead.list", {"filter": [1, 2]}, {}, "mapping"),
        ("crm.lead.list", {"select": "TITLE"}, {}, "list of field names"),
        ("crm.lead.list", {"filter": {}, "FILTER": {}}, {}, "both"),
        ("crm.lead.add", None, {}, "MethodPolicy"),
        ("crm lead list", None, {}, "not a REST method name"),
        ("batch", None, {"by_id": False}, "not allowed inside a batch"),
        ("", None, {}, "non-empty"),
    ],
)
async def test_list_all_refuses_bad_input_before_any_request(
    method: str, params: Any, kwargs: dict[str, Any], match: str
) -> None:
    emu = emulator(10)
    async with client_for(emu) as client:
        with pytest.raises(InvalidCommandError, match=match):
            client.list_all(method, params, **kwargs)
    assert emu.stats.requests == 0


async def test_list_all_refuses_a_bad_concurrency_and_shape() -> None:
    emu = emulator(10)
    async with client_for(emu) as client:
        with pytest.raises(ValueError, match="concurrency"):
            client.list_all("crm.lead.list", concurrency=0)
        with pytest.raises(TypeError, match="ListShape"):
            client.list_all("crm.lead.list", shape={"items_key": "items"})  # type: ignore[arg-type]
    assert emu.stats.requests == 0


# --- get_by_ids ----------------------------------------------------------------------------


async def test_get_by_ids_keeps_the_callers_order_and_reports_missing_ids() -> None:
    emu = emulator(400)
    delete(emu, [7, 8, 9, 300])
    rng = random.Random(5)
    asked: list[int | str] = [*rng.sample(range(1, 401), 180), 999_999, 8, "42", 42, 300]
    async with client_for(emu) as client:
        found = await client.get_by_ids("crm.lead.list", asked, {"select": ["TITLE"]})
    assert isinstance(found, FoundRows)
    distinct = list(dict.fromkeys(int(i) for i in asked))
    present = stored_ids(emu)
    assert ids_of(found.rows) == [i for i in distinct if i in present]
    assert found.missing == [i for i in distinct if i not in present]
    assert 999_999 in found.missing
    assert 300 in found.missing
    assert found.by_id[42]["ID"] == "42"
    assert set(found.by_id[42]) == {"ID", "TITLE"}
    assert len(found) == len(found.rows)
    assert emu.stats.requests == 1  # 183 distinct IDs: 4 commands in one request


async def test_get_by_ids_in_bulk_takes_50_ids_a_command_and_50_commands_a_request() -> None:
    emu = emulator(6_000)
    async with client_for(emu) as client:
        found = await client.get_by_ids("crm.lead.get", range(6_000, 0, -1))
    assert ids_of(found.rows) == list(range(6_000, 0, -1))
    assert found.missing == []
    assert emu.stats.commands["crm.lead.list"] == 120
    assert emu.stats.requests == 3


async def test_get_by_ids_on_crm_item_and_tasks_shapes() -> None:
    emu = emulator(100)
    seed_tasks(emu.store, 100, emu.config.clock())
    async with client_for(emu) as client:
        items = await client.get_by_ids("crm.item.get", [5, 3, 500], {"entityTypeId": 1})
        tasks = await client.get_by_ids("tasks.task.list", [9, 1, 0o777], {"select": ["TITLE"]})
    assert ids_of(items.rows, "id") == [5, 3]
    assert items.missing == [500]
    assert ids_of(tasks.rows, "id") == [9, 1]
    assert tasks.missing == [511]
    assert set(tasks.rows[0]) == {"id", "title"}


async def test_get_by_ids_with_no_ids_sends_nothing() -> None:
    emu = emulator(10)
    async with client_for(emu) as client:
        found = await client.get_by_ids("crm.lead.list", [])
    assert found == FoundRows([], [], {})
    assert emu.stats.requests == 0


@pytest.mark.parametrize(
    ("ids", "params", "match"),
    [
        ([1, "x"], None, "positive integer"),
        ([0], None, "positive integer"),
        ([True], None, "positive integer"),
        ([1.5], None, "positive integer"),
        ("123", None, "iterable"),
        ([1], {"filter": {"@ID": [2]}}, "filters on ID"),
        ([1], {"filter": {"id": 2}}, "filters on ID"),
        ([1], {"start": 50}, "start"),
    ],
)
async def test_get_by_ids_refuses_bad_input_before_any_request(
    ids: Any, params: Any, match: str
) -> None:
    emu = emulator(10)
    async with client_for(emu) as client:
        with pytest.raises(InvalidCommandError, match=match):
            await client.get_by_ids("crm.lead.list", ids, params)
    assert emu.stats.requests == 0


def test_the_readme_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """The first block of README's "Exporting lists" is a complete program, and prints what
    its comment says."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Exporting lists\n\n```python\n(.*?)```", text, re.S)
    assert block is not None
    exec(compile(block.group(1), "README-exporting-lists", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip() == "12000 ['5', '3'] [1000000000]"
