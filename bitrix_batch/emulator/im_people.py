"""``im.user.*`` and ``im.department.*`` (scope ``im``): people as the messenger shows them.

Built on what the registered ``user.get`` and ``department.get`` answer, so the messenger
always agrees with the user directory: lower-case keys, ids as ints, a user's full name in
``name``; statuses (``online``, ``dnd``, ``away``, ``break``) are kept per user in memory.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval, php_str

__all__ = ["register_im_people"]

_STATUSES = ("online", "dnd", "away", "break")


def _ids(value: Any) -> list[int]:
    """``ID`` as one id or a list of them."""
    values = value.values() if isinstance(value, dict) else [value]
    return [i for i in (php_intval(v) for v in values) if i > 0]


class _People:
    """Statuses per user; everything else is read from the directory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.status: dict[int, str] = {}
        self.idle: dict[int, str] = {}

    def users(self, ctx: CallContext, ids: list[int] | None) -> list[dict[str, Any]]:
        """Directory records of ``ids`` (all users when None)."""
        lookup = self.engine.lookup("user.get")
        if lookup is None:  # pragma: no cover - user.get is always registered
            return []
        params: dict[PhpKey, Any] = {} if ids is None else {"ID": ids, "FILTER": {"ID": ids}}
        found = lookup.handler(ctx, params).result
        return [u for u in found if isinstance(u, dict)] if isinstance(found, list) else []

    def departments(self, ctx: CallContext, ids: list[int]) -> list[dict[str, Any]]:
        """Directory records of the departments ``ids``."""
        lookup = self.engine.lookup("department.get")
        if lookup is None:  # pragma: no cover - department.get is always registered
            return []
        found = lookup.handler(ctx, {"ID": ids}).result
        return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []

    def out(self, user: dict[str, Any]) -> dict[str, Any]:
        """A directory user in the messenger's shape."""
        ident = php_intval(user.get("ID"))
        first, last = php_str(user.get("NAME") or ""), php_str(user.get("LAST_NAME") or "")
        return {
            "id": ident,
            "active": bool(user.get("ACTIVE", True)),
            "name": " ".join(part for part in (first, last) if part),
            "first_name": first,
            "last_name": last,
            "work_position": php_str(user.get("WORK_POSITION") or ""),
            "color": "#df532d",
            "avatar": "",
            "gender": php_str(user.get("PERSONAL_GENDER") or "M") or "M",
            "birthday": "",
            "extranet": False,
            "network": False,
            "bot": False,
            "connector": False,
            "external_auth_id": "default",
            "status": self.status.get(ident, "online"),
            "idle": self.idle.get(ident, False),
            "last_activity_date": php_str(user.get("LAST_ACTIVITY_DATE") or "") or False,
            "mobile_last_date": False,
            "departments": [php_intval(d) for d in user.get("UF_DEPARTMENT") or []],
            "absent": False,
            "phones": False,
        }

    # -- users ------------------------------------------------------------------------------

    def user_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """One user (``ID``, or the caller); ``null`` for an unknown id."""
        upper = {str(k).upper(): v for k, v in params.items()}
        ident = php_intval(upper.get("ID")) or ctx.caller.user_id
        found = self.users(ctx, [ident])
        return MethodResult(self.out(found[0]) if found else None)

    def user_list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Users by ``ID`` (a list), keyed by id; unknown ids map to ``null``."""
        upper = {str(k).upper(): v for k, v in params.items()}
        ids = _ids(upper.get("ID"))
        if not ids:
            raise errors.RestError("INVALID_FORMAT", "A wrong format for the ID field is passed")
        known = {php_intval(u.get("ID")): self.out(u) for u in self.users(ctx, ids)}
        return MethodResult({str(i): known.get(i) for i in ids})

    def status_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The caller's status."""
        return MethodResult(self.status.get(ctx.caller.user_id, "online"))

    def status_set(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Set the caller's ``STATUS`` (one of online, dnd, away, break)."""
        upper = {str(k).upper(): v for k, v in params.items()}
        status = php_str(upper.get("STATUS", "")).lower()
        if status not in _STATUSES:
            raise errors.RestError("STATUS_ERROR", "Status is not valid")
        self.status[ctx.caller.user_id] = status
        return MethodResult(True)

    def idle_start(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Mark the caller idle from now."""
        self.idle[ctx.caller.user_id] = ctx.now_iso()
        return MethodResult(True)

    def idle_end(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """End the caller's idle time."""
        self.idle.pop(ctx.caller.user_id, None)
        return MethodResult(True)

    # -- departments ------------------------------------------------------------------------

    def department_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Departments by ``ID`` (a list): id, name, full name, head."""
        upper = {str(k).upper(): v for k, v in params.items()}
        ids = _ids(upper.get("ID"))
        if not ids:
            raise errors.RestError("INVALID_FORMAT", "A wrong format for the ID field is passed")
        out = [
            {
                "id": php_intval(d.get("ID")),
                "name": php_str(d.get("NAME") or ""),
                "full_name": php_str(d.get("NAME") or ""),
                "manager_user_id": php_intval(d.get("UF_HEAD")),
            }
            for d in self.departments(ctx, ids)
        ]
        return MethodResult(out)

    def members(self, ctx: CallContext, params: dict[PhpKey, Any], heads: bool) -> dict[str, Any]:
        """Per department id: its users' ids (``heads``: only its head)."""
        upper = {str(k).upper(): v for k, v in params.items()}
        ids = _ids(upper.get("ID"))
        if not ids:
            raise errors.RestError("INVALID_FORMAT", "A wrong format for the ID field is passed")
        everyone = self.users(ctx, None)
        out: dict[str, Any] = {}
        for d in self.departments(ctx, ids):
            ident = php_intval(d.get("ID"))
            if heads:
                head = php_intval(d.get("UF_HEAD"))
                out[str(ident)] = [head] if head else []
            else:
                out[str(ident)] = [
                    php_intval(u.get("ID"))
                    for u in everyone
                    if ident in [php_intval(x) for x in u.get("UF_DEPARTMENT") or []]
                ]
        return out

    def employees(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``{"<department id>": [user ids]}``."""
        return MethodResult(self.members(ctx, params, heads=False))

    def managers(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``{"<department id>": [head ids]}``."""
        return MethodResult(self.members(ctx, params, heads=True))

    def colleagues(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Users who share a department with the caller (the caller excluded), as ids."""
        everyone = self.users(ctx, None)
        mine: set[int] = set()
        for u in everyone:
            if php_intval(u.get("ID")) == ctx.caller.user_id:
                mine = {php_intval(x) for x in u.get("UF_DEPARTMENT") or []}
        ids = [
            php_intval(u.get("ID"))
            for u in everyone
            if php_intval(u.get("ID")) != ctx.caller.user_id
            and mine & {php_intval(x) for x in u.get("UF_DEPARTMENT") or []}
        ]
        return MethodResult(ids, total=len(ids))


def register_im_people(engine: Engine) -> None:
    """Add ``im.user.*`` and ``im.department.*`` (scope ``im``)."""
    people = _People(engine)
    for name, handler in (
        ("im.user.get", people.user_get),
        ("im.user.list.get", people.user_list),
        ("im.user.status.get", people.status_get),
        ("im.user.status.set", people.status_set),
        ("im.user.status.idle.start", people.idle_start),
        ("im.user.status.idle.end", people.idle_end),
        ("im.department.get", people.department_get),
        ("im.department.colleagues.list", people.colleagues),
        ("im.department.employees.get", people.employees),
        ("im.department.managers.get", people.managers),
    ):
        engine.register(name, handler, "im")
