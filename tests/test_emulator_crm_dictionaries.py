"""Dictionaries: statuses, pipelines (crm.category / crm.dealcategory) and the enums."""

from __future__ import annotations

from tests.emulator_support import api


async def test_stock_statuses_and_status_crud() -> None:
    async with api() as a:
        _, listed = await a.call("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}})
        stages = [s["STATUS_ID"] for s in listed["result"]]
        assert stages == ["NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"]
        converted = listed["result"][3]
        assert converted["SEMANTICS"] == "S"
        assert converted["EXTRA"]["SEMANTICS"] == "success"
        _, added = await a.call(
            "crm.status.add",
            {
                "fields": {
                    "ENTITY_ID": "SOURCE",
                    "STATUS_ID": "PODCAST",
                    "NAME": "Podcast",
                    "SORT": 5,
                }
            },
        )
        ident = added["result"]
        status, dup = await a.call(
            "crm.status.add",
            {"fields": {"ENTITY_ID": "SOURCE", "STATUS_ID": "PODCAST", "NAME": "Again"}},
        )
        assert (status, dup["error"]) == (400, "ERROR_CORE")
        _, missing = await a.call("crm.status.add", {"fields": {"NAME": "x"}})
        assert missing["error_description"] == (
            "The field ENTITY_ID is required. The field STATUS_ID is required."
        )
        status, unknown = await a.call(
            "crm.status.add", {"fields": {"ENTITY_ID": "NOPE", "STATUS_ID": "A", "NAME": "a"}}
        )
        assert unknown["error_description"] == "Specified entity type is not supported."
        await a.call("crm.status.update", {"id": ident, "fields": {"NAME": "Podcasts"}})
        _, got = await a.call("crm.status.get", {"id": ident})
        assert (got["result"]["NAME"], got["result"]["SYSTEM"]) == ("Podcasts", "N")
        _, items = await a.call("crm.status.entity.items", {"entityId": "SOURCE"})
        assert items["result"][0] == {"NAME": "Podcasts", "SORT": 5, "STATUS_ID": "PODCAST"}
        await a.call("crm.status.delete", {"id": ident})
        status, _ = await a.call("crm.status.get", {"id": ident})
        assert status == 400
        new = next(s for s in listed["result"] if s["STATUS_ID"] == "NEW")
        status, _ = await a.call("crm.status.delete", {"id": new["ID"]})
        assert status == 400  # system entries need params[FORCED]=Y
        _, forced = await a.call("crm.status.delete", {"id": new["ID"], "params": {"FORCED": "Y"}})
        assert forced["result"] is True


async def test_deal_pipelines_get_prefixed_stages_and_deals_follow() -> None:
    async with api() as a:
        _, ident = await a.call("crm.dealcategory.add", {"fields": {"NAME": "B2B", "SORT": 200}})
        cat = ident["result"]
        _, status = await a.call("crm.dealcategory.status", {"id": cat})
        assert status["result"] == f"DEAL_STAGE_{cat}"
        _, stages = await a.call("crm.dealcategory.stage.list", {"id": cat})
        assert stages["result"][0]["STATUS_ID"] == f"C{cat}:NEW"
        _, types = await a.call("crm.status.entity.types")
        entry = next(t for t in types["result"] if t["ID"] == f"DEAL_STAGE_{cat}")
        assert (entry["PREFIX"], entry["CATEGORY_ID"]) == (f"C{cat}", cat)
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D", "CATEGORY_ID": cat}})
        _, record = await a.call("crm.deal.get", {"id": deal["result"]})
        assert record["result"]["STAGE_ID"] == f"C{cat}:NEW"
        await a.call("crm.deal.update", {"id": deal["result"], "fields": {"STAGE_ID": "WON"}})
        _, won = await a.call("crm.deal.get", {"id": deal["result"]})
        assert won["result"]["STAGE_ID"] == f"C{cat}:WON"
        assert (won["result"]["STAGE_SEMANTIC_ID"], won["result"]["CLOSED"]) == ("S", "Y")
        _, listed = await a.call("crm.dealcategory.list")
        assert [c["NAME"] for c in listed["result"]] == ["B2B"]
        _, default = await a.call("crm.dealcategory.default.get")
        assert default["result"]["ID"] == 0
        await a.call("crm.dealcategory.delete", {"id": cat})
        status, _ = await a.call("crm.dealcategory.get", {"id": cat})
        assert status == 400


async def test_crm_category_methods() -> None:
    async with api() as a:
        _, added = await a.call(
            "crm.category.add", {"entityTypeId": 2, "fields": {"name": "Rent", "sort": 300}}
        )
        cat = added["result"]["category"]
        assert (cat["name"], cat["sort"], cat["isDefault"]) == ("Rent", 300, "N")
        _, upd = await a.call(
            "crm.category.update", {"entityTypeId": 2, "id": cat["id"], "fields": {"name": "Lease"}}
        )
        assert upd["result"]["category"]["name"] == "Lease"
        _, got = await a.call("crm.category.get", {"entityTypeId": 2, "id": cat["id"]})
        assert got["result"]["category"]["name"] == "Lease"
        _, fields = await a.call("crm.category.fields", {"entityTypeId": 2})
        assert {
            "id",
            "name",
            "sort",
            "entityTypeId",
            "isDefault",
            "originId",
            "originatorId",
        } <= set(fields["result"]["fields"])
        _, deleted = await a.call("crm.category.delete", {"entityTypeId": 2, "id": cat["id"]})
        assert deleted["result"] is None
        status, nope = await a.call("crm.category.list", {"entityTypeId": 999})
        assert (status, nope["error"]) == (400, "NOT_FOUND")


async def test_enums() -> None:
    async with api() as a:
        _, owners = await a.call("crm.enum.ownertype")
        assert owners["result"][1] == {
            "ID": 2,
            "NAME": "Deal",
            "SYMBOL_CODE": "DEAL",
            "SYMBOL_CODE_SHORT": "D",
        }
        _, kinds = await a.call("crm.enum.activitytype")
        assert [k["ID"] for k in kinds["result"]] == [0, 1, 2, 3, 4, 5, 6]
        for suffix in (
            "activitystatus",
            "activitydirection",
            "activitypriority",
            "activitynotifytype",
            "contenttype",
            "addresstype",
            "settings.mode",
        ):
            status, body = await a.call(f"crm.enum.{suffix}")
            assert status == 200, suffix
            assert body["result"], suffix
        _, fields = await a.call("crm.enum.fields")
        assert list(fields["result"]) == ["ID", "NAME", "SYMBOL_CODE", "SYMBOL_CODE_SHORT"]
