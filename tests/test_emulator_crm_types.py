"""Smart processes: crm.type.* and crm.item.* on a dynamic entityTypeId."""

from __future__ import annotations

from tests.emulator_support import api


async def test_items_of_a_type_work_only_while_the_type_exists() -> None:
    async with api() as a:
        status, before = await a.call(
            "crm.item.add", {"entityTypeId": 1030, "fields": {"title": "x"}}
        )
        assert (status, before["error"], before["error_description"]) == (
            400,
            "NOT_FOUND",
            "SPA not found",
        )
        _, created = await a.call(
            "crm.type.add", {"fields": {"title": "Shipments", "isStagesEnabled": "Y"}}
        )
        spa = created["result"]["type"]
        assert (spa["title"], spa["isStagesEnabled"], spa["isClientEnabled"]) == (
            "Shipments",
            "Y",
            "N",
        )
        type_id = spa["entityTypeId"]
        for n in range(55):
            await a.call(
                "crm.item.add",
                {"entityTypeId": type_id, "fields": {"title": f"S{n}", "opportunity": n}},
            )
        _, page = await a.call(
            "crm.item.list",
            {"entityTypeId": type_id, "select": ["id", "title"], "filter": {">=opportunity": 2}},
        )
        assert page["total"] == 53
        assert page["next"] == 50
        assert page["result"]["items"][0] == {"id": 3, "title": "S2"}
        _, got = await a.call("crm.item.get", {"entityTypeId": type_id, "id": 1})
        assert got["result"]["item"]["stageId"] == "NEW"
        _, moved = await a.call(
            "crm.item.update", {"entityTypeId": type_id, "id": 1, "fields": {"stageId": "SUCCESS"}}
        )
        assert moved["result"]["item"]["stageId"] == "SUCCESS"
        _, fields = await a.call("crm.item.fields", {"entityTypeId": type_id})
        assert fields["result"]["fields"]["movedTime"]["upperName"] == "MOVED_TIME"
        _, owners = await a.call("crm.enum.ownertype")
        assert owners["result"][-1]["SYMBOL_CODE"] == f"DYNAMIC_{type_id}"
        _, listed = await a.call("crm.type.list")
        assert [t["entityTypeId"] for t in listed["result"]["types"]] == [type_id]
        _, by_type = await a.call("crm.type.getByEntityTypeId", {"entityTypeId": type_id})
        assert by_type["result"]["type"]["id"] == spa["id"]
        await a.call("crm.type.update", {"id": spa["id"], "fields": {"title": "Deliveries"}})
        _, renamed = await a.call("crm.type.get", {"id": spa["id"]})
        assert renamed["result"]["type"]["title"] == "Deliveries"
        await a.call("crm.type.delete", {"id": spa["id"]})
        status, after = await a.call("crm.item.get", {"entityTypeId": type_id, "id": 1})
        assert (status, after["error"]) == (400, "NOT_FOUND")
        status, gone = await a.call("crm.type.get", {"id": spa["id"]})
        assert (status, gone["error_description"]) == (400, "SPA not found")


async def test_type_errors_and_fields() -> None:
    async with api() as a:
        status, no_fields = await a.call("crm.type.add", {})
        assert (status, no_fields["error"]) == (400, "100")
        status, bad_range = await a.call(
            "crm.type.add", {"fields": {"title": "T", "entityTypeId": 5}}
        )
        assert bad_range["error"] == "INVALID_ARG_VALUE"
        status, bad_filter = await a.call(
            "crm.type.list", {"filter": {"non_existent_field_12345": 1}}
        )
        assert (status, bad_filter["error"]) == (400, "INVALID_ARG_VALUE")
        _, fields = await a.call("crm.type.fields")
        assert {"id", "title", "entityTypeId", "isCategoriesEnabled"} <= set(
            fields["result"]["fields"]
        )
        _, chosen = await a.call("crm.type.add", {"fields": {"title": "T", "entityTypeId": 140}})
        assert chosen["result"]["type"]["entityTypeId"] == 140
        _, cats = await a.call("crm.category.list", {"entityTypeId": 140})
        assert cats["result"]["categories"][0]["isDefault"] == "Y"
