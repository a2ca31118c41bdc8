"""``user.current``, ``user.get``, ``user.search`` and ``department.get``."""

from __future__ import annotations

from typing import Any

from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval, php_str, php_values
from .query import Column, build_order, build_where

__all__ = ["register_users"]

_USER_COLUMNS = {
    "ID": Column('"ID"', "INTEGER"),
    "ACTIVE": Column('"ACTIVE"', "BOOL"),
    "NAME": Column('"NAME"'),
    "LAST_NAME": Column('"LAST_NAME"'),
    "SECOND_NAME": Column('"SECOND_NAME"'),
    "EMAIL": Column('"EMAIL"'),
    "WORK_POSITION": Column('"WORK_POSITION"'),
}
_DEPARTMENT_COLUMNS = {
    "ID": Column('"ID"', "INTEGER"),
    "NAME": Column('"NAME"'),
    "SORT": Column('"SORT"', "INTEGER"),
    "PARENT": Column('"PARENT"', "INTEGER"),
    "UF_HEAD": Column('"UF_HEAD"', "INTEGER"),
}
#: user.search matches these by substring.
_LIKE_FIELDS = {"NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "WORK_POSITION"}
#: Parameters of user.get/user.search that are not filter fields.
_USER_CONTROL = {"SORT", "ORDER", "FILTER", "ADMIN_MODE", "START", "FIND", "USER_TYPE"}


def _user_out(row: dict[str, Any]) -> dict[str, Any]:
    """A user as the docs' ``user.current`` example prints it."""
    return {
        "ID": str(row["ID"]),
        "ACTIVE": bool(row["ACTIVE"]),
        "NAME": row["NAME"] or "",
        "LAST_NAME": row["LAST_NAME"] or "",
        "SECOND_NAME": row["SECOND_NAME"] or "",
        "EMAIL": row["EMAIL"] or "",
        "LAST_LOGIN": row["LAST_LOGIN"] or "",
        "DATE_REGISTER": row["DATE_REGISTER"] or "",
        "IS_ONLINE": "N",
        "TIMESTAMP_X": row["DATE_REGISTER"] or "",
        "LAST_ACTIVITY_DATE": row["LAST_LOGIN"] or "",
        "PERSONAL_GENDER": row["PERSONAL_GENDER"] or "",
        "PERSONAL_BIRTHDAY": "",
        "WORK_POSITION": row["WORK_POSITION"] or "",
        "UF_EMPLOYMENT_DATE": "",
        "UF_DEPARTMENT": list(row["UF_DEPARTMENT"] or []),
    }


def _department_out(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": str(row["ID"]), "NAME": row["NAME"], "SORT": row["SORT"]}
    if row["PARENT"] is not None:
        out["PARENT"] = str(row["PARENT"])
    if row["UF_HEAD"] is not None:
        out["UF_HEAD"] = str(row["UF_HEAD"])
    return out


def _paged(
    ctx: CallContext, table: str, where: str, args: list[Any], order: str, start: int
) -> tuple[list[dict[str, Any]], int, int | None]:
    size = ctx.config.list_page_size
    offset = max(0, (int(start / size)) * size)
    total = ctx.store.count(table, where, args)
    rows = ctx.store.select(table, where, args, order, size, offset)
    nxt = offset + size if offset + size < total else None
    return rows, total, nxt


def _user_where(params: dict[str, Any], like: bool) -> tuple[str, list[Any]]:
    filt: dict[PhpKey, Any] = {}
    nested = params.get("FILTER")
    if isinstance(nested, dict):
        filt.update(nested)
    for key, value in params.items():
        if key not in _USER_CONTROL:
            filt[key] = value
    department = filt.pop("UF_DEPARTMENT", None)
    if like:
        filt = {(f"%{k}" if str(k).upper() in _LIKE_FIELDS else k): v for k, v in filt.items()}
    where, args = build_where(filt, lambda name: _USER_COLUMNS.get(name.upper()))
    if department is not None:
        ids = [php_intval(v) for v in php_values(department)]
        marks = ", ".join("?" * len(ids)) or "NULL"
        where += (
            " AND EXISTS (SELECT 1 FROM json_each(UF_DEPARTMENT) "
            f"WHERE json_each.value IN ({marks}))"
        )
        args.extend(ids)
    find = params.get("FIND")
    if find not in (None, ""):
        pattern = f"%{php_str(find)}%"
        where += " AND (NAME LIKE ? OR LAST_NAME LIKE ? OR EMAIL LIKE ?)"
        args.extend([pattern] * 3)
    return where, args


def _user_order(params: dict[str, Any]) -> str:
    sort = params.get("SORT")
    if isinstance(sort, str) and sort:
        direction = php_str(params.get("ORDER", "ASC"))
        return build_order({sort: direction}, lambda n: _USER_COLUMNS.get(n.upper()))
    return build_order(params.get("ORDER"), lambda n: _USER_COLUMNS.get(n.upper()))


def user_current(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """The caller's own user record."""
    row = ctx.store.fetch_row("users", ctx.caller.user_id)
    if row is None:
        row = dict.fromkeys(_USER_COLUMNS) | {"ID": ctx.caller.user_id, "ACTIVE": 1}
        row.update(dict.fromkeys(("DATE_REGISTER", "LAST_LOGIN", "PERSONAL_GENDER")))
        row["UF_DEPARTMENT"] = []
    return MethodResult(_user_out(row), rows=1)


def _user_list(like: bool) -> Any:
    def handler(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        upper = {str(k).upper(): v for k, v in params.items()}
        where, args = _user_where(upper, like)
        rows, total, nxt = _paged(
            ctx, "users", where, args, _user_order(upper), php_intval(params.get("start"))
        )
        return MethodResult([_user_out(r) for r in rows], next=nxt, total=total, rows=len(rows))

    return handler


def department_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """Departments filtered by ID (scalar or array), NAME, SORT, PARENT, UF_HEAD."""
    upper = {str(k).upper(): v for k, v in params.items()}
    filt = {k: v for k, v in upper.items() if k in _DEPARTMENT_COLUMNS}
    where, args = build_where(filt, lambda name: _DEPARTMENT_COLUMNS.get(name.upper()))
    sort = upper.get("SORT")
    order_in = {php_str(sort): upper.get("ORDER", "ASC")} if isinstance(sort, str) else None
    order = build_order(order_in, lambda n: _DEPARTMENT_COLUMNS.get(n.upper()))
    rows, total, nxt = _paged(
        ctx, "departments", where, args, order, php_intval(params.get("start"))
    )
    return MethodResult([_department_out(r) for r in rows], next=nxt, total=total, rows=len(rows))


def register_users(engine: Engine) -> None:
    """Register the user and department methods."""
    engine.register("user.current", user_current, "user")
    engine.register("user.get", _user_list(like=False), "user")
    engine.register("user.search", _user_list(like=True), "user")
    engine.register("department.get", department_get, "department")
