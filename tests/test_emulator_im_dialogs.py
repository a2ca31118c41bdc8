"""im.dialog.* and im.recent.*: dialogs over the messenger's chats and messages."""

from __future__ import annotations

from typing import Any

from tests.emulator_support import Api, api, make_emulator


async def send(a: Api, dialog: str, text: str) -> int:
    """Post a message; its id."""
    status, body = await a.call("im.message.add", {"DIALOG_ID": dialog, "MESSAGE": text})
    assert status == 200, body
    ident: int = body["result"]
    return ident


async def as_user(a: Api, user: int, method: str, params: dict[str, Any]) -> Any:
    """Call ``method`` as ``user`` through the OAuth route."""
    token = a.emulator.issue_oauth_token(user_id=user)["access_token"]
    response = await a.client.post(f"/rest/{method}", json={**params, "auth": token})
    return response.json()


async def test_dialog_get_and_messages_newest_first() -> None:
    async with api(make_emulator(seed_users=1)) as a:
        chat = (await a.call("im.chat.add", {"TITLE": "Team", "USERS": [2]}))[1]["result"]
        ids = [await send(a, f"chat{chat}", f"m{i}") for i in range(5)]
        _, dialog = await a.call("im.dialog.get", {"DIALOG_ID": f"chat{chat}"})
        _, page = await a.call("im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "LIMIT": 2})
        _, older = await a.call(
            "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "LAST_ID": ids[3], "LIMIT": 2}
        )
        _, newer = await a.call(
            "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "FIRST_ID": ids[2]}
        )
        _, found = await a.call(
            "im.dialog.messages.search", {"CHAT_ID": chat, "SEARCH_MESSAGE": "m3"}
        )
        _, users = await a.call("im.dialog.users.list", {"DIALOG_ID": f"chat{chat}"})
        empty = await a.call("im.dialog.get", {})
        stranger = await a.call("im.dialog.get", {"DIALOG_ID": "chat999"})
    assert (dialog["result"]["dialog_id"], dialog["result"]["name"]) == (f"chat{chat}", "Team")
    assert dialog["result"]["type"] == "chat"
    assert [m["text"] for m in page["result"]["messages"]] == ["m4", "m3"]
    assert [m["text"] for m in older["result"]["messages"]] == ["m2", "m1"]
    assert [m["id"] for m in newer["result"]["messages"]] == ids[:2:-1]  # newest first too
    assert [m["text"] for m in found["result"]["messages"]] == ["m3"]
    assert [u["id"] for u in users["result"]] == [1, 2]
    assert (empty[0], empty[1]["error"]) == (400, "DIALOG_ID_EMPTY")
    assert (stranger[0], stranger[1]["error"]) == (403, "ACCESS_ERROR")


async def test_private_dialogs_and_unread_counters() -> None:
    async with api(make_emulator(seed_users=1)) as a:
        await send(a, "2", "hello")
        second = await send(a, "2", "again")
        # User 2 sees the dialog as "1", with two unread messages from user 1.
        seen = await as_user(a, 2, "im.dialog.get", {"DIALOG_ID": "1"})
        read = await as_user(a, 2, "im.dialog.read", {"DIALOG_ID": "1", "MESSAGE_ID": second - 1})
        await as_user(a, 2, "im.dialog.read.all", {})
        after = await as_user(a, 2, "im.dialog.get", {"DIALOG_ID": "1"})
    assert seen["result"]["dialog_id"] == "1"
    assert seen["result"]["type"] == "private"
    assert seen["result"]["counter"] == 2
    assert read["result"]["counter"] == 1
    assert after["result"]["counter"] == 0


async def test_recent_is_ordered_by_last_message_with_pins_and_hides() -> None:
    async with api(make_emulator(seed_users=2)) as a:
        first = (await a.call("im.chat.add", {"TITLE": "First", "USERS": [2]}))[1]["result"]
        second = (await a.call("im.chat.add", {"TITLE": "Second", "USERS": [3]}))[1]["result"]
        await send(a, f"chat{first}", "x")
        await send(a, f"chat{second}", "y")
        await send(a, "3", "private")
        _, recent = await a.call("im.recent.get")
        await a.call("im.recent.pin", {"DIALOG_ID": f"chat{first}", "PIN": "Y"})
        await a.call("im.recent.hide", {"DIALOG_ID": f"chat{second}"})
        await a.call("im.recent.unread", {"DIALOG_ID": "3", "ACTION": "Y"})
        _, listed = await a.call("im.recent.list", {"LIMIT": 1})
        _, everything = await a.call("im.recent.list")
        await send(a, f"chat{second}", "back")  # a new message brings a hidden dialog back
        _, back = await a.call("im.recent.get")
    assert [i["id"] for i in recent["result"]] == ["3", f"chat{second}", f"chat{first}"]
    assert recent["result"][0]["type"] == "user"
    assert recent["result"][0]["message"]["text"] == "private"
    assert [i["id"] for i in everything["result"]["items"]] == [f"chat{first}", "3"]
    assert everything["result"]["items"][0]["pinned"] is True
    assert everything["result"]["items"][1]["unread"] is True
    assert (len(listed["result"]["items"]), listed["result"]["hasMorePages"]) == (1, True)
    assert [i["id"] for i in back["result"]] == [f"chat{first}", f"chat{second}", "3"]
