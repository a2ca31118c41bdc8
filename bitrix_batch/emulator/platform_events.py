"""Event bindings: ``event.bind``/``event.get``/``event.unbind``/``events`` and the offline queue.

As the server's ``rest/lib/api/event.php`` does it: these are for OAuth applications only (a
webhook gets 403 ``WRONG_AUTH_TYPE``); bindings are kept per application and, for users who
are not admins, per user. No event is ever queued here, so the offline queue stays empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .engine import CallContext, Caller, Engine, MethodResult
from .php import PhpKey, php_intval, php_str, php_truthy

__all__ = ["EVENTS", "access_denied", "null_argument", "register_events"]

#: Events a handler can be bound to, by scope (names as the server lists them: upper case).
EVENTS: dict[str | None, tuple[str, ...]] = {
    None: (
        "ONAPPUNINSTALL",
        "ONAPPINSTALL",
        "ONAPPUPDATE",
        "ONAPPPAYMENT",
        "ONSUBSCRIPTIONRENEW",
        "ONAPPTEST",
        "ONAPPMETHODCONFIRM",
        "ONOFFLINEEVENT",
    ),
    "crm": tuple(
        f"ONCRM{entity}{action}"
        for entity in ("LEAD", "DEAL", "CONTACT", "COMPANY")
        for action in ("ADD", "UPDATE", "DELETE")
    ),
    "user": ("ONUSERADD",),
    "task": ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"),
}
#: The server refuses offline bindings for these (``disableOffline``).
_ONLINE_ONLY = frozenset({"ONOFFLINEEVENT"})
#: The portal's first user administers it.
_ADMIN_ID = 1


def _wrong_auth_type() -> errors.RestError:
    return errors.RestError(
        "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403
    )


def access_denied(detail: str) -> errors.RestError:
    """403 ``ACCESS_DENIED`` with the server's "Access denied!" prefix."""
    return errors.RestError("ACCESS_DENIED", f"Access denied! {detail}", 403)


def _argument(message: str, name: str) -> errors.RestError:
    return errors.RestError("ERROR_ARGUMENT", message, 400, {"argument": name})


def null_argument(name: str) -> errors.RestError:
    """400 ``ERROR_ARGUMENT`` for a missing or empty parameter."""
    return _argument(f"Argument '{name}' is null or empty", name)


@dataclass(frozen=True)
class _Binding:
    event: str
    handler: str  # "" for an offline binding
    user_id: int  # 0 = on behalf of whoever triggers the event
    connector_id: str = ""


@dataclass
class _Events:
    """Bindings per OAuth application (its operating-limit credential)."""

    scopes_of: Callable[[Caller], list[str]]
    bindings: dict[str, list[_Binding]] = field(default_factory=dict)

    def event_scopes(self, caller: Caller, params: dict[str, Any]) -> list[str | None]:
        """The scopes ``events``/``event.bind`` look at: asked for, all, or the caller's."""
        if "SCOPE" in params:
            wanted = php_str(params["SCOPE"])
            if wanted != "":
                return [wanted]
            return [None]
        if php_truthy(params.get("FULL")):
            return list(EVENTS)
        return [*self.scopes_of(caller), None]

    def events(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Names of the events the application can bind to."""
        if ctx.caller.kind != "oauth":
            raise _wrong_auth_type()
        upper = {str(k).upper(): v for k, v in params.items()}
        names: list[str] = []
        for scope in self.event_scopes(ctx.caller, upper):
            names.extend(EVENTS.get(scope, ()))
        return MethodResult(names)

    def event_bind(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Bind a handler URL (or an offline queue) to an event."""
        caller = ctx.caller
        if caller.kind != "oauth":
            raise _wrong_auth_type()
        upper = {str(k).upper(): v for k, v in params.items()}
        event = php_str(upper.get("EVENT", "")).upper()
        kind = _event_type(upper)
        handler = php_str(upper.get("HANDLER", ""))
        admin = caller.user_id == _ADMIN_ID
        user_id = php_intval(upper.get("AUTH_TYPE"))
        if user_id > 0:
            if not admin and user_id != caller.user_id:
                raise access_denied(
                    "Event binding with AUTH_TYPE requires administrator access rights"
                )
        elif not admin:
            user_id = caller.user_id
        if event == "":
            raise null_argument("EVENT")
        if kind == "offline":
            if not admin:
                raise access_denied("Offline events binding requires administrator access rights")
            handler, user_id = "", 0
        elif handler == "":
            raise null_argument("HANDLER")
        scopes = [*self.scopes_of(caller), None]
        if not any(event in EVENTS.get(scope, ()) for scope in scopes):
            raise errors.RestError("ERROR_EVENT_NOT_FOUND", "Event not found")
        if handler == "" and event in _ONLINE_ONLY:
            raise errors.RestError(
                "ERROR_ARGUMENT", "Offline event cannot be registered for this event."
            )
        binding = _Binding(event, handler, user_id)
        bound = self.bindings.setdefault(caller.credential, [])
        if binding in bound:
            # The table's unique key refuses the same binding twice.
            raise errors.RestError(
                "ERROR_CORE", "Unable to set event handler: Handler already binded"
            )
        bound.append(binding)
        return MethodResult(True)

    def event_unbind(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Remove matching bindings; ``{"count": n}``."""
        caller = ctx.caller
        if caller.kind != "oauth":
            raise _wrong_auth_type()
        upper = {str(k).upper(): v for k, v in params.items()}
        event = php_str(upper.get("EVENT", "")).upper()
        kind = _event_type(upper)
        handler = php_str(upper.get("HANDLER", ""))
        admin = caller.user_id == _ADMIN_ID
        if event == "":
            raise null_argument("EVENT")
        user_id: int | None = None
        if kind == "offline":
            if not admin:
                raise access_denied("Offline events unbinding requires administrator access rights")
            handler = ""
        elif handler == "":
            raise null_argument("HANDLER")
        elif "AUTH_TYPE" in upper:
            user_id = php_intval(upper["AUTH_TYPE"])
            if not admin and user_id != caller.user_id:
                raise access_denied(
                    "Event unbinding with AUTH_TYPE requires administrator access rights"
                )
        elif not admin:
            user_id = caller.user_id
        bound = self.bindings.get(caller.credential, [])
        keep = [
            b
            for b in bound
            if not (
                b.event == event
                and b.handler == handler
                and (user_id is None or b.user_id == user_id)
            )
        ]
        self.bindings[caller.credential] = keep
        return MethodResult({"count": len(bound) - len(keep)})

    def event_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The application's bindings (a non-admin sees only their own)."""
        caller = ctx.caller
        if caller.kind != "oauth":
            raise _wrong_auth_type()
        admin = caller.user_id == _ADMIN_ID
        out: list[dict[str, Any]] = []
        for b in self.bindings.get(caller.credential, []):
            if not admin and b.user_id != caller.user_id:
                continue
            if b.handler:
                out.append(
                    {
                        "event": b.event,
                        "handler": b.handler,
                        "auth_type": str(b.user_id),
                        "offline": 0,
                    }
                )
            else:
                out.append({"event": b.event, "connector_id": b.connector_id, "offline": 1})
        return MethodResult(out)

    # -- the offline queue: events are never queued here, so it is always empty --------------

    def offline_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``{"process_id": .., "events": []}`` (admin, application only)."""
        _offline_caller(ctx)
        return MethodResult({"process_id": f"{ctx.caller.user_id:x}{id(self):x}", "events": []})

    def offline_list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The queued offline events: none."""
        _offline_caller(ctx)
        return MethodResult([], total=0)

    def offline_done(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``event.offline.clear`` / ``event.offline.error``: ``true``."""
        _offline_caller(ctx)
        return MethodResult(True)


def _offline_caller(ctx: CallContext) -> None:
    if ctx.caller.kind != "oauth":
        raise _wrong_auth_type()
    if ctx.caller.user_id != _ADMIN_ID:
        raise errors.RestError("ACCESS_DENIED", "Access denied!", 403)


def _event_type(upper: dict[str, Any]) -> str:
    kind = php_str(upper.get("EVENT_TYPE", "")).lower()
    if kind == "":
        return "online"
    if kind not in ("online", "offline"):
        raise _argument("Value must be one of {online|offline}", "EVENT_TYPE")
    return kind


def register_events(engine: Engine, scopes_of: Callable[[Caller], list[str]]) -> None:
    """Add the event methods (global scope); ``scopes_of`` lists a caller's scopes."""
    events = _Events(scopes_of)
    for name, handler in (
        ("events", events.events),
        ("event.bind", events.event_bind),
        ("event.unbind", events.event_unbind),
        ("event.get", events.event_get),
        ("event.offline.get", events.offline_get),
        ("event.offline.list", events.offline_list),
        ("event.offline.clear", events.offline_done),
        ("event.offline.error", events.offline_done),
    ):
        engine.register(name, handler, None)
