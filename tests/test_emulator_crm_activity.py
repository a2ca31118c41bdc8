"""crm.activity.* (owner, communications, bindings, types), crm.timeline.comment.*,
crm.duplicate.findbycomm."""

from __future__ import annotations

from typing import Any

from tests.emulator_support import Api, api


async def _contact(a: Api, **fields: Any) -> int:
    _, body = await a.call("crm.contact.add", {"fields": {"NAME": "P", **fields}})
    return int(body["result"])


async def test_activity_add_checks_owner_and_communications() -> None:
    async with api() as a:
        contact = await _contact(a)
        call = {
            "OWNER_TYPE_ID": 3,
            "OWNER_ID": contact,
            "TYPE_ID": 2,
            "SUBJECT": "Call",
            "DIRECTION": 2,
        }
        status, no_comm = await a.call("crm.activity.add", {"fields": call})
        assert (status, no_comm["error_description"]) == (
            400,
            "The field COMMUNICATIONS is not defined or invalid.",
        )
        status, no_owner = await a.call(
            "crm.activity.add",
            {"fields": {**call, "OWNER_ID": 999, "COMMUNICATIONS": [{"VALUE": "+1"}]}},
        )
        assert status == 400
        assert "Owner" in no_owner["error_description"]
        status, no_type = await a.call(
            "crm.activity.add", {"fields": {"OWNER_TYPE_ID": 3, "OWNER_ID": contact}}
        )
        assert no_type["error_description"] == "The field TYPE_ID is not defined or invalid."
        _, added = await a.call(
            "crm.activity.add", {"fields": {**call, "COMMUNICATIONS": [{"VALUE": "+7 900"}]}}
        )
        _, got = await a.call("crm.activity.get", {"id": added["result"]})
        record = got["result"]
        assert record["COMMUNICATIONS"][0]["TYPE"] == "PHONE"
        assert record["COMMUNICATIONS"][0]["ENTITY_ID"] == str(contact)
        assert record["BINDINGS"] == [{"OWNER_ID": str(contact), "OWNER_TYPE_ID": "3"}]
        assert (record["RESPONSIBLE_ID"], record["AUTHOR_ID"], record["COMPLETED"]) == (
            "1",
            "1",
            "N",
        )
        await a.call("crm.activity.update", {"id": added["result"], "fields": {"COMPLETED": "Y"}})
        _, listed = await a.call(
            "crm.activity.list",
            {
                "filter": {"OWNER_TYPE_ID": 3, "OWNER_ID": contact, "COMPLETED": "Y"},
                "select": ["ID", "SUBJECT"],
            },
        )
        assert listed["result"] == [{"ID": str(added["result"]), "SUBJECT": "Call"}]
        _, fields = await a.call("crm.activity.fields")
        assert fields["result"]["COMMUNICATIONS"]["isRequired"] is True
        assert len(fields["result"]) == 44


async def test_activity_bindings_and_types() -> None:
    async with api() as a:
        contact = await _contact(a)
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        _, other = await a.call("crm.deal.add", {"fields": {"TITLE": "E"}})
        _, added = await a.call(
            "crm.activity.add",
            {"fields": {"OWNER_TYPE_ID": 3, "OWNER_ID": contact, "TYPE_ID": 6, "SUBJECT": "Note"}},
        )
        act = added["result"]
        _, done = await a.call(
            "crm.activity.binding.add",
            {"activityId": act, "entityTypeId": 2, "entityId": deal["result"]},
        )
        assert done["result"] is True
        await a.call(
            "crm.activity.binding.move",
            {
                "activityId": act,
                "sourceEntityTypeId": 2,
                "sourceEntityId": deal["result"],
                "targetEntityTypeId": 2,
                "targetEntityId": other["result"],
            },
        )
        _, listed = await a.call("crm.activity.binding.list", {"activityId": act})
        assert listed["result"] == [
            {"entityTypeId": 3, "entityId": contact},
            {"entityTypeId": 2, "entityId": other["result"]},
        ]
        await a.call(
            "crm.activity.binding.delete",
            {"activityId": act, "entityTypeId": 3, "entityId": contact},
        )
        status, _ = await a.call(
            "crm.activity.binding.delete",
            {"activityId": act, "entityTypeId": 2, "entityId": other["result"]},
        )
        assert status == 400  # the last binding stays
        _, typed = await a.call(
            "crm.activity.type.add",
            {"fields": {"TYPE_ID": "VISIT", "NAME": "Visit", "IS_CONFIGURABLE_TYPE": "Y"}},
        )
        assert typed["result"] is True
        _, types = await a.call("crm.activity.type.list")
        assert types["result"][0]["TYPE_ID"] == "VISIT"
        assert types["result"][0]["IS_CONFIGURABLE_TYPE"] == "Y"
        _, gone = await a.call("crm.activity.type.delete", {"TYPE_ID": "VISIT"})
        assert gone["result"] is True
        _, comm = await a.call("crm.activity.communication.fields")
        assert "VALUE" in comm["result"]


async def test_timeline_comments() -> None:
    async with api() as a:
        _, deal = await a.call("crm.deal.add", {"fields": {"TITLE": "D"}})
        status, orphan = await a.call(
            "crm.timeline.comment.add",
            {"fields": {"ENTITY_ID": 99, "ENTITY_TYPE": "deal", "COMMENT": "x"}},
        )
        assert (status, orphan["error"]) == (400, "OWNER_NOT_FOUND")
        status, empty = await a.call(
            "crm.timeline.comment.add",
            {"fields": {"ENTITY_ID": deal["result"], "ENTITY_TYPE": "deal", "COMMENT": " "}},
        )
        assert empty["error"] == "INVALID_ARG_VALUE"
        _, added = await a.call(
            "crm.timeline.comment.add",
            {
                "fields": {
                    "ENTITY_ID": deal["result"],
                    "ENTITY_TYPE": "deal",
                    "COMMENT": "Called back",
                }
            },
        )
        _, listed = await a.call(
            "crm.timeline.comment.list",
            {"filter": {"ENTITY_ID": deal["result"], "ENTITY_TYPE": "deal"}},
        )
        assert [c["COMMENT"] for c in listed["result"]] == ["Called back"]
        assert listed["result"][0]["AUTHOR_ID"] == "1"
        await a.call(
            "crm.timeline.comment.update",
            {"id": added["result"], "fields": {"COMMENT": "Called twice"}},
        )
        _, got = await a.call("crm.timeline.comment.get", {"id": added["result"]})
        assert got["result"]["COMMENT"] == "Called twice"
        await a.call("crm.timeline.comment.delete", {"id": added["result"]})
        status, _ = await a.call("crm.timeline.comment.get", {"id": added["result"]})
        assert status == 400


async def test_duplicates_by_phone_and_email() -> None:
    async with api() as a:
        first = await _contact(a, PHONE=[{"VALUE": "+7 (900) 123-45-67"}])
        await _contact(a, PHONE=[{"VALUE": "+7 900 000"}])
        _, lead = await a.call(
            "crm.lead.add", {"fields": {"TITLE": "L", "EMAIL": [{"VALUE": "A@x.io"}]}}
        )
        _, found = await a.call(
            "crm.duplicate.findbycomm", {"type": "PHONE", "values": ["79001234567"]}
        )
        assert found["result"] == {"CONTACT": [first]}
        _, by_mail = await a.call(
            "crm.duplicate.findbycomm",
            {"type": "EMAIL", "values": ["a@X.io"], "entity_type": "LEAD"},
        )
        assert by_mail["result"] == {"LEAD": [lead["result"]]}
        _, none = await a.call(
            "crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["nobody@x.io"]}
        )
        assert none["result"] == []
        status, _ = await a.call("crm.duplicate.findbycomm", {"type": "FAX", "values": ["1"]})
        assert status == 400
