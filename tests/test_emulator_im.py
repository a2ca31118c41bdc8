"""The im.* basics: chats, messages, notifications, counters (scope im)."""

from __future__ import annotations

from tests.emulator_support import api, make_emulator


async def test_chat_lifecycle() -> None:
    async with api(make_emulator(seed_users=2)) as a:
        status, added = await a.call(
            "im.chat.add",
            {"TYPE": "CHAT", "TITLE": "Team", "USERS": [2], "ENTITY_TYPE": "X", "ENTITY_ID": "7"},
        )
        chat = added["result"]
        assert status == 200
        assert type(chat) is int
        assert chat > 0
        _, found = await a.call("im.chat.get", {"ENTITY_TYPE": "X", "ENTITY_ID": "7"})
        _, missing = await a.call("im.chat.get", {"ENTITY_TYPE": "X", "ENTITY_ID": "8"})
        assert (found["result"], missing["result"]) == ({"ID": chat}, None)
        for method, extra in (
            ("im.chat.updateTitle", {"TITLE": "New"}),
            ("im.chat.updateColor", {"COLOR": "SAND"}),
            ("im.chat.setOwner", {"USER_ID": 2}),
            ("im.chat.mute", {"MUTE": "Y"}),
            ("im.chat.user.add", {"USERS": [3]}),
        ):
            _, body = await a.call(method, {"CHAT_ID": chat, **extra})
            assert body["result"] is True, method
        _, users = await a.call("im.chat.user.list", {"CHAT_ID": chat})
        assert users["result"] == [1, 2, 3]
        await a.call("im.chat.leave", {"CHAT_ID": chat})
        status, body = await a.call("im.chat.user.list", {"CHAT_ID": chat})
    assert (status, body["error"]) == (400, "ACCESS_ERROR")


async def test_messages_to_a_chat_and_to_a_user() -> None:
    async with api(make_emulator(seed_users=1)) as a:
        chat = (await a.call("im.chat.add", {"USERS": [2]}))[1]["result"]
        _, to_chat = await a.call("im.message.add", {"DIALOG_ID": f"chat{chat}", "MESSAGE": "hi"})
        _, to_user = await a.call("im.message.add", {"DIALOG_ID": "2", "MESSAGE": "hello"})
        ident = to_chat["result"]
        assert type(ident) is int
        assert to_user["result"] == ident + 1
        for method in ("im.message.update", "im.message.like", "im.message.delete"):
            _, body = await a.call(method, {"MESSAGE_ID": ident, "MESSAGE": "edited"})
            assert body["result"] is True, method
        _, gone = await a.call("im.message.update", {"MESSAGE_ID": ident, "MESSAGE": "again"})
        assert gone["result"] is False
        errors = [
            (await a.call("im.message.add", params))[1]["error"]
            for params in (
                {"DIALOG_ID": "2"},
                {"DIALOG_ID": "2", "MESSAGE": "   "},
                {"DIALOG_ID": "99", "MESSAGE": "x"},
                {"DIALOG_ID": "chat999", "MESSAGE": "x"},
                {"MESSAGE": "x"},
            )
        ]
    assert errors == [
        "MESSAGE_EMPTY",
        "MESSAGE_EMPTY",
        "USER_NOT_FOUND",
        "CANCELED",
        "PARAMS_ERROR",
    ]


async def test_notifications_and_counters() -> None:
    async with api() as a:
        ids = []
        for method in ("im.notify", "im.notify.personal.add", "im.notify.system.add"):
            _, body = await a.call(method, {"USER_ID": 1, "MESSAGE": f"from {method}", "TAG": "t"})
            ids.append(body["result"])
        assert all(type(i) is int for i in ids)
        assert len(set(ids)) == 3
        _, got = await a.call("im.notify.get", {"LIMIT": 20})
        assert got["result"]["total_count"] == 3
        assert got["result"]["total_unread_count"] == 3
        assert {"chat_id", "notifications", "users"} <= set(got["result"])
        _, counters = await a.call("im.counters.get")
        assert counters["result"]["TYPE"]["NOTIFY"] == 3
        await a.call("im.notify.read", {"ID": ids[0]})
        _, found = await a.call("im.notify.history.search", {"SEARCH_TEXT": "personal"})
        assert [n["id"] for n in found["result"]["notifications"]] == [ids[1]]
        _, read_all = await a.call("im.notify.read.all")
        assert read_all["result"] == {"read": 3}
        _, deleted = await a.call("im.notify.delete", {"ID": ids[2]})
        assert deleted["result"] is True
        _, after = await a.call("im.notify.get")
        assert (after["result"]["total_count"], after["result"]["total_unread_count"]) == (2, 0)
        no_user = await a.call("im.notify.personal.add", {"MESSAGE": "x"})
        _, schema = await a.call("im.notify.schema.get")
    assert (no_user[0], no_user[1]["error"]) == (400, "USER_ID_EMPTY")
    assert schema["result"]


async def test_im_needs_its_scope() -> None:
    async with api(make_emulator(webhook_scopes=frozenset({"crm"}))) as a:
        status, body = await a.call("im.message.add", {"DIALOG_ID": "1", "MESSAGE": "x"})
    assert (status, body["error"]) == (401, "insufficient_scope")


async def test_a_chat_the_caller_left_refuses_their_messages() -> None:
    async with api(make_emulator(seed_users=1)) as a:
        chat = (await a.call("im.chat.add", {"USERS": [2]}))[1]["result"]
        await a.call("im.chat.leave", {"CHAT_ID": chat})
        status, body = await a.call("im.message.add", {"DIALOG_ID": f"chat{chat}", "MESSAGE": "x"})
    assert (status, body["error"]) == (403, "ACCESS_ERROR")
