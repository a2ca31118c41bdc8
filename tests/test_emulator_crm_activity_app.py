"""crm.activity.badge.*, crm.activity.configurable.*, crm.activity.layout.blocks.*."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator_support import Api, api


async def _app_call(a: Api, method: str, params: dict[str, Any]) -> tuple[int, Any]:
    """A call with an OAuth token: the application context these methods need."""
    token = a.emulator.issue_oauth_token()["access_token"]
    response = await a.client.post(f"/rest/{method}", json={**params, "auth": token})
    return response.status_code, json.loads(response.text)


async def _lead(a: Api) -> int:
    _, body = await a.call("crm.lead.add", {"fields": {"TITLE": "L"}})
    return int(body["result"])


_LAYOUT: dict[str, Any] = {
    "icon": {"code": "call-completed"},
    "header": {"title": "Incoming call", "tags": {"status2": {"title": "new", "type": "warning"}}},
    "body": {
        "logo": {"code": "call-incoming"},
        "blocks": {
            "client": {
                "type": "withTitle",
                "properties": {
                    "title": "Client",
                    "block": {"type": "text", "properties": {"value": "Ltd."}},
                },
            }
        },
    },
    "footer": {
        "buttons": {
            "open": {
                "title": "About",
                "type": "primary",
                "action": {"type": "openRestApp", "actionParams": {"clientId": "456"}},
            }
        }
    },
}

_BLOCKS: dict[str, Any] = {
    "blocks": {
        "block_1": {"type": "text", "properties": {"value": "Hello", "bold": True}},
        "block_2": {
            "type": "link",
            "properties": {"text": "Open", "action": {"type": "redirect", "uri": "/crm/"}},
        },
    }
}


async def test_badges_add_get_list_delete() -> None:
    async with api() as a:
        badge = {"code": "missedCall", "title": "Call", "value": {"en": "Missed"}}
        badge["type"] = "failure"
        status, added = await a.call("crm.activity.badge.add", badge)
        assert (status, added["result"]) == (200, {"badge": badge})
        _, got = await a.call("crm.activity.badge.get", {"code": "missedCall"})
        assert got["result"] == {"badge": badge}
        # Served in an application's context too.
        _, listed = await _app_call(a, "crm.activity.badge.list", {})
        assert listed["result"] == {"badges": [badge]}
        _, gone = await a.call("crm.activity.badge.delete", {"code": "missedCall"})
        assert gone["result"] is True
        status, missing = await a.call("crm.activity.badge.get", {"code": "missedCall"})
        assert (status, missing["error"], missing["error_description"]) == (
            400,
            "NOT_FOUND",
            "Not found.",
        )
        _, again = await a.call("crm.activity.badge.delete", {"code": "missedCall"})
        assert again["error"] == "NOT_FOUND"
        _, empty = await a.call("crm.activity.badge.list")
        assert empty["result"] == {"badges": []}


async def test_badge_add_errors() -> None:
    async with api() as a:
        _, short = await a.call("crm.activity.badge.add", {"code": "x", "title": "T"})
        assert (short["error"], short["error_description"]) == (
            "REQUIRED_ARG_MISSING",
            "Required fields are not filled",
        )
        _, wrong = await a.call(
            "crm.activity.badge.add", {"code": "x", "title": "T", "value": "V", "type": "pink"}
        )
        assert wrong["error"] == "WRONG_FIELD_VALUE"


async def test_configurable_add_get_update_and_activity_list() -> None:
    async with api() as a:
        lead = await _lead(a)
        fields = {
            "completed": "N",
            "deadline": "2030-01-02T03:04:05+03:00",
            "pingOffsets": [60, 300],
            "responsibleId": 1,
            "badgeCode": "missedCall",
            "originatorId": "src",
            "originId": "42",
        }
        status, added = await _app_call(
            a,
            "crm.activity.configurable.add",
            {"ownerTypeId": 1, "ownerId": lead, "fields": fields, "layout": _LAYOUT},
        )
        assert status == 200, added
        activity = added["result"]["activity"]
        ident = activity["id"]
        assert (activity["ownerTypeId"], activity["ownerId"]) == (1, lead)
        assert activity["fields"]["typeId"] == "CONFIGURABLE"
        assert activity["fields"]["completed"] is False
        assert activity["fields"]["isIncomingChannel"] is False
        assert activity["fields"]["pingOffsets"] == [60, 300]
        assert activity["layout"]["header"]["title"] == "Incoming call"
        _, got = await _app_call(a, "crm.activity.configurable.get", {"id": ident})
        assert got["result"] == added["result"]
        _, updated = await _app_call(
            a,
            "crm.activity.configurable.update",
            {"id": ident, "fields": {"completed": "Y", "pingOffsets": [300], "responsibleId": 2}},
        )
        changed = updated["result"]["activity"]
        assert changed["id"] == ident
        assert (changed["fields"]["completed"], changed["fields"]["responsibleId"]) == (True, 2)
        assert changed["fields"]["pingOffsets"] == [300]
        assert changed["fields"]["badgeCode"] == "missedCall"
        assert changed["layout"] == activity["layout"]  # no layout given: the stored one stays
        # A configurable activity is an activity: crm.activity.get/list see it.
        _, plain = await a.call("crm.activity.get", {"id": ident})
        assert (plain["result"]["PROVIDER_ID"], plain["result"]["COMPLETED"]) == (
            "CONFIGURABLE_REST_APP",
            "Y",
        )
        assert plain["result"]["SUBJECT"] == "Incoming call"
        _, listed = await a.call(
            "crm.activity.list",
            {"filter": {"PROVIDER_ID": "CONFIGURABLE_REST_APP"}, "select": ["ID"]},
        )
        assert listed["result"] == [{"ID": str(ident)}]
        await a.call("crm.activity.delete", {"id": ident})
        _, deleted = await _app_call(a, "crm.activity.configurable.get", {"id": ident})
        assert deleted["error"] == "NOT_FOUND"


async def test_configurable_errors() -> None:
    async with api() as a:
        lead = await _lead(a)
        base = {"ownerTypeId": 1, "ownerId": lead, "fields": {}, "layout": _LAYOUT}
        status, hook = await a.call("crm.activity.configurable.add", base)
        assert (status, hook["error"], hook["error_description"]) == (
            400,
            "ERROR_WRONG_CONTEXT",
            "The method can only be called in the context of an application",
        )
        _, hook_get = await a.call("crm.activity.configurable.get", {"id": 1})
        assert hook_get["error"] == "ERROR_WRONG_CONTEXT"
        _, no_layout = await _app_call(
            a, "crm.activity.configurable.add", {k: v for k, v in base.items() if k != "layout"}
        )
        assert (no_layout["error"], no_layout["error_description"]) == (
            "100",
            "Could not find value for parameter {layout}",
        )
        _, empty = await _app_call(a, "crm.activity.configurable.add", {**base, "layout": {}})
        assert (empty["error"], empty["error_description"]) == (
            "ERROR_EMPTY_LAYOUT",
            "The layout field must be filled",
        )
        _, no_owner = await _app_call(a, "crm.activity.configurable.add", {**base, "ownerId": 999})
        assert no_owner["error"] == "NOT_FOUND"
        incoming = {"isIncomingChannel": "Y", "deadline": "2030-01-01T00:00:00+00:00"}
        _, both = await _app_call(a, "crm.activity.configurable.add", {**base, "fields": incoming})
        assert both["error"] == "INCOMING_ACTIVITY_CAN_NOT_BE_WITH_DEADLINE"
        _, bad_type = await _app_call(
            a, "crm.activity.configurable.add", {**base, "fields": {"typeId": "NOPE"}}
        )
        assert bad_type["error"] == "WRONG_FIELD_VALUE"
        no_title = {**_LAYOUT, "header": {"tags": {}}}
        _, required = await _app_call(
            a, "crm.activity.configurable.add", {**base, "layout": no_title}
        )
        assert (required["error"], required["error_description"]) == (
            "FIELD_IS_REQUIRED",
            'Field "header.title" is required',
        )
        tags = {f"t{i}": {"title": "x", "type": "success"} for i in range(3)}
        too_many = {**_LAYOUT, "header": {"title": "x", "tags": tags}}
        _, many = await _app_call(a, "crm.activity.configurable.add", {**base, "layout": too_many})
        assert many["error"] == "TOO_MANY_ITEMS"
        lavender = {**_LAYOUT, "header": {"title": "x", "tags": {"a": {"title": "x", "type": "z"}}}}
        _, enum = await _app_call(a, "crm.activity.configurable.add", {**base, "layout": lavender})
        assert enum["error"] == "ENUM_FIELD"
        bad_key = {**_LAYOUT, "body": {"logo": {"code": "c"}, "blocks": {"a b": {"type": "text"}}}}
        _, key = await _app_call(a, "crm.activity.configurable.add", {**base, "layout": bad_key})
        assert key["error"] == "KEY_CONTAIN_WRONG_SYMBOLS"
        _, made = await _app_call(a, "crm.activity.configurable.add", base)
        ident = made["result"]["activity"]["id"]
        _, missing = await _app_call(a, "crm.activity.configurable.get", {"id": ident + 100})
        assert (missing["error"], missing["error_description"]) == ("NOT_FOUND", "Not found.")
        # Another application's activity cannot be updated.
        a.emulator.store.db.execute(
            "UPDATE crm_activity_configurable SET APP = 'oauth:other' WHERE ID = ?", (ident,)
        )
        _, foreign = await _app_call(
            a, "crm.activity.configurable.update", {"id": ident, "fields": {"completed": "Y"}}
        )
        assert foreign["error"] == "ERROR_WRONG_APPLICATION"


async def test_layout_blocks_set_get_delete() -> None:
    async with api() as a:
        lead = await _lead(a)
        _, act = await a.call(
            "crm.activity.add",
            {"fields": {"OWNER_TYPE_ID": 1, "OWNER_ID": lead, "TYPE_ID": 6, "SUBJECT": "Note"}},
        )
        target = {"entityTypeId": 1, "entityId": lead, "activityId": act["result"]}
        _, empty = await _app_call(a, "crm.activity.layout.blocks.get", target)
        assert empty["result"] == {"layout": None}
        status, done = await _app_call(
            a, "crm.activity.layout.blocks.set", {**target, "layout": _BLOCKS}
        )
        assert (status, done["result"]) == (200, {"success": True})
        _, got = await _app_call(a, "crm.activity.layout.blocks.get", target)
        assert got["result"] == {"layout": _BLOCKS}
        _, gone = await _app_call(a, "crm.activity.layout.blocks.delete", target)
        assert gone["result"] == {"success": True}
        _, after = await _app_call(a, "crm.activity.layout.blocks.get", target)
        assert after["result"] == {"layout": None}


async def test_layout_blocks_errors() -> None:
    async with api() as a:
        lead = await _lead(a)
        _, act = await a.call(
            "crm.activity.add",
            {"fields": {"OWNER_TYPE_ID": 1, "OWNER_ID": lead, "TYPE_ID": 6, "SUBJECT": "Note"}},
        )
        target = {"entityTypeId": 1, "entityId": lead, "activityId": act["result"]}
        _, hook = await a.call("crm.activity.layout.blocks.set", {**target, "layout": _BLOCKS})
        assert (hook["error"], hook["error_description"]) == (
            "ERROR_WRONG_CONTEXT",
            "Method call is only possible in the context of a REST application",
        )
        _, owner = await _app_call(a, "crm.activity.layout.blocks.get", {**target, "entityId": 999})
        assert owner["error"] == "OWNER_NOT_FOUND"
        _, other = await _app_call(
            a, "crm.activity.layout.blocks.get", {**target, "activityId": 999}
        )
        assert (other["error"], other["error_description"]) == ("NOT_FOUND", "Activity not found")
        _, no_blocks = await _app_call(
            a, "crm.activity.layout.blocks.set", {**target, "layout": {"blocks": {}}}
        )
        assert no_blocks["error"] == "FIELD_IS_REQUIRED"
        many = {"blocks": {f"b{i}": {"type": "deadline"} for i in range(21)}}
        _, too_many = await _app_call(
            a, "crm.activity.layout.blocks.set", {**target, "layout": many}
        )
        assert too_many["error"] == "TOO_MANY_ITEMS"
        _, made = await _app_call(
            a,
            "crm.activity.configurable.add",
            {"ownerTypeId": 1, "ownerId": lead, "fields": {}, "layout": _LAYOUT},
        )
        configurable = {**target, "activityId": made["result"]["activity"]["id"]}
        _, unsuitable = await _app_call(
            a, "crm.activity.layout.blocks.set", {**configurable, "layout": _BLOCKS}
        )
        assert unsuitable["error"] == "UNSUITABLE_ACTIVITY_TYPE_ERROR"


async def test_store_clear_empties_the_new_tables() -> None:
    async with api() as a:
        await a.call(
            "crm.activity.badge.add", {"code": "c", "title": "T", "value": "V", "type": "primary"}
        )
        a.emulator.store.clear()
        _, listed = await a.call("crm.activity.badge.list")
        assert listed["result"] == {"badges": []}
