"""``user.current``, ``user.get``, ``user.search``, ``user.add``, ``user.update``,
``user.fields``, ``user.userfield.*`` and ``department.get/add/update/delete/fields``.

Filters take field names with the usual operator prefixes, at the top level or under
``FILTER``; ``FIND`` (full text: every word must match a name, e-mail, position, profession
or phone) and ``NAME_SEARCH`` (every word a prefix of a name part or the e-mail) work in both
places. ``user.search`` matches plain fields by substring.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .crm_userfields import UserFields
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval, php_str, php_values
from .query import Column, build_order, build_where
from .store import USER_COLUMNS

__all__ = ["register_users"]

_TEXT_COLUMNS = [name for name, kind in USER_COLUMNS if kind == "TEXT" and name != "UF_DEPARTMENT"]
_USER_COLUMNS = {
    "ID": Column('"ID"', "INTEGER"),
    "ACTIVE": Column('"ACTIVE"', "BOOL"),
    **{name: Column(f'"{name}"') for name in _TEXT_COLUMNS},
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
#: What FIND and NAME_SEARCH look at.
_FIND_COLUMNS = (
    "NAME",
    "LAST_NAME",
    "SECOND_NAME",
    "EMAIL",
    "WORK_POSITION",
    "PERSONAL_PROFESSION",
    "PERSONAL_PHONE",
    "PERSONAL_MOBILE",
    "WORK_PHONE",
)
_NAME_COLUMNS = ("NAME", "LAST_NAME", "SECOND_NAME", "EMAIL")
#: Parameters of user.get/user.search that are not filter fields.
_USER_CONTROL = {
    "SORT",
    "ORDER",
    "FILTER",
    "ADMIN_MODE",
    "START",
    "FIND",
    "USER_TYPE",
    "NAME_SEARCH",
}
#: Writable through user.add / user.update.
_WRITABLE = {name for name, _ in USER_COLUMNS} - {"ID", "DATE_REGISTER", "LAST_LOGIN"}
#: ``user.fields``: name -> title, as portals list them.
_FIELD_TITLES = {
    "ID": "ID",
    "XML_ID": "External ID",
    "ACTIVE": "Active",
    "NAME": "First name",
    "LAST_NAME": "Last name",
    "SECOND_NAME": "Second name",
    "TITLE": "User list",
    "EMAIL": "E-Mail",
    "LAST_LOGIN": "Last login",
    "DATE_REGISTER": "Date registered",
    "TIME_ZONE": "TIME_ZONE",
    "IS_ONLINE": "IS_ONLINE",
    "TIME_ZONE_OFFSET": "TIME_ZONE_OFFSET",
    "TIMESTAMP_X": "TIMESTAMP_X",
    "LAST_ACTIVITY_DATE": "LAST_ACTIVITY_DATE",
    "PERSONAL_GENDER": "Gender",
    "PERSONAL_PROFESSION": "Profession",
    "PERSONAL_WWW": "Home page",
    "PERSONAL_BIRTHDAY": "Date of birth",
    "PERSONAL_PHOTO": "Photo",
    "PERSONAL_ICQ": "ICQ",
    "PERSONAL_PHONE": "Personal phone",
    "PERSONAL_FAX": "Fax",
    "PERSONAL_MOBILE": "Personal mobile",
    "PERSONAL_PAGER": "Pager",
    "PERSONAL_STREET": "Street",
    "PERSONAL_CITY": "City",
    "PERSONAL_STATE": "State / Province",
    "PERSONAL_ZIP": "Zip",
    "PERSONAL_COUNTRY": "Country",
    "PERSONAL_MAILBOX": "Mailbox",
    "PERSONAL_NOTES": "Notes",
    "WORK_PHONE": "Company phone",
    "WORK_COMPANY": "Company",
    "WORK_POSITION": "Position",
    "WORK_DEPARTMENT": "Department",
    "WORK_WWW": "Company website",
    "WORK_FAX": "WORK_FAX",
    "WORK_PAGER": "WORK_PAGER",
    "WORK_STREET": "WORK_STREET",
    "WORK_MAILBOX": "WORK_MAILBOX",
    "WORK_CITY": "Company city",
    "WORK_STATE": "WORK_STATE",
    "WORK_ZIP": "WORK_ZIP",
    "WORK_COUNTRY": "WORK_COUNTRY",
    "WORK_PROFILE": "WORK_PROFILE",
    "WORK_LOGO": "WORK_LOGO",
    "WORK_NOTES": "WORK_NOTES",
    "UF_SKYPE_LINK": "Skype chat link",
    "UF_ZOOM": "Zoom",
    "UF_EMPLOYMENT_DATE": "Employment date",
    "UF_TIMEMAN": "Time tracking",
    "UF_DEPARTMENT": "Departments",
    "UF_INTERESTS": "Interests",
    "UF_SKILLS": "Skills",
    "UF_WEB_SITES": "Other websites",
    "UF_XING": "Xing",
    "UF_LINKEDIN": "LinkedIn",
    "UF_FACEBOOK": "Facebook",
    "UF_TWITTER": "Twitter",
    "UF_SKYPE": "Skype",
    "UF_DISTRICT": "District",
    "UF_PHONE_INNER": "Extension number",
    "USER_TYPE": "USER_TYPE",
}


def _user_out(row: dict[str, Any]) -> dict[str, Any]:
    """A user as portals print one (the keys of a real ``user.current``/``user.get``)."""

    def text(name: str) -> str:
        return php_str(row.get(name) or "")

    return {
        "ID": str(row["ID"]),
        "XML_ID": text("XML_ID"),
        "ACTIVE": bool(row["ACTIVE"]),
        "NAME": text("NAME"),
        "LAST_NAME": text("LAST_NAME"),
        "SECOND_NAME": text("SECOND_NAME"),
        "EMAIL": text("EMAIL"),
        "LAST_LOGIN": text("LAST_LOGIN"),
        "DATE_REGISTER": text("DATE_REGISTER"),
        "TIME_ZONE": text("TIME_ZONE"),
        "IS_ONLINE": "N",
        "TIME_ZONE_OFFSET": "0",
        "TIMESTAMP_X": text("DATE_REGISTER"),
        "LAST_ACTIVITY_DATE": text("LAST_LOGIN"),
        "PERSONAL_GENDER": text("PERSONAL_GENDER"),
        "PERSONAL_PROFESSION": text("PERSONAL_PROFESSION"),
        "PERSONAL_BIRTHDAY": text("PERSONAL_BIRTHDAY"),
        "PERSONAL_PHONE": text("PERSONAL_PHONE"),
        "PERSONAL_MOBILE": text("PERSONAL_MOBILE"),
        "PERSONAL_CITY": text("PERSONAL_CITY"),
        "WORK_PHONE": text("WORK_PHONE"),
        "WORK_COMPANY": text("WORK_COMPANY"),
        "WORK_POSITION": text("WORK_POSITION"),
        "UF_EMPLOYMENT_DATE": text("UF_EMPLOYMENT_DATE"),
        "UF_PHONE_INNER": text("UF_PHONE_INNER"),
        "UF_DEPARTMENT": list(row["UF_DEPARTMENT"] or []),
        "USER_TYPE": text("USER_TYPE") or "employee",
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
    # Integers, not a float (it loses a huge start's digits); SQLite takes offsets < 2**63.
    pages = abs(start) // size
    offset = min(max(0, (pages if start >= 0 else -pages) * size), 2**63 - 1)
    total = ctx.store.count(table, where, args)
    rows = ctx.store.select(table, where, args, order, size, offset)
    nxt = offset + size if offset + size < total else None
    return rows, total, nxt


def _words_clause(text: Any, columns: tuple[str, ...], prefix: bool, args: list[Any]) -> str:
    """Every word must match one of ``columns`` (as a prefix or anywhere)."""
    clauses = []
    for word in php_str(text).split():
        pattern = ("" if prefix else "%") + word.replace("%", "").replace("_", "") + "%"
        clauses.append("(" + " OR ".join(f'"{c}" LIKE ?' for c in columns) + ")")
        args.extend([pattern] * len(columns))
    return " AND ".join(clauses) or "1"


def _user_where(params: dict[str, Any], like: bool) -> tuple[str, list[Any]]:
    filt: dict[PhpKey, Any] = {}
    nested = params.get("FILTER")
    if isinstance(nested, dict):
        filt.update({str(k).upper(): v for k, v in nested.items()})
    for key, value in params.items():
        if key not in _USER_CONTROL:
            filt[key] = value
    department = filt.pop("UF_DEPARTMENT", None)
    find = filt.pop("FIND", None)
    if find in (None, ""):
        find = params.get("FIND")
    name_search = filt.pop("NAME_SEARCH", None)
    if name_search in (None, ""):
        name_search = params.get("NAME_SEARCH")
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
    if find not in (None, ""):
        where += " AND " + _words_clause(find, _FIND_COLUMNS, False, args)
    if name_search not in (None, ""):
        where += " AND " + _words_clause(name_search, _NAME_COLUMNS, True, args)
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
        row = dict.fromkeys(n for n, _ in USER_COLUMNS) | {"ID": ctx.caller.user_id, "ACTIVE": 1}
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


def _user_values(fields: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in fields.items():
        name = key.upper()
        if name not in _WRITABLE:
            continue
        if name == "UF_DEPARTMENT":
            values = php_values(value) if isinstance(value, dict | list) else [value]
            row[name] = [php_intval(v) for v in values if php_intval(v) > 0]
        elif name == "ACTIVE":
            row[name] = 1 if php_str(value).upper() in ("Y", "1", "TRUE") else 0
        else:
            row[name] = php_str(value)
    return row


def user_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``user.add`` (an invitation on portals): EMAIL required and unique; the new ID."""
    upper = {str(k).upper(): v for k, v in params.items()}
    fields = upper.get("FIELDS") if isinstance(upper.get("FIELDS"), dict) else upper
    assert isinstance(fields, dict)
    row = _user_values({str(k): v for k, v in fields.items()})
    email = php_str(row.get("EMAIL", ""))
    if not email:
        raise errors.RestError("ERROR_CORE", "Email is not specified")
    if ctx.store.count("users", '"EMAIL" = ?', [email]):
        raise errors.RestError("ERROR_CORE", "User with this email address already exists")
    stamp = ctx.now_iso()
    row = {"ACTIVE": 1, "UF_DEPARTMENT": [1], **row, "DATE_REGISTER": stamp}
    return MethodResult(ctx.store.insert_row("users", row), rows=1)


def user_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``user.update?ID=n&fields…`` (fields at the top level work too)."""
    upper = {str(k).upper(): v for k, v in params.items()}
    ident = php_intval(upper.get("ID"))
    if ident <= 0 or ctx.store.fetch_row("users", ident) is None:
        raise errors.RestError("ERROR_CORE", "User not found")
    fields = upper.get("FIELDS") if isinstance(upper.get("FIELDS"), dict) else upper
    assert isinstance(fields, dict)
    ctx.store.update_row("users", ident, _user_values({str(k): v for k, v in fields.items()}))
    return MethodResult(True, rows=1)


def user_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``user.fields``: field name -> title."""
    return MethodResult(dict(_FIELD_TITLES))


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


def _department_values(params: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if "NAME" in params:
        row["NAME"] = php_str(params["NAME"])
    for name in ("SORT", "PARENT", "UF_HEAD"):
        if name in params:
            row[name] = php_intval(params[name]) or None
    return row


def department_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``department.add?NAME=&PARENT=``: the new ID (NAME required)."""
    upper = {str(k).upper(): v for k, v in params.items()}
    row = _department_values(upper)
    if not row.get("NAME"):
        raise errors.RestError("ERROR_CORE", "Department name is not specified")
    row.setdefault("SORT", 500)
    return MethodResult(ctx.store.insert_row("departments", row), rows=1)


def department_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``department.update?ID=``: true."""
    upper = {str(k).upper(): v for k, v in params.items()}
    ident = php_intval(upper.get("ID"))
    if ident <= 0 or not ctx.store.update_row("departments", ident, _department_values(upper)):
        raise errors.RestError("ERROR_CORE", "Department not found")
    return MethodResult(True, rows=1)


def department_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``department.delete?ID=``: true."""
    ident = php_intval({str(k).upper(): v for k, v in params.items()}.get("ID"))
    if ident <= 0 or not ctx.store.delete_row("departments", ident):
        raise errors.RestError("ERROR_CORE", "Department not found")
    return MethodResult(True, rows=1)


def department_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``department.fields``: field name -> title."""
    return MethodResult(
        {
            "ID": "ID",
            "NAME": "Name",
            "SORT": "Sort",
            "PARENT": "Parent department",
            "UF_HEAD": "Supervisor",
        }
    )


def register_users(engine: Engine) -> None:
    """Register the user and department methods."""
    engine.register("user.current", user_current, "user")
    engine.register("user.get", _user_list(like=False), "user")
    engine.register("user.search", _user_list(like=True), "user")
    engine.register("user.add", user_add, "user")
    engine.register("user.update", user_update, "user")
    engine.register("user.fields", user_fields, "user")
    engine.register("department.get", department_get, "department")
    engine.register("department.add", department_add, "department")
    engine.register("department.update", department_update, "department")
    engine.register("department.delete", department_delete, "department")
    engine.register("department.fields", department_fields, "department")
    fields = UserFields("USER", "UF_USR_")
    for action in ("add", "get", "update", "delete", "list"):
        engine.register(f"user.userfield.{action}", getattr(fields, action), "user")
