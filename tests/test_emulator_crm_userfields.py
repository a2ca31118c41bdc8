"""User fields: declared ones are stored typed and described; undeclared UF_* values are not."""

from __future__ import annotations

from tests.emulator_support import api, make_emulator


async def test_only_declared_user_fields_are_stored_with_their_types() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        status, added = await a.call(
            "crm.deal.userfield.add",
            {"fields": {"FIELD_NAME": "SEATS", "USER_TYPE_ID": "integer", "LABEL": "Seats"}},
        )
        assert status == 200
        assert isinstance(added["result"], int)
        await a.call(
            "crm.deal.userfield.add",
            {"fields": {"FIELD_NAME": "UF_CRM_TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"}},
        )
        _, deal = await a.call(
            "crm.deal.add",
            {
                "fields": {
                    "TITLE": "D",
                    "UF_CRM_SEATS": "12",
                    "UF_CRM_TAGS": ["a", "b"],
                    "UF_CRM_UNDECLARED": "x",
                }
            },
        )
        _, got = await a.call("crm.deal.get", {"id": deal["result"]})
        record = got["result"]
        assert record["UF_CRM_SEATS"] == 12  # FIELD_NAME got the UF_CRM_ prefix; typed
        assert record["UF_CRM_TAGS"] == ["a", "b"]
        assert "UF_CRM_UNDECLARED" not in record
        assert emu.records("deal")[0]["UF"] == {"UF_CRM_SEATS": 12, "UF_CRM_TAGS": ["a", "b"]}
        _, fields = await a.call("crm.deal.fields")
        seats = fields["result"]["UF_CRM_SEATS"]
        assert (seats["type"], seats["isDynamic"], seats["isMultiple"]) == ("integer", True, False)
        assert seats["listLabel"] == "Seats"
        assert fields["result"]["UF_CRM_TAGS"]["isMultiple"] is True
        _, by_filter = await a.call(
            "crm.deal.list", {"filter": {"UF_CRM_SEATS": 12}, "select": ["ID", "UF_CRM_SEATS"]}
        )
        assert by_filter["result"] == [{"ID": str(deal["result"]), "UF_CRM_SEATS": 12}]
        _, item = await a.call("crm.item.get", {"entityTypeId": 2, "id": deal["result"]})
        assert item["result"]["item"]["ufCrmSeats"] == 12


async def test_declaration_get_list_update_delete_and_errors() -> None:
    async with api() as a:
        _, added = await a.call(
            "crm.lead.userfield.add",
            {"fields": {"FIELD_NAME": "UF_CRM_NOTE", "USER_TYPE_ID": "string"}},
        )
        ident = added["result"]
        status, dup = await a.call(
            "crm.lead.userfield.add",
            {"fields": {"FIELD_NAME": "UF_CRM_NOTE", "USER_TYPE_ID": "string"}},
        )
        assert status == 400
        assert dup["error"] == "ERROR_CORE"
        status, bad = await a.call(
            "crm.lead.userfield.add", {"fields": {"FIELD_NAME": "X", "USER_TYPE_ID": "nope"}}
        )
        assert status == 400
        assert "USER_TYPE_ID" in bad["error_description"]
        _, upd = await a.call(
            "crm.lead.userfield.update",
            {
                "id": ident,
                "fields": {
                    "XML_ID": "NOTE",
                    "SORT": "150",
                    "SETTINGS": {"ROWS": "3", "DEFAULT_VALUE": "d"},
                },
            },
        )
        assert upd["result"] is True
        _, got = await a.call("crm.lead.userfield.get", {"id": ident})
        assert (got["result"]["XML_ID"], got["result"]["SORT"]) == ("NOTE", "150")
        assert got["result"]["SETTINGS"] == {"ROWS": 3, "DEFAULT_VALUE": "d"}
        _, listed = await a.call("crm.lead.userfield.list", {"filter": {"ID": ident}})
        assert [f["FIELD_NAME"] for f in listed["result"]] == ["UF_CRM_NOTE"]
        _, other = await a.call("crm.deal.userfield.list")
        assert other["result"] == []  # declarations belong to one entity
        status, wrong_entity = await a.call("crm.deal.userfield.get", {"id": ident})
        assert status == 400
        assert wrong_entity["error_description"] == "Not found"
        _, deleted = await a.call("crm.lead.userfield.delete", {"id": ident})
        assert deleted["result"] is True
        _, fields = await a.call("crm.lead.fields")
        assert "UF_CRM_NOTE" not in fields["result"]
        _, lead = await a.call("crm.lead.add", {"fields": {"UF_CRM_NOTE": "gone"}})
        _, record = await a.call("crm.lead.get", {"id": lead["result"]})
        assert "UF_CRM_NOTE" not in record["result"]


async def test_user_field_types_and_user_userfields() -> None:
    async with api() as a:
        _, types = await a.call("crm.userfield.types")
        assert {"ID": "string", "title": "String"} in types["result"]
        _, added = await a.call(
            "user.userfield.add", {"fields": {"FIELD_NAME": "SHIRT", "USER_TYPE_ID": "string"}}
        )
        _, got = await a.call("user.userfield.get", {"id": added["result"]})
        assert got["result"]["FIELD_NAME"] == "UF_USR_SHIRT"
        assert got["result"]["ENTITY_ID"] == "USER"
