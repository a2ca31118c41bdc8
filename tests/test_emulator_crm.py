"""CRM, user and department methods: CRUD, errors, paging, filters, select, crm.item."""

from __future__ import annotations

import pytest

from tests.emulator_support import api, make_emulator

ENTITY_TITLE = {"lead": "TITLE", "contact": "NAME", "company": "TITLE", "deal": "TITLE"}


@pytest.mark.parametrize("entity", ["lead", "contact", "company", "deal"])
async def test_crud_round_trip(entity: str) -> None:
    name = ENTITY_TITLE[entity]
    async with api() as a:
        status, added = await a.call(f"crm.{entity}.add", {"fields": {name: "One"}})
        assert status == 200
        assert isinstance(added["result"], int)
        ident = added["result"]
        _, got = await a.call(f"crm.{entity}.get", {"id": ident})
        assert got["result"]["ID"] == str(ident)
        assert got["result"][name] == "One"
        _, upd = await a.call(f"crm.{entity}.update", {"ID": ident, "fields": {name: "Two"}})
        assert upd["result"] is True
        _, got = await a.call(f"crm.{entity}.get", {"ID": ident})
        assert got["result"][name] == "Two"
        _, fields = await a.call(f"crm.{entity}.fields")
        assert fields["result"]["ID"]["isReadOnly"] is True
        _, deleted = await a.call(f"crm.{entity}.delete", {"id": ident})
        assert deleted["result"] is True
        status, missing = await a.call(f"crm.{entity}.get", {"id": ident})
        assert status == 400
        assert missing == {"error": "", "error_description": "Not found"}
        assert "time" not in missing
        status, again = await a.call(f"crm.{entity}.delete", {"id": ident})
        assert status == 400
        assert again["error_description"] == "Not found"
        status, bad = await a.call(f"crm.{entity}.get", {"id": "abc"})
        assert status == 400
        assert bad["error_description"] == "ID is not defined or invalid."


async def test_writes_are_counted_per_record() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        _, added = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        ident = added["result"]
        await a.call("crm.deal.update", {"id": ident, "fields": {"TITLE": "E"}})
        await a.call("crm.deal.update", {"id": ident, "fields": {"TITLE": "F"}})
        await a.call("crm.deal.delete", {"id": ident})
    assert emu.stats.writes_of("deal", ident) == {"add": 1, "update": 2, "delete": 1}


async def test_list_paging_by_offsets() -> None:
    emu = make_emulator(seed_leads=120)
    async with api(emu) as a:
        _, first = await a.call("crm.lead.list", {"select": ["ID"]})
        assert len(first["result"]) == 50
        assert (first["next"], first["total"]) == (50, 120)
        assert list(first) == ["result", "next", "total", "time"]
        _, floored = await a.call("crm.lead.list", {"select": ["ID"], "start": 73})
        assert floored["result"][0]["ID"] == "51"
        assert floored["next"] == 100
        _, last = await a.call("crm.lead.list", {"select": ["ID"], "start": 100})
        assert len(last["result"]) == 20
        assert "next" not in last
        assert last["total"] == 120
        _, beyond = await a.call("crm.lead.list", {"start": 500})
        assert beyond["result"] == []
        assert "next" not in beyond


async def test_list_start_minus_one_skips_the_count() -> None:
    emu = make_emulator(seed_leads=120)
    async with api(emu) as a:
        _, body = await a.call(
            "crm.lead.list",
            {"start": -1, "order": {"ID": "ASC"}, "filter": {">ID": 60}, "select": ["ID"]},
        )
    assert len(body["result"]) == 50
    assert body["result"][0]["ID"] == "61"
    assert body["total"] == 0
    assert "next" not in body


async def test_filters_order_and_select() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        for i, (title, status, money) in enumerate(
            [("Alpha", "NEW", 10), ("Beta", "JUNK", 20), ("Gamma", "NEW", 30), ("alp", "X", 0)]
        ):
            await a.call(
                "crm.lead.add",
                {"fields": {"TITLE": title, "STATUS_ID": status, "OPPORTUNITY": money}},
            )
            del i

        async def ids(**params: object) -> list[str]:
            _, body = await a.call("crm.lead.list", {"select": ["ID"], **params})
            return [r["ID"] for r in body["result"]]

        assert await ids(filter={"STATUS_ID": "NEW"}) == ["1", "3"]
        assert await ids(filter={"=STATUS_ID": "NEW"}) == ["1", "3"]
        assert await ids(filter={"!STATUS_ID": "NEW"}) == ["2", "4"]
        assert await ids(filter={">OPPORTUNITY": 10}) == ["2", "3"]
        assert await ids(filter={">=OPPORTUNITY": 10, "<OPPORTUNITY": 30}) == ["1", "2"]
        assert await ids(filter={"<=ID": 2}) == ["1", "2"]
        assert await ids(filter={"@ID": [1, 4]}) == ["1", "4"]
        assert await ids(filter={"ID": [2, 3]}) == ["2", "3"]
        assert await ids(filter={"%TITLE": "alp"}) == ["1", "4"]
        assert await ids(filter={"UNKNOWN": 1}) == ["1", "2", "3", "4"]
        assert await ids(order={"OPPORTUNITY": "DESC"}) == ["3", "2", "1", "4"]
        _, body = await a.call("crm.lead.list", {"select": ["TITLE"], "filter": {"ID": 1}})
        assert body["result"] == [{"ID": "1", "TITLE": "Alpha"}]
        _, body = await a.call("crm.lead.list", {"filter": {"ID": 1}})
        assert body["result"][0]["OPPORTUNITY"] == "10.00"
        assert "PHONE" not in body["result"][0]


async def test_multifields_and_user_fields() -> None:
    async with api() as a:
        # Portals store UF_* values only for declared fields (issue 10).
        await a.call(
            "crm.contact.userfield.add",
            {"fields": {"FIELD_NAME": "UF_CRM_SIZE", "USER_TYPE_ID": "string"}},
        )
        _, added = await a.call(
            "crm.contact.add",
            {
                "fields": {
                    "NAME": "P",
                    "PHONE": [{"VALUE": "+7 900", "VALUE_TYPE": "WORK"}],
                    "UF_CRM_SIZE": "XL",
                }
            },
        )
        ident = added["result"]
        _, got = await a.call("crm.contact.get", {"id": ident})
        assert got["result"]["HAS_PHONE"] == "Y"
        assert got["result"]["PHONE"][0]["VALUE"] == "+7 900"
        assert got["result"]["UF_CRM_SIZE"] == "XL"
        _, listed = await a.call(
            "crm.contact.list", {"select": ["ID", "PHONE", "UF_*"], "filter": {"PHONE": "+7 900"}}
        )
        assert listed["result"][0]["PHONE"][0]["TYPE_ID"] == "PHONE"
        assert listed["result"][0]["UF_CRM_SIZE"] == "XL"
        _, none = await a.call("crm.contact.list", {"filter": {"UF_CRM_SIZE": "S"}})
        assert none["result"] == []


async def test_crm_item_methods() -> None:
    emu = make_emulator(seed_deals=60)
    async with api(emu) as a:
        _, added = await a.call(
            "crm.item.add", {"entityTypeId": 2, "fields": {"title": "Item", "opportunity": 5}}
        )
        item = added["result"]["item"]
        assert item["title"] == "Item"
        assert item["opportunity"] == 5.0
        assert item["id"] == 61
        _, got = await a.call("crm.item.get", {"entityTypeId": 2, "id": 61})
        assert got["result"]["item"]["title"] == "Item"
        _, upd = await a.call(
            "crm.item.update", {"entityTypeId": 2, "id": 61, "fields": {"title": "New"}}
        )
        assert upd["result"]["item"]["title"] == "New"
        _, page = await a.call(
            "crm.item.list", {"entityTypeId": 2, "select": ["id", "title"], "start": 50}
        )
        assert next(list(i) for i in page["result"]["items"]) == ["id", "title"]
        assert page["total"] == 61
        assert "next" not in page
        _, first = await a.call("crm.item.list", {"entityTypeId": 2, "filter": {">id": 10}})
        assert first["next"] == 50
        assert first["total"] == 51
        _, fast = await a.call("crm.item.list", {"entityTypeId": 2, "start": -1})
        assert "total" not in fast
        assert "next" not in fast
        _, deleted = await a.call("crm.item.delete", {"entityTypeId": 2, "id": 61})
        assert deleted["result"] == []
        status, missing = await a.call("crm.item.get", {"entityTypeId": 2, "id": 61})
        assert status == 400
        assert missing["error"] == "NOT_FOUND"
        _, fields = await a.call("crm.item.fields", {"entityTypeId": 1})
        assert fields["result"]["fields"]["title"]["upperName"] == "TITLE"


async def test_users_and_departments() -> None:
    emu = make_emulator(seed_users=70)
    async with api(emu) as a:
        _, page = await a.call("user.get", {})
        assert len(page["result"]) == 50
        assert page["total"] == 71
        assert page["next"] == 50
        _, one = await a.call("user.get", {"ID": 1})
        assert one["result"][0]["NAME"] == "John"
        _, filtered = await a.call("user.get", {"FILTER": {"UF_DEPARTMENT": 1}})
        assert [u["ID"] for u in filtered["result"]] == ["1"]
        _, found = await a.call("user.search", {"NAME": "Joh"})
        assert found["result"][0]["ID"] == "1"
        _, found = await a.call("user.search", {"FIND": "example"})
        assert found["total"] == 71
        _, depts = await a.call("department.get", {})
        assert [d["NAME"] for d in depts["result"]] == ["DEMO", "Sales", "Support", "Engineering"]
        assert depts["result"][1]["PARENT"] == "1"


async def test_seeding_is_deterministic() -> None:
    one = make_emulator(seed_leads=30, seed=7)
    two = make_emulator(seed_leads=30, seed=7)
    three = make_emulator(seed_leads=30, seed=8)
    assert one.records("lead") == two.records("lead")
    assert one.records("lead") != three.records("lead")
    one.seed("lead", 5)
    assert one.count("lead") == 35
    assert one.count("lead", {">ID": 30}) == 5


def test_file_database(tmp_path: object) -> None:
    path = f"{tmp_path}/portal.sqlite"
    first = make_emulator(database=path, seed_leads=10)
    first.close()
    second = make_emulator(database=path)
    assert second.count("lead") == 10
    second.close()


def test_clearing_the_store_empties_every_table_tasks_included() -> None:
    """Store.clear() restarts the portal empty, whatever modules added tables."""
    from bitrix_batch.emulator.tasks import TASK_TABLE, seed_tasks

    emu = make_emulator(seed_leads=5)
    seed_tasks(emu.store, 3, 1.7e9)
    emu.store.clear()
    assert emu.count("lead") == 0
    assert emu.store.db.execute(f"SELECT COUNT(*) FROM {TASK_TABLE}").fetchone()[0] == 0
