"""Bindings: deal/lead contacts, contact companies and company contacts (one link, two sides)."""

from __future__ import annotations

from tests.emulator_support import api


async def test_deal_contacts_items_set_get_and_the_primary_column() -> None:
    async with api() as a:
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        ids = [
            (await a.call("crm.contact.add", {"fields": {"NAME": n}}))[1]["result"]
            for n in ("a", "b", "c")
        ]
        _, done = await a.call(
            "crm.deal.contact.items.set",
            {
                "id": deal["result"],
                "items": [
                    {"CONTACT_ID": ids[0], "SORT": 20},
                    {"CONTACT_ID": ids[1], "SORT": 10, "IS_PRIMARY": "Y"},
                ],
            },
        )
        assert done["result"] is True
        _, items = await a.call("crm.deal.contact.items.get", {"id": deal["result"]})
        assert items["result"] == [
            {"CONTACT_ID": ids[1], "SORT": 10, "ROLE_ID": 0, "IS_PRIMARY": "Y"},
            {"CONTACT_ID": ids[0], "SORT": 20, "ROLE_ID": 0, "IS_PRIMARY": "N"},
        ]
        _, record = await a.call("crm.deal.get", {"id": deal["result"]})
        assert record["result"]["CONTACT_ID"] == str(ids[1])
        await a.call(
            "crm.deal.contact.add",
            {"id": deal["result"], "fields": {"CONTACT_ID": ids[2], "IS_PRIMARY": "Y"}},
        )
        _, items = await a.call("crm.deal.contact.items.get", {"id": deal["result"]})
        assert [i["IS_PRIMARY"] for i in items["result"]] == ["N", "N", "Y"]
        assert items["result"][2]["SORT"] == 30  # after the last one
        await a.call(
            "crm.deal.contact.delete", {"id": deal["result"], "fields": {"CONTACT_ID": ids[2]}}
        )
        _, items = await a.call("crm.deal.contact.items.get", {"id": deal["result"]})
        assert [i["CONTACT_ID"] for i in items["result"]] == [ids[1], ids[0]]
        assert sum(i["IS_PRIMARY"] == "Y" for i in items["result"]) == 1
        await a.call("crm.deal.contact.items.delete", {"id": deal["result"]})
        _, record = await a.call("crm.deal.get", {"id": deal["result"]})
        assert record["result"]["CONTACT_ID"] is None


async def test_binding_errors() -> None:
    async with api() as a:
        status, bad = await a.call("crm.deal.contact.items.get", {"id": 0})
        assert status == 400
        assert bad == {
            "error": "",
            "error_description": "The parameter ownerEntityID is invalid or not defined.",
        }
        status, missing = await a.call("crm.deal.contact.items.get", {"id": 99})
        assert (status, missing["error_description"]) == (400, "Not found.")
        _, fields = await a.call("crm.deal.contact.fields")
        assert set(fields["result"]) == {"CONTACT_ID", "SORT", "ROLE_ID", "IS_PRIMARY"}


async def test_contact_company_links_are_seen_from_both_sides() -> None:
    async with api() as a:
        _, company = await a.call("crm.company.add", {"fields": {"TITLE": "C"}})
        _, contact = await a.call("crm.contact.add", {"fields": {"NAME": "P"}})
        await a.call(
            "crm.contact.company.add",
            {"id": contact["result"], "fields": {"COMPANY_ID": company["result"]}},
        )
        _, of_company = await a.call("crm.company.contact.items.get", {"id": company["result"]})
        assert [i["CONTACT_ID"] for i in of_company["result"]] == [contact["result"]]
        _, record = await a.call("crm.contact.get", {"id": contact["result"]})
        assert record["result"]["COMPANY_ID"] == str(company["result"])
        await a.call(
            "crm.company.contact.delete",
            {"id": company["result"], "fields": {"CONTACT_ID": contact["result"]}},
        )
        _, of_contact = await a.call("crm.contact.company.items.get", {"id": contact["result"]})
        assert of_contact["result"] == []


async def test_contact_ids_on_add_and_deleting_a_contact_unbinds_it() -> None:
    async with api() as a:
        c1 = (await a.call("crm.contact.add", {"fields": {"NAME": "a"}}))[1]["result"]
        c2 = (await a.call("crm.contact.add", {"fields": {"NAME": "b"}}))[1]["result"]
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D", "CONTACT_IDS": [c1, c2]}})
        _, items = await a.call("crm.deal.contact.items.get", {"id": deal["result"]})
        assert [(i["CONTACT_ID"], i["IS_PRIMARY"]) for i in items["result"]] == [
            (c1, "Y"),
            (c2, "N"),
        ]
        await a.call("crm.contact.delete", {"id": c1})
        _, items = await a.call("crm.deal.contact.items.get", {"id": deal["result"]})
        assert [(i["CONTACT_ID"], i["IS_PRIMARY"]) for i in items["result"]] == [(c2, "Y")]
        _, record = await a.call("crm.deal.get", {"id": deal["result"]})
        assert record["result"]["CONTACT_ID"] == str(c2)
        _, lead = await a.call("crm.lead.add", {"fields": {"TITLE": "L", "CONTACT_ID": c2}})
        _, lead_items = await a.call("crm.lead.contact.items.get", {"id": lead["result"]})
        assert [i["CONTACT_ID"] for i in lead_items["result"]] == [c2]
