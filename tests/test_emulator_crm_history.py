"""crm.stagehistory.list, and quotes as one more table-defined entity."""

from __future__ import annotations

from tests.emulator_support import api


async def test_stage_history_records_creation_and_moves() -> None:
    async with api() as a:
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        await a.call("crm.deal.update", {"id": deal["result"], "fields": {"TITLE": "E"}})
        await a.call("crm.deal.update", {"id": deal["result"], "fields": {"STAGE_ID": "WON"}})
        _, lead = await a.call("crm.lead.add", {"fields": {"TITLE": "L"}})
        _, body = await a.call(
            "crm.stagehistory.list",
            {"entityTypeId": 2, "filter": {"OWNER_ID": deal["result"]}, "order": {"ID": "ASC"}},
        )
        items = body["result"]["items"]
        assert [(i["TYPE_ID"], i["STAGE_ID"], i["STAGE_SEMANTIC_ID"]) for i in items] == [
            ("1", "NEW", "P"),
            ("2", "WON", "S"),
        ]  # the title change is no move
        assert body["total"] == 2
        _, leads = await a.call(
            "crm.stagehistory.list",
            {"entityTypeId": 1, "select": ["OWNER_ID", "STATUS_ID", "CREATED_TIME", "ID"]},
        )
        assert leads["result"]["items"] == [
            {
                "ID": leads["result"]["items"][0]["ID"],
                "OWNER_ID": str(lead["result"]),
                "CREATED_TIME": leads["result"]["items"][0]["CREATED_TIME"],
                "STATUS_ID": "NEW",
            }
        ]
        status, _ = await a.call("crm.stagehistory.list", {"entityTypeId": 3})
        assert status == 400


async def test_quotes_come_from_their_table() -> None:
    async with api() as a:
        _, fields = await a.call("crm.quote.fields")
        assert len(fields["result"]) == 43
        assert fields["result"]["STATUS_ID"]["statusType"] == "QUOTE_STATUS"
        _, added = await a.call("crm.quote.add", {"fields": {"TITLE": "Offer", "OPPORTUNITY": 9}})
        _, got = await a.call("crm.quote.get", {"id": added["result"]})
        assert (got["result"]["STATUS_ID"], got["result"]["OPPORTUNITY"]) == ("DRAFT", "9.00")
        _, item = await a.call("crm.item.get", {"entityTypeId": 7, "id": added["result"]})
        assert item["result"]["item"]["title"] == "Offer"
        _, stages = await a.call("crm.status.entity.items", {"entityId": "QUOTE_STATUS"})
        assert stages["result"][0]["STATUS_ID"] == "DRAFT"
        _, multifield = await a.call("crm.multifield.fields")
        assert list(multifield["result"]) == ["ID", "TYPE_ID", "VALUE", "VALUE_TYPE"]
        _, comm = await a.call("crm.activity.communication.fields")
        assert "ACTIVITY_ID" in comm["result"]
