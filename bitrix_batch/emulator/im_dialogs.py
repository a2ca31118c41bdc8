"""``im.dialog.*`` and ``im.recent.*`` (scope ``im``) over the messenger's chats and messages.

A dialog is ``chatN`` or, for a private dialog, the other user's id. ``im.dialog.get`` names
it; ``im.dialog.messages.get`` pages its messages newest first; ``im.recent.get`` lists the
caller's dialogs by their last message (pinned first, hidden ones left out until their next
message). Read marks, pins and hides are kept per user.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .im import Chat, Messenger
from .php import PhpKey, php_intval, php_str, php_truthy

__all__ = ["register_im_dialogs"]


def _upper(params: dict[PhpKey, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


class _Dialogs:
    """Per-user dialog state on top of a :class:`Messenger`."""

    def __init__(self, engine: Engine, im: Messenger) -> None:
        self.engine = engine
        self.im = im
        self.read_up_to: dict[tuple[int, int], int] = {}  # (user, chat) -> last read message
        self.pinned: set[tuple[int, int]] = set()
        self.hidden: dict[tuple[int, int], int] = {}  # (user, chat) -> last message when hidden
        self.marked_unread: set[tuple[int, int]] = set()

    # -- helpers ----------------------------------------------------------------------------

    def chat_of(self, ctx: CallContext, dialog: str) -> Chat:
        """The chat behind a dialog id the caller may read."""
        if not dialog:
            raise errors.RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty")
        me = ctx.caller.user_id
        if dialog.startswith("chat"):
            chat = self.im.chats.get(php_intval(dialog[4:]))
        else:
            other = php_intval(dialog)
            chat = self.im.private_chat(me, other) if self.im.user_exists(ctx, other) else None
        if chat is None or me not in chat.users:
            raise errors.RestError(
                "ACCESS_ERROR", "You do not have access to the specified dialog", 403
            )
        return chat

    def dialog_id(self, ctx: CallContext, chat: Chat) -> str:
        """How the caller names ``chat``."""
        if chat.type != "PRIVATE":
            return f"chat{chat.ident}"
        others = [u for u in chat.users if u != ctx.caller.user_id]
        return str(others[0] if others else ctx.caller.user_id)

    def messages_of(self, chat: Chat) -> list[dict[str, Any]]:
        """The chat's messages, oldest first."""
        return [m for m in self.im.messages.values() if m["chat_id"] == chat.ident]

    def message_out(self, ctx: CallContext, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the dialog methods print it."""
        key = (ctx.caller.user_id, message["chat_id"])
        return {
            "id": message["id"],
            "chat_id": message["chat_id"],
            "author_id": message["author_id"],
            "date": message["date"],
            "text": message["text"],
            "unread": message["author_id"] != ctx.caller.user_id
            and message["id"] > self.read_up_to.get(key, 0),
            "params": {"LIKE": sorted(message["likes"])} if message["likes"] else [],
        }

    def counter(self, ctx: CallContext, chat: Chat) -> int:
        """Unread messages of others in the chat."""
        return sum(1 for m in self.messages_of(chat) if self.message_out(ctx, m)["unread"])

    def name_of(self, ctx: CallContext, chat: Chat) -> str:
        """A chat's title, or the other user's name for a private dialog."""
        if chat.type != "PRIVATE":
            return chat.title or f"Chat {chat.ident}"
        lookup = self.engine.lookup("im.user.get")
        other = php_intval(self.dialog_id(ctx, chat))
        user = lookup.handler(ctx, {"ID": other}).result if lookup is not None else None
        return php_str(user.get("name", "")) if isinstance(user, dict) else ""

    def out(self, ctx: CallContext, chat: Chat) -> dict[str, Any]:
        """A dialog as ``im.dialog.get`` prints it."""
        return {
            "id": chat.ident,
            "dialog_id": self.dialog_id(ctx, chat),
            "name": self.name_of(ctx, chat),
            "owner": chat.owner,
            "type": chat.type.lower(),
            "color": chat.color,
            "entity_type": chat.entity_type,
            "entity_id": chat.entity_id,
            "user_counter": len(chat.users),
            "muted_list": sorted(chat.muted),
            "counter": self.counter(ctx, chat),
        }

    # -- im.dialog.* ------------------------------------------------------------------------

    def get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The dialog ``DIALOG_ID``."""
        chat = self.chat_of(ctx, php_str(_upper(params).get("DIALOG_ID", "")))
        return MethodResult(self.out(ctx, chat))

    def messages(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Messages newest first; ``LAST_ID`` pages back, ``FIRST_ID`` forward; ``LIMIT`` <= 50."""
        upper = _upper(params)
        chat = self.chat_of(ctx, php_str(upper.get("DIALOG_ID", "")))
        limit = min(max(php_intval(upper.get("LIMIT")) or 20, 1), 50)
        rows = self.messages_of(chat)
        if "FIRST_ID" in upper:
            rows = [m for m in rows if m["id"] > php_intval(upper["FIRST_ID"])][:limit]
        else:
            if "LAST_ID" in upper:
                rows = [m for m in rows if m["id"] < php_intval(upper["LAST_ID"])]
            rows = rows[-limit:]
        out = [self.message_out(ctx, m) for m in reversed(rows)]
        return MethodResult({"chat_id": chat.ident, "messages": out, "users": [], "files": []})

    def search(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Messages of ``CHAT_ID`` whose text holds ``SEARCH_MESSAGE``, newest first."""
        upper = _upper(params)
        chat = self.chat_of(ctx, f"chat{php_intval(upper.get('CHAT_ID'))}")
        needle = php_str(upper.get("SEARCH_MESSAGE", "")).lower()
        limit = min(max(php_intval(upper.get("LIMIT")) or 20, 1), 50)
        rows = [m for m in self.messages_of(chat) if needle in str(m["text"]).lower()]
        out = [self.message_out(ctx, m) for m in reversed(rows[-limit:])]
        return MethodResult({"messages": out, "users": [], "files": []})

    def users(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The dialog's users in the messenger's shape."""
        chat = self.chat_of(ctx, php_str(_upper(params).get("DIALOG_ID", "")))
        lookup = self.engine.lookup("im.user.get")
        out = []
        for user in chat.users:
            got = lookup.handler(ctx, {"ID": user}).result if lookup is not None else None
            if got is not None:
                out.append(got)
        return MethodResult(out)

    def read(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Read the dialog up to ``MESSAGE_ID`` (all without it)."""
        upper = _upper(params)
        chat = self.chat_of(ctx, php_str(upper.get("DIALOG_ID", "")))
        rows = self.messages_of(chat)
        last = php_intval(upper.get("MESSAGE_ID")) or (rows[-1]["id"] if rows else 0)
        key = (ctx.caller.user_id, chat.ident)
        self.read_up_to[key] = max(self.read_up_to.get(key, 0), last)
        self.marked_unread.discard(key)
        return MethodResult(
            {
                "dialog_id": self.dialog_id(ctx, chat),
                "chat_id": chat.ident,
                "counter": self.counter(ctx, chat),
                "last_id": self.read_up_to[key],
            }
        )

    def unread(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Mark the dialog unread from ``MESSAGE_ID`` on."""
        upper = _upper(params)
        chat = self.chat_of(ctx, php_str(upper.get("DIALOG_ID", "")))
        key = (ctx.caller.user_id, chat.ident)
        self.read_up_to[key] = max(0, php_intval(upper.get("MESSAGE_ID")) - 1)
        return MethodResult(True)

    def read_all(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Read every dialog of the caller."""
        for chat in self.im.chats.values():
            if ctx.caller.user_id in chat.users:
                rows = self.messages_of(chat)
                key = (ctx.caller.user_id, chat.ident)
                self.read_up_to[key] = rows[-1]["id"] if rows else 0
                self.marked_unread.discard(key)
        return MethodResult(True)

    def writing(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """ "The caller is typing" in the dialog: ``true``."""
        self.chat_of(ctx, php_str(_upper(params).get("DIALOG_ID", "")))
        return MethodResult(True)

    # -- im.recent.* ------------------------------------------------------------------------

    def recent_items(self, ctx: CallContext) -> list[dict[str, Any]]:
        """The caller's dialogs by their last message, pinned first; hidden ones left out."""
        me = ctx.caller.user_id
        ranked: list[tuple[tuple[bool, int, int], dict[str, Any]]] = []
        for chat in self.im.chats.values():
            if me not in chat.users:
                continue
            rows = self.messages_of(chat)
            last = rows[-1] if rows else None
            last_id = int(last["id"]) if last is not None else 0
            key = (me, chat.ident)
            if key in self.hidden and self.hidden[key] >= last_id:
                continue
            item = {
                "id": self.dialog_id(ctx, chat),
                "chat_id": chat.ident,
                "type": "user" if chat.type == "PRIVATE" else "chat",
                "title": self.name_of(ctx, chat),
                "message": self.message_out(ctx, last) if last is not None else None,
                "counter": self.counter(ctx, chat),
                "pinned": key in self.pinned,
                "unread": key in self.marked_unread,
                "date_update": last["date"] if last is not None else "",
            }
            ranked.append(((key in self.pinned, last_id, chat.ident), item))
        ranked.sort(key=lambda pair: pair[0], reverse=True)
        return [item for _, item in ranked]

    def recent_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The caller's recent dialogs (a list)."""
        return MethodResult(self.recent_items(ctx))

    def recent_list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The same, paged: ``{"items": [...], "hasMorePages": bool}`` (``OFFSET``, ``LIMIT``)."""
        upper = _upper(params)
        items = self.recent_items(ctx)
        offset = max(0, php_intval(upper.get("OFFSET")))
        limit = min(max(php_intval(upper.get("LIMIT")) or 50, 1), 200)
        page = items[offset : offset + limit]
        return MethodResult({"items": page, "hasMorePages": offset + limit < len(items)})

    def hide(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Hide the dialog from the recent list until its next message."""
        chat = self.chat_of(ctx, php_str(_upper(params).get("DIALOG_ID", "")))
        rows = self.messages_of(chat)
        self.hidden[(ctx.caller.user_id, chat.ident)] = rows[-1]["id"] if rows else 0
        return MethodResult(True)

    def pin(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Pin (``PIN=Y``) or unpin the dialog."""
        upper = _upper(params)
        chat = self.chat_of(ctx, php_str(upper.get("DIALOG_ID", "")))
        key = (ctx.caller.user_id, chat.ident)
        if php_truthy(upper.get("PIN", "Y")) and php_str(upper.get("PIN", "Y")) != "N":
            self.pinned.add(key)
        else:
            self.pinned.discard(key)
        return MethodResult(True)

    def mark_unread(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Mark the dialog unread (``ACTION=Y``) or not."""
        upper = _upper(params)
        chat = self.chat_of(ctx, php_str(upper.get("DIALOG_ID", "")))
        key = (ctx.caller.user_id, chat.ident)
        if php_truthy(upper.get("ACTION", "Y")) and php_str(upper.get("ACTION", "Y")) != "N":
            self.marked_unread.add(key)
        else:
            self.marked_unread.discard(key)
        return MethodResult(True)


def register_im_dialogs(engine: Engine, im: Messenger) -> None:
    """Add ``im.dialog.*`` and ``im.recent.*`` (scope ``im``)."""
    dialogs = _Dialogs(engine, im)
    for name, handler in (
        ("im.dialog.get", dialogs.get),
        ("im.dialog.messages.get", dialogs.messages),
        ("im.dialog.messages.search", dialogs.search),
        ("im.dialog.users.list", dialogs.users),
        ("im.dialog.read", dialogs.read),
        ("im.dialog.unread", dialogs.unread),
        ("im.dialog.read.all", dialogs.read_all),
        ("im.dialog.writing", dialogs.writing),
        ("im.recent.get", dialogs.recent_get),
        ("im.recent.list", dialogs.recent_list),
        ("im.recent.hide", dialogs.hide),
        ("im.recent.pin", dialogs.pin),
        ("im.recent.unread", dialogs.mark_unread),
    ):
        engine.register(name, handler, "im")
