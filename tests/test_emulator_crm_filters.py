"""List filters: LOGIC with nested sub-filters, in legacy lists and crm.item.list."""

from __future__ import annotations

from tests.emulator_support import Api, api


async def _titles(a: Api, method: str, params: dict[str, object]) -> list[str]:
    status, body = await a.call(method, params)
    assert status == 200, body
    rows = body["result"]["items"] if method == "crm.item.list" else body["result"]
    return [r["TITLE"] if "TITLE" in r else r["title"] for r in rows]


async def test_logic_or_with_nested_sub_filters() -> None:
    async with api() as a:
        for title, amount, stage in (
            ("a", 10, "NEW"),
            ("b", 20, "WON"),
            ("c", 30, "NEW"),
            ("d", 40, "LOSE"),
        ):
            await a.call(
                "crm.deal.add",
                {"fields": {"TITLE": title, "OPPORTUNITY": amount, "STAGE_ID": stage}},
            )
        either = {"LOGIC": "OR", "0": {"TITLE": "a"}, "1": {">OPPORTUNITY": 35}}
        assert await _titles(a, "crm.deal.list", {"filter": either}) == ["a", "d"]
        nested = {
            "STAGE_ID": "NEW",
            "0": {
                "LOGIC": "OR",
                "0": {"TITLE": "c"},
                "1": {"LOGIC": "AND", "0": {"<OPPORTUNITY": 15}, "1": {"TITLE": "a"}},
            },
        }
        assert await _titles(a, "crm.deal.list", {"filter": nested}) == ["a", "c"]
        named = {"LOGIC": "OR", "__inner": {"TITLE": "b"}, "__other": {"TITLE": "d"}}
        assert await _titles(a, "crm.deal.list", {"filter": named}) == ["b", "d"]
        assert (
            await _titles(
                a, "crm.deal.list", {"filter": {"LOGIC": "AND", "TITLE": "b", ">OPPORTUNITY": 25}}
            )
            == []
        )
        item_filter = {"logic": "OR", "0": {"title": "a"}, "1": {"stageId": "WON"}}
        assert await _titles(a, "crm.item.list", {"entityTypeId": 2, "filter": item_filter}) == [
            "a",
            "b",
        ]
        either_way = {"LOGIC": "OR", "0": {"TITLE": "a"}, "1": {"!TITLE": "a"}}
        assert a.emulator.count("deal", either_way) == 4


async def test_stage_changes_update_semantics_and_moved_stamps() -> None:
    async with api() as a:
        _, lead = await a.call("crm.lead.add", {"fields": {"TITLE": "L"}})
        _, before = await a.call("crm.lead.get", {"id": lead["result"]})
        await a.call("crm.lead.update", {"id": lead["result"], "fields": {"TITLE": "M"}})
        _, renamed = await a.call("crm.lead.get", {"id": lead["result"]})
        assert renamed["result"]["MOVED_TIME"] == before["result"]["MOVED_TIME"]
        await a.call("crm.lead.update", {"id": lead["result"], "fields": {"STATUS_ID": "JUNK"}})
        _, junk = await a.call("crm.lead.get", {"id": lead["result"]})
        assert junk["result"]["STATUS_SEMANTIC_ID"] == "F"
        assert junk["result"]["DATE_CLOSED"] != ""
        _, items = await a.call("crm.item.list", {"entityTypeId": 1, "filter": {"stageId": "JUNK"}})
        item = items["result"]["items"][0]
        assert (item["entityTypeId"], item["movedBy"], item["stageSemanticId"]) == (1, 1, "F")


async def test_names_no_user_field_can_have_are_ignored_not_spliced_into_sql() -> None:
    """A filter or order key with quotes is no field: ignored like any unknown key, never
    a server error, never a way around the rest of the filter."""
    async with api() as a:
        await a.call("crm.lead.add", {"fields": {"TITLE": "secret"}})
        await a.call("crm.lead.add", {"fields": {"TITLE": "other"}})
        hostile = "UF_X\"') IS NULL OR 1=1 OR json_extract(UF, '$.\"Y"
        assert await _titles(
            a, "crm.lead.list", {"filter": {"TITLE": "other", hostile: "zzz"}}
        ) == ["other"]
        assert await _titles(a, "crm.lead.list", {"order": {"UF_X'": "ASC"}}) == [
            "secret",
            "other",
        ]
        got = await _titles(
            a, "crm.item.list", {"entityTypeId": 1, "filter": {"ufCrm'X": 1, "title": "other"}}
        )
        assert got == ["other"]


async def test_a_multiple_user_field_matches_any_of_its_values() -> None:
    async with api() as a:
        await a.call(
            "crm.lead.userfield.add",
            {"fields": {"FIELD_NAME": "TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"}},
        )
        await a.call("crm.lead.add", {"fields": {"TITLE": "ab", "UF_CRM_TAGS": ["a", "b"]}})
        await a.call("crm.lead.add", {"fields": {"TITLE": "c", "UF_CRM_TAGS": ["c"]}})
        assert await _titles(a, "crm.lead.list", {"filter": {"UF_CRM_TAGS": "b"}}) == ["ab"]
        assert await _titles(a, "crm.lead.list", {"filter": {"!UF_CRM_TAGS": "b"}}) == ["c"]


async def test_a_start_past_any_row_is_an_empty_page_however_large() -> None:
    async with api() as a:
        await a.call("crm.lead.add", {"fields": {"TITLE": "x"}})
        for method in ("crm.lead.list", "user.get", "user.search"):
            status, body = await a.call(method, {"start": 2**63})
            assert status == 200, (method, body)
            assert body["result"] == []


async def test_an_empty_or_array_stage_on_update_keeps_the_stage() -> None:
    async with api() as a:
        _, added = await a.call("crm.deal.add", {"fields": {"TITLE": "d", "STAGE_ID": "NEW"}})
        ident = added["result"]
        for value in ("", ["WON"]):
            await a.call("crm.deal.update", {"id": ident, "fields": {"STAGE_ID": value}})
            _, got = await a.call("crm.deal.get", {"id": ident})
            assert got["result"]["STAGE_ID"] == "NEW"


async def test_tasks_take_a_huge_start_as_an_empty_page() -> None:
    async with api() as a:
        for start in (10**20, 1e308):
            status, body = await a.call("tasks.task.list", {"start": start})
            assert status == 200, body
            assert body["result"]["tasks"] == []
