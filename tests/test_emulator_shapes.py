"""Record shapes and field metadata against the facts of recorded real answers.

The fixtures in tests/fixtures/real_shapes/ are digests written for this project: key
orders, types, flags and empty-value conventions of real portal answers (sources named in
each file); no portal data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.emulator_support import api, make_emulator

FIXTURES = Path(__file__).parent / "fixtures" / "real_shapes"


def fact(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


async def test_lead_fields_match_the_real_standard_set() -> None:
    real = fact("crm_lead_fields.json")["standard"]
    async with api() as a:
        _, body = await a.call("crm.lead.fields")
    ours = body["result"]
    assert list(ours) == list(real)  # the same 55 standard fields, in the portal's order
    for name, entry in real.items():
        got = {k: v for k, v in ours[name].items() if k != "title"}
        assert got == entry, name
        assert isinstance(ours[name]["title"], str)
        assert ours[name]["title"]


async def test_declared_user_fields_join_the_field_list_like_real_ones() -> None:
    facts = fact("crm_lead_fields.json")
    async with api() as a:
        for n in range(facts["user_field_count"]):
            await a.call(
                "crm.lead.userfield.add",
                {
                    "fields": {
                        "FIELD_NAME": f"UF_CRM_{n}",
                        "USER_TYPE_ID": "string",
                        "LABEL": f"Label {n}",
                    }
                },
            )
        _, body = await a.call("crm.lead.fields")
    ours = body["result"]
    assert len(ours) == len(facts["standard"]) + facts["user_field_count"]  # 64, as captured
    entry = ours["UF_CRM_0"]
    assert sorted(entry) == facts["user_field_entry_keys"]
    assert entry["isDynamic"] is True
    assert entry["listLabel"] == entry["formLabel"] == "Label 0"


async def test_lead_get_prints_the_real_keys_in_order_with_real_empty_values() -> None:
    real = fact("crm_lead_get.json")
    async with api() as a:
        _, added = await a.call("crm.lead.add", {"fields": {"TITLE": "Shape"}})
        _, body = await a.call("crm.lead.get", {"id": added["result"]})
    record = body["result"]
    assert list(record) == real["keys_in_order"]  # 49 keys; multi-fields only when present
    for name, kind in real["empty_values"].items():
        if record[name] in ("", None):
            assert record[name] == ("" if kind == "empty_string" else None), name
    assert record["BIRTHDATE"] == ""
    assert record["DATE_CLOSED"] == ""
    assert record["NAME"] is None
    for name, kind in real["value_types"].items():
        if record.get(name) not in ("", None):
            assert type(record[name]).__name__ == kind, name
    assert record["OPPORTUNITY"] == "0.00"
    assert record["STATUS_SEMANTIC_ID"] == "P"
    assert record["MOVED_BY_ID"] == record["CREATED_BY_ID"] == "1"


async def test_field_sets_of_deals_companies_contacts_and_users() -> None:
    real = fact("field_names.json")
    async with api() as a:
        for method in ("crm.company.fields", "crm.deal.fields", "crm.contact.fields"):
            _, body = await a.call(method)
            missing = set(real[method]) - set(body["result"])
            assert not missing, (method, missing)
            assert all(isinstance(v, dict) for v in body["result"].values())
        _, deal = await a.call("crm.deal.fields")
        assert len(deal["result"]) == 45
        for name, status in real["crm.deal.fields statusType"].items():
            assert deal["result"][name]["statusType"] == status
        for name, settings in real["crm.deal.fields settings"].items():
            assert deal["result"][name]["settings"] == settings
        _, company = await a.call("crm.company.fields")
        for name, status in real["crm.company.fields statusType"].items():
            assert company["result"][name]["statusType"] == status
        _, user = await a.call("user.current")
        assert not set(real["user.current"]) - set(user["result"])
        assert isinstance(user["result"]["UF_DEPARTMENT"], list)
        _, fields = await a.call("user.fields")
        assert list(fields["result"]) == fact("user_fields.json")["keys"]


async def test_smart_process_item_has_the_real_add_shape() -> None:
    real = fact("crm_item_add.json")
    async with api() as a:
        _, created = await a.call("crm.type.add", {"fields": {"title": "Orders"}})
        type_id = created["result"]["type"]["entityTypeId"]
        _, added = await a.call(
            "crm.item.add", {"entityTypeId": type_id, "fields": {"title": "First"}}
        )
    item = added["result"]["item"]
    assert set(real["keys_in_order"]) <= set(item)
    for name, kind in real["value_types"].items():
        assert type(item[name]).__name__ == kind, name
    assert item["entityTypeId"] == type_id
    assert item["xmlId"] == ""
    assert item["movedBy"] == item["createdBy"] == 1
    assert item["movedTime"] == item["createdTime"]


async def test_company_contact_items_have_the_real_entry_shape() -> None:
    real = fact("crm_company_contact_items_get.json")
    async with api() as a:
        _, company = await a.call("crm.company.add", {"fields": {"TITLE": "C"}})
        _, contact = await a.call("crm.contact.add", {"fields": {"NAME": "P"}})
        await a.call(
            "crm.company.contact.add",
            {"id": company["result"], "fields": {"CONTACT_ID": contact["result"]}},
        )
        _, body = await a.call("crm.company.contact.items.get", {"id": company["result"]})
    entry = body["result"][0]
    assert list(entry) == real["entry_keys"]
    assert {k: type(v).__name__ for k, v in entry.items()} == real["value_types"]
    assert entry["CONTACT_ID"] == contact["result"]
    assert entry["IS_PRIMARY"] == "Y"


async def test_category_and_stage_lists_have_the_real_shapes() -> None:
    cats = fact("crm_category_list.json")
    stages = fact("crm_dealcategory_stage_list.json")
    async with api() as a:
        _, added = await a.call("crm.category.add", {"entityTypeId": 2, "fields": {"name": "B2B"}})
        new_id = added["result"]["category"]["id"]
        _, listed = await a.call("crm.category.list", {"entityTypeId": 2})
        _, stage_list = await a.call("crm.dealcategory.stage.list", {"ID": new_id})
    default, other = listed["result"]["categories"]
    assert list(default) == cats["default_keys"]
    assert list(other) == cats["other_keys"]
    assert (default["id"], default["isDefault"]) == (cats["default_id"], cats["default_isDefault"])
    first = stage_list["result"][0]
    assert list(first) == stages["entry_keys"]
    assert {k: type(v).__name__ for k, v in first.items()} == stages["value_types"]
    assert first["STATUS_ID"].startswith(f"C{new_id}:")
    assert first["SORT"] == stages["first_sort"]
    assert stage_list["result"][1]["SORT"] - first["SORT"] == stages["sort_step"]


async def test_product_rows_have_the_real_keys() -> None:
    real = fact("crm_item_productrow_list.json")
    async with api() as a:
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        await a.call(
            "crm.item.productrow.add",
            {
                "fields": {
                    "ownerType": "D",
                    "ownerId": deal["result"],
                    "productName": "X",
                    "price": 10,
                    "quantity": 2,
                }
            },
        )
        _, body = await a.call(
            "crm.item.productrow.list",
            {"filter": {"=ownerType": "D", "=ownerId": deal["result"]}},
        )
    row = body["result"]["productRows"][0]
    assert set(real["row_keys"]) <= set(row)
    assert body["total"] == 1


def test_emulator_stays_independent_of_the_client() -> None:
    root = Path(__file__).parent.parent / "bitrix_batch" / "emulator"
    for module in root.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "from bitrix_batch._" not in text, module.name
        assert "from .._" not in text, module.name
        assert "bitrix_batch.journal" not in text, module.name
    make_emulator().close()
