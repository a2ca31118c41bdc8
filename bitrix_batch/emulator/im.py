"""The basics of ``im.*`` (scope ``im``): chats, messages, notifications, counters.

Errors and return types follow the server's ``im/classes/general/im_rest.php``: ``im.chat.add``,
``im.message.add`` and the ``im.notify*`` adds answer the new id as an int, the rest ``true``;
a missing message is 400 ``MESSAGE_EMPTY``, a missing user 400 ``USER_ID_EMPTY``, a chat the
caller is not in 400 ``ACCESS_ERROR``. Everything is kept in memory per portal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval, php_str, php_truthy

__all__ = ["Chat", "Messenger", "register_im"]

#: Notification types of ``im.notify.schema.get`` (module -> events), a small real subset.
_SCHEMA = {
    "im": {"NAME": "Chat and calls", "NOTIFY": {"message": {"NAME": "Personal messages"}}},
    "crm": {"NAME": "CRM", "NOTIFY": {"changeAssignedBy": {"NAME": "Responsible changed"}}},
    "tasks": {"NAME": "Tasks", "NOTIFY": {"manage": {"NAME": "Task updates"}}},
}


def _bad(code: str, text: str, status: int = 400) -> errors.RestError:
    return errors.RestError(code, text, status)


@dataclass
class Chat:
    """A chat, or (type ``PRIVATE``) the dialog of two users."""

    ident: int
    title: str
    type: str
    owner: int
    users: list[int]
    color: str = ""
    entity_type: str = ""
    entity_id: str = ""
    muted: set[int] = field(default_factory=set)


@dataclass
class Messenger:
    """Chats, messages and notifications of one portal (private dialogs are chats too)."""

    engine: Engine
    chats: dict[int, Chat] = field(default_factory=dict)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Separate sequences, as the server's tables have: chats, messages, notifications.
    chat_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    notify_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- helpers ----------------------------------------------------------------------------

    def user_exists(self, ctx: CallContext, user_id: int) -> bool:
        """Whether the portal has the user (asked of the registered ``user.get``)."""
        lookup = self.engine.lookup("user.get")
        if lookup is None:  # pragma: no cover - user.get is always registered
            return user_id == ctx.caller.user_id
        found = lookup.handler(ctx, {"FILTER": {"ID": user_id}, "ID": user_id}).result
        return bool(found)

    def member_chat(self, ctx: CallContext, upper: dict[str, Any]) -> Chat:
        """The chat ``CHAT_ID`` names, which the caller must be in."""
        ident = php_intval(upper.get("CHAT_ID"))
        if ident <= 0:
            raise _bad("CHAT_ID_EMPTY", "Chat ID can't be empty")
        chat = self.chats.get(ident)
        if chat is None or ctx.caller.user_id not in chat.users:
            raise _bad("ACCESS_ERROR", "You don't have access to this chat")
        return chat

    def private_chat(self, first: int, second: int) -> Chat:
        """The private dialog of two users (one user: their own notes), made on first use."""
        users = sorted({first, second})
        for chat in self.chats.values():
            if chat.type == "PRIVATE" and chat.users == users:
                return chat
        chat = Chat(next(self.chat_ids), "", "PRIVATE", first, users)
        self.chats[chat.ident] = chat
        return chat

    def sendable_chat(self, ctx: CallContext, upper: dict[str, Any]) -> Chat:
        """The chat a message goes to: 400 ``CANCELED`` if there is none (as the official
        SDK's live suite sees it), 403 ``ACCESS_ERROR`` if the caller may not write there."""
        ident = php_intval(upper.get("CHAT_ID"))
        if ident <= 0:
            raise _bad("CHAT_ID_EMPTY", "Chat ID can't be empty")
        chat = self.chats.get(ident)
        if chat is None:
            raise _bad("CANCELED", "Message isn't added")
        if ctx.caller.user_id not in chat.users:
            raise _bad("ACCESS_ERROR", "It is forbidden to send messages to this chat", 403)
        return chat

    # -- chats ------------------------------------------------------------------------------

    def chat_add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Create a chat; its id."""
        upper = _upper(params)
        users = upper.get("USERS", {})
        if not isinstance(users, dict):
            raise _bad("INVALID_FORMAT", "Parameter USERS has wrong type")
        members = [ctx.caller.user_id]
        members += [u for u in (php_intval(v) for v in users.values()) if u not in members]
        chat = Chat(
            next(self.chat_ids),
            php_str(upper.get("TITLE", "")),
            php_str(upper.get("TYPE", "CHAT")).upper() or "CHAT",
            php_intval(upper.get("OWNER_ID")) or ctx.caller.user_id,
            members,
            php_str(upper.get("COLOR", "")),
            php_str(upper.get("ENTITY_TYPE", "")),
            php_str(upper.get("ENTITY_ID", "")),
        )
        self.chats[chat.ident] = chat
        return MethodResult(chat.ident)

    def chat_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``{"ID": n}`` of the chat bound to ``ENTITY_TYPE``/``ENTITY_ID``, else ``null``."""
        upper = _upper(params)
        kind, ident = php_str(upper.get("ENTITY_TYPE", "")), php_str(upper.get("ENTITY_ID", ""))
        if kind and ident:
            for chat in self.chats.values():
                if (chat.entity_type, chat.entity_id) == (kind, ident):
                    return MethodResult({"ID": chat.ident})
        return MethodResult(None)

    def chat_change(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``im.chat.updateTitle``/``updateColor``/``setOwner``/``mute``...: ``true``."""
        upper = _upper(params)
        chat = self.member_chat(ctx, upper)
        if "TITLE" in upper:
            chat.title = php_str(upper["TITLE"])
        if "COLOR" in upper:
            chat.color = php_str(upper["COLOR"])
        if "USER_ID" in upper:  # im.chat.setOwner
            chat.owner = php_intval(upper["USER_ID"]) or chat.owner
        if "MUTE" in upper:
            (chat.muted.add if php_truthy(upper["MUTE"]) else chat.muted.discard)(
                ctx.caller.user_id
            )
        return MethodResult(True)

    def chat_leave(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The caller leaves the chat."""
        chat = self.member_chat(ctx, _upper(params))
        chat.users.remove(ctx.caller.user_id)
        return MethodResult(True)

    def chat_user_add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Add ``USERS`` to the chat."""
        upper = _upper(params)
        chat = self.member_chat(ctx, upper)
        users = upper.get("USERS", {})
        for value in users.values() if isinstance(users, dict) else [users]:
            user = php_intval(value)
            if user > 0 and user not in chat.users:
                chat.users.append(user)
        return MethodResult(True)

    def chat_user_delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Remove ``USER_ID`` from the chat."""
        upper = _upper(params)
        chat = self.member_chat(ctx, upper)
        user = php_intval(upper.get("USER_ID"))
        if user in chat.users:
            chat.users.remove(user)
        return MethodResult(True)

    def chat_user_list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The chat's user ids."""
        return MethodResult(list(self.member_chat(ctx, _upper(params)).users))

    # -- messages ---------------------------------------------------------------------------

    def message_add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Send a message to ``DIALOG_ID`` (``chatN`` or a user id); its id."""
        upper = _upper(params)
        text = _message(upper)
        dialog = php_str(upper.get("DIALOG_ID", ""))
        if dialog.startswith("chat"):
            upper["CHAT_ID"] = dialog[4:]
        elif dialog:
            upper["USER_ID"] = dialog
        if "USER_ID" in upper:
            user = php_intval(upper["USER_ID"])
            if user <= 0:
                raise _bad("USER_ID_EMPTY", "User ID can't be empty")
            if not self.user_exists(ctx, user):
                raise _bad("USER_NOT_FOUND", "User not found")
            chat = self.private_chat(ctx.caller.user_id, user)
        elif "CHAT_ID" in upper:
            chat = self.sendable_chat(ctx, upper)
        else:
            raise _bad("PARAMS_ERROR", "Incorrect params")
        ident = next(self.message_ids)
        self.messages[ident] = {
            "id": ident,
            "chat_id": chat.ident,
            "author_id": ctx.caller.user_id,
            "text": text,
            "date": ctx.now_iso(),
            "likes": set(),
        }
        return MethodResult(ident)

    def own_message(self, ctx: CallContext, upper: dict[str, Any]) -> dict[str, Any] | None:
        """The message ``MESSAGE_ID`` names (None if unknown)."""
        ident = php_intval(upper.get("MESSAGE_ID") or upper.get("ID"))
        if ident <= 0:
            raise _bad("MESSAGE_ID_ERROR", "Message ID can't be empty")
        return self.messages.get(ident)

    def message_update(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Change a message's text; ``false`` for an unknown message."""
        upper = _upper(params)
        message = self.own_message(ctx, upper)
        if message is None:
            return MethodResult(False)
        message["text"] = php_str(upper.get("MESSAGE", ""))
        return MethodResult(True)

    def message_delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Delete a message; ``false`` for an unknown one."""
        message = self.own_message(ctx, _upper(params))
        if message is None:
            return MethodResult(False)
        del self.messages[message["id"]]
        return MethodResult(True)

    def message_like(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Like (or with ``ACTION=minus`` unlike) a message."""
        upper = _upper(params)
        message = self.own_message(ctx, upper)
        if message is None:
            return MethodResult(False)
        likes: set[int] = message["likes"]
        if php_str(upper.get("ACTION", "")).lower() == "minus":
            likes.discard(ctx.caller.user_id)
        else:
            likes.add(ctx.caller.user_id)
        return MethodResult(True)

    # -- notifications ----------------------------------------------------------------------

    def notify_add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``im.notify``/``im.notify.personal.add``/``im.notify.system.add``: its id."""
        upper = _upper(params)
        user = php_intval(upper.get("TO") or upper.get("USER_ID"))
        if user <= 0:
            raise _bad("USER_ID_EMPTY", "User ID can't be empty")
        text = _message(upper)
        ident = next(self.notify_ids)
        self.notifications[ident] = {
            "id": ident,
            "user_id": user,
            "author_id": ctx.caller.user_id,
            "text": text,
            "tag": php_str(upper.get("TAG", "")),
            "date": ctx.now_iso(),
            "read": False,
        }
        return MethodResult(ident)

    def mine(self, ctx: CallContext) -> list[dict[str, Any]]:
        """The caller's notifications, newest first."""
        rows = [n for n in self.notifications.values() if n["user_id"] == ctx.caller.user_id]
        return sorted(rows, key=lambda n: -int(n["id"]))

    def notify_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The caller's notifications with their counts."""
        rows = self.mine(ctx)
        return MethodResult(
            {
                "total_count": len(rows),
                "total_unread_count": sum(1 for n in rows if not n["read"]),
                "chat_id": 0,
                "notifications": [_notification_out(n) for n in rows],
                "users": [],
            }
        )

    def notify_search(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Notifications whose text holds ``SEARCH_TEXT``."""
        needle = php_str(_upper(params).get("SEARCH_TEXT", "")).lower()
        rows = [n for n in self.mine(ctx) if needle in str(n["text"]).lower()]
        return MethodResult({"notifications": [_notification_out(n) for n in rows], "users": []})

    def notify_read(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Mark ``ID`` (or ``IDS``) read; ``im.notify.read.all`` answers ``{}``-like data."""
        upper = _upper(params)
        ids = upper.get("IDS")
        wanted = (
            [php_intval(v) for v in ids.values()]
            if isinstance(ids, dict)
            else [php_intval(upper.get("ID"))]
        )
        unread = not php_truthy(upper.get("ACTION", "Y")) if "ACTION" in upper else False
        for n in self.mine(ctx):
            if n["id"] in wanted:
                n["read"] = not unread
        return MethodResult(True)

    def notify_read_all(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Mark every notification of the caller read."""
        rows = self.mine(ctx)
        for n in rows:
            n["read"] = True
        return MethodResult({"read": len(rows)})

    def notify_delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Delete the caller's notification ``ID`` (or those with ``TAG``)."""
        upper = _upper(params)
        ident, tag = php_intval(upper.get("ID")), php_str(upper.get("TAG", ""))
        doomed = [n["id"] for n in self.mine(ctx) if n["id"] == ident or (tag and n["tag"] == tag)]
        for key in doomed:
            del self.notifications[key]
        return MethodResult(bool(doomed))

    def notify_schema(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The notification types by module."""
        return MethodResult(_SCHEMA)

    # -- counters ---------------------------------------------------------------------------

    def counters(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Unread counters of the caller (chats and dialogs have none unread here)."""
        unread = sum(1 for n in self.mine(ctx) if not n["read"])
        return MethodResult(
            {
                "TYPE": {"ALL": unread, "NOTIFY": unread, "CHAT": 0, "DIALOG": 0, "LINES": 0},
                "CHAT": [],
                "CHAT_MUTED": [],
                "CHAT_UNREAD": [],
                "LINES": [],
                "DIALOG": [],
                "DIALOG_UNREAD": [],
            }
        )

    def revision(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """API revisions of the module."""
        return MethodResult({"rest": 29, "web": 130, "mobile": 18})


def _upper(params: dict[PhpKey, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _message(upper: dict[str, Any]) -> str:
    """The ``MESSAGE`` text, or 400 ``MESSAGE_EMPTY`` (an ``ATTACH`` alone is accepted)."""
    raw = upper.get("MESSAGE")
    if raw is None:
        if "ATTACH" in upper:
            return ""
        raise _bad("MESSAGE_EMPTY", "Message can't be empty")
    if not isinstance(raw, str | int | float):
        raise _bad("MESSAGE_EMPTY", "Wrong message type")
    text = php_str(raw).strip()
    if text == "" and "ATTACH" not in upper:
        raise _bad("MESSAGE_EMPTY", "Message can't be empty")
    return text


def _notification_out(n: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": n["id"],
        "author_id": n["author_id"],
        "date": n["date"],
        "notify_type": 4,
        "notify_tag": n["tag"],
        "notify_read": "Y" if n["read"] else "N",
        "text": n["text"],
    }


def register_im(engine: Engine) -> Messenger:
    """Add the ``im.*`` basics (scope ``im``); the messenger's state, for the dialog methods."""
    im = Messenger(engine)
    for name, handler in (
        ("im.chat.add", im.chat_add),
        ("im.chat.get", im.chat_get),
        ("im.chat.updateTitle", im.chat_change),
        ("im.chat.updateColor", im.chat_change),
        ("im.chat.updateAvatar", im.chat_change),
        ("im.chat.setOwner", im.chat_change),
        ("im.chat.mute", im.chat_change),
        ("im.chat.leave", im.chat_leave),
        ("im.chat.user.add", im.chat_user_add),
        ("im.chat.user.delete", im.chat_user_delete),
        ("im.chat.user.list", im.chat_user_list),
        ("im.message.add", im.message_add),
        ("im.message.update", im.message_update),
        ("im.message.delete", im.message_delete),
        ("im.message.like", im.message_like),
        ("im.notify", im.notify_add),
        ("im.notify.personal.add", im.notify_add),
        ("im.notify.system.add", im.notify_add),
        ("im.notify.get", im.notify_get),
        ("im.notify.history.search", im.notify_search),
        ("im.notify.read", im.notify_read),
        ("im.notify.read.list", im.notify_read),
        ("im.notify.read.all", im.notify_read_all),
        ("im.notify.delete", im.notify_delete),
        ("im.notify.schema.get", im.notify_schema),
        ("im.counters.get", im.counters),
        ("im.revision.get", im.revision),
    ):
        engine.register(name, handler, "im")
    return im
