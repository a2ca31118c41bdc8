"""Product rows: the legacy lead/deal methods and crm.item.productrow.*, prices and totals."""

from __future__ import annotations

import pytest

from tests.emulator_support import api


async def test_lead_productrows_set_then_get_as_fast_bitrix24_does() -> None:
    async with api() as a:
        _, lead = await a.call("crm.lead.add", {"fields": {"TITLE": "L"}})
        rows = [
            {"PRODUCT_NAME": "Widget", "PRICE": 100, "QUANTITY": 2},
            {"PRODUCT_ID": 2809, "PRICE": 50},
        ]
        _, done = await a.call("crm.lead.productrows.set", {"id": lead["result"], "rows": rows})
        assert done["result"] is True
        _, got = await a.call("crm.lead.productrows.get", {"id": lead["result"]})
        assert len(got["result"]) == 2
        first, second = got["result"]
        assert (first["OWNER_TYPE"], first["OWNER_ID"]) == ("L", str(lead["result"]))
        assert first["PRODUCT_NAME"] == "Widget"
        assert first["QUANTITY"] == 2
        assert first["PRICE_ACCOUNT"] == "100.00"
        assert second["PRODUCT_NAME"] == f"[{second['ID']}]"  # no name, no catalogue product
        assert second["PRODUCT_ID"] == 2809
        assert (first["SORT"], second["SORT"]) == (10, 20)
        _, record = await a.call("crm.lead.get", {"id": lead["result"]})
        assert record["result"]["OPPORTUNITY"] == "250.00"  # 100 * 2 + 50
        await a.call("crm.lead.productrows.set", {"id": lead["result"], "rows": []})
        _, empty = await a.call("crm.lead.productrows.get", {"id": lead["result"]})
        assert empty["result"] == []


async def test_discount_and_tax_arithmetic() -> None:
    async with api() as a:
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        await a.call(
            "crm.deal.productrows.set",
            {
                "id": deal["result"],
                "rows": [
                    {
                        "PRODUCT_NAME": "P",
                        "PRICE": 899.1,
                        "DISCOUNT_TYPE_ID": 2,
                        "DISCOUNT_RATE": 10,
                    }
                ],
            },
        )
        _, got = await a.call("crm.deal.productrows.get", {"id": deal["result"]})
    row = got["result"][0]
    assert row["PRICE_EXCLUSIVE"] == 899.1
    assert row["PRICE_NETTO"] == pytest.approx(999)
    assert row["DISCOUNT_SUM"] == pytest.approx(99.9)


async def test_productrows_errors() -> None:
    async with api() as a:
        status, bad = await a.call("crm.deal.productrows.get", {"id": 0})
        assert (status, bad["error_description"]) == (400, "ID is not defined or invalid.")
        status, missing = await a.call("crm.deal.productrows.set", {"id": 5, "rows": []})
        assert (status, missing["error_description"]) == (400, "Not found")
        status, owner = await a.call(
            "crm.item.productrow.add", {"fields": {"ownerType": "D", "ownerId": 5}}
        )
        assert (status, owner["error"]) == (400, "NOT_FOUND")


async def test_item_productrow_crud_list_set_and_owner_delete() -> None:
    async with api() as a:
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        owner = {"ownerType": "D", "ownerId": deal["result"]}
        _, added = await a.call(
            "crm.item.productrow.add",
            {"fields": {**owner, "productName": "A", "price": 5, "quantity": 3}},
        )
        row = added["result"]["productRow"]
        assert (row["ownerType"], row["ownerId"], row["price"], row["quantity"]) == (
            "D",
            deal["result"],
            5,
            3,
        )
        _, upd = await a.call(
            "crm.item.productrow.update", {"id": row["id"], "fields": {"quantity": 4}}
        )
        assert upd["result"]["productRow"]["quantity"] == 4
        assert upd["result"]["productRow"]["productName"] == "A"
        _, record = await a.call("crm.deal.get", {"id": deal["result"]})
        assert record["result"]["OPPORTUNITY"] == "20.00"
        _, replaced = await a.call(
            "crm.item.productrow.set",
            {
                **owner,
                "productRows": [{"productName": "B", "price": 1}, {"productName": "C", "price": 2}],
            },
        )
        assert [r["productName"] for r in replaced["result"]["productRows"]] == ["B", "C"]
        _, listed = await a.call(
            "crm.item.productrow.list", {"filter": {"=ownerType": "D", "=ownerId": deal["result"]}}
        )
        assert listed["total"] == 2
        status, gone = await a.call("crm.item.productrow.get", {"id": row["id"]})
        assert (status, gone["error"]) == (400, "NOT_FOUND")
        await a.call("crm.deal.delete", {"id": deal["result"]})
        _, after = await a.call("crm.item.productrow.list", {"filter": {"=ownerType": "D"}})
        assert after["result"]["productRows"] == []
