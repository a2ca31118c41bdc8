"""Smart processes: ``crm.type.add/get/list/update/delete/fields`` and their item tables.

Once a type exists, ``crm.item.*`` with its ``entityTypeId`` works on a table of its own
(made on ``crm.type.add``, kept after ``delete`` but unreachable); before that, and after
``crm.type.delete``, the item methods answer ``NOT_FOUND`` / ``SPA not found``.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .entities import Entity, field_entry, parse_fields
from .php import PhpKey, php_intval, php_shape, php_str
from .query import Column, build_order, build_where
from .store import Store

__all__ = ["dynamic_entity", "register_types"]

_TABLE = "crm_type"
#: Allocated ids of new types start here (newer portals; older ones used 128-191).
_FIRST_TYPE_ID = 1030

_ITEM_FIELDS = parse_fields(
    """
ID integer O ID
XML_ID string - External code
TITLE string - Name
CREATED_BY_ID user O Created by
MODIFY_BY_ID user O Updated by
MOVED_BY_ID user O Moved by
DATE_CREATE datetime O Created on
DATE_MODIFY datetime O Updated on
MOVED_TIME datetime O Moved on
CATEGORY_ID crm_category I Pipeline
OPENED char - Available to everyone
STAGE_ID crm_status - Stage
PREVIOUS_STAGE_ID crm_status O Previous stage
BEGINDATE date - Start date
CLOSEDATE date - End date
COMPANY_ID crm_company>4 - Company
CONTACT_ID crm_contact X Contact
OPPORTUNITY double - Amount
IS_MANUAL_OPPORTUNITY char - Manual amount
TAX_VALUE double - Tax
CURRENCY_ID crm_currency - Currency
MYCOMPANY_ID crm_company - My company
SOURCE_ID crm_status:SOURCE - Source
SOURCE_DESCRIPTION string - Source information
ASSIGNED_BY_ID user - Responsible person
LAST_ACTIVITY_TIME datetime O Last activity
LAST_ACTIVITY_BY user O Last activity by
"""
)
_FLAGS = (
    "isCategoriesEnabled",
    "isStagesEnabled",
    "isBeginCloseDatesEnabled",
    "isClientEnabled",
    "isUseInUserfieldEnabled",
    "isLinkWithProductsEnabled",
    "isMycompanyEnabled",
    "isDocumentsEnabled",
    "isSourceEnabled",
    "isObserversEnabled",
    "isRecyclebinEnabled",
    "isAutomationEnabled",
    "isBizProcEnabled",
    "isSetOpenPermissions",
    "isPaymentsEnabled",
    "isCountersEnabled",
)
_COLUMNS = {
    "id": Column('"ID"', "INTEGER"),
    "entityTypeId": Column('"ENTITY_TYPE_ID"', "INTEGER"),
    "title": Column("json_extract(DATA, '$.title')"),
    "code": Column("json_extract(DATA, '$.code')"),
}


def _entity(type_id: int) -> Entity:
    return Entity(
        f"dynamic_{type_id}",
        type_id,
        _ITEM_FIELDS,
        (
            ("XML_ID", ""),
            ("OPENED", "N"),
            ("CATEGORY_ID", 0),
            ("STAGE_ID", "NEW"),
            ("OPPORTUNITY", 0.0),
            ("IS_MANUAL_OPPORTUNITY", "N"),
            ("TAX_VALUE", 0.0),
            ("CURRENCY_ID", "RUB"),
        ),
        stage_field="STAGE_ID",
        uf_entity=f"CRM_{type_id}",
        table_name=f"crm_dynamic_{type_id}",
    )


def dynamic_entity(store: Store, type_id: int) -> Entity | None:
    """The item entity of an existing smart-process type, or None."""
    key = f"type:{type_id}"
    if key not in store.cache:
        rows = store.select(_TABLE, '"ENTITY_TYPE_ID" = ?', [type_id])
        entity = None
        if rows:
            entity = _entity(type_id)
            store.create_entity_table(entity)
        store.cache[key] = entity
    return store.cache[key]  # type: ignore[no-any-return]


def _out(row: dict[str, Any]) -> dict[str, Any]:
    data = dict(row["DATA"] or {})
    return {
        "id": int(row["ID"]),
        "title": data.get("title", ""),
        "code": data.get("code", ""),
        "createdBy": data.get("createdBy"),
        "entityTypeId": int(row["ENTITY_TYPE_ID"]),
        "customSectionId": data.get("customSectionId"),
        **{flag: data.get(flag, "N") for flag in _FLAGS},
        "createdTime": data.get("createdTime"),
        "updatedTime": data.get("updatedTime"),
        "updatedBy": data.get("updatedBy"),
    }


def _fields(params: dict[PhpKey, Any]) -> dict[str, Any]:
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise errors.RestError("100", "Could not find value for parameter {fields}")
    shaped = php_shape(fields)
    return shaped if isinstance(shaped, dict) else {}


def _apply(data: dict[str, Any], fields: dict[str, Any]) -> None:
    if "title" in fields:
        data["title"] = php_str(fields["title"])
    if "code" in fields:
        data["code"] = php_str(fields["code"])
    for flag in _FLAGS:
        if flag in fields:
            data[flag] = "Y" if php_str(fields[flag]).upper() in ("Y", "1", "TRUE") else "N"


def _find(ctx: CallContext, params: dict[PhpKey, Any]) -> dict[str, Any]:
    row = ctx.store.fetch_row(_TABLE, php_intval(params.get("id")))
    if row is None:
        raise errors.RestError("0", "SPA not found")
    return row


def _forget(ctx: CallContext, type_id: int) -> None:
    ctx.store.cache.pop(f"type:{type_id}", None)


def type_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """A new type; items of its ``entityTypeId`` work from now on."""
    fields = _fields(params)
    title = php_str(fields.get("title", ""))
    if not title:
        raise errors.RestError("", "The field Title is required.")
    type_id = php_intval(fields.get("entityTypeId"))
    taken = {int(r["ENTITY_TYPE_ID"]) for r in ctx.store.select(_TABLE)}
    if type_id:
        if not (128 <= type_id < 192 or type_id >= 1030) or type_id in taken:
            raise errors.RestError("INVALID_ARG_VALUE", "entityTypeId is out of allowed range")
    else:
        type_id = max([_FIRST_TYPE_ID - 1, *taken]) + 1
    stamp = ctx.now_iso()
    data: dict[str, Any] = {
        "createdBy": ctx.caller.user_id,
        "updatedBy": ctx.caller.user_id,
        "createdTime": stamp,
        "updatedTime": stamp,
        "customSectionId": None,
        "code": "",
    }
    _apply(data, fields)
    ident = ctx.store.insert_row(_TABLE, {"ENTITY_TYPE_ID": type_id, "DATA": data})
    _forget(ctx, type_id)
    row = ctx.store.fetch_row(_TABLE, ident)
    assert row is not None
    return MethodResult({"type": _out(row)}, rows=1)


def type_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """One type by its ``id`` (not its entityTypeId)."""
    return MethodResult({"type": _out(_find(ctx, params))}, rows=1)


def type_get_by_entity_type_id(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """One type by ``entityTypeId``."""
    type_id = php_intval(params.get("entityTypeId"))
    rows = ctx.store.select(_TABLE, '"ENTITY_TYPE_ID" = ?', [type_id])
    if not rows:
        raise errors.RestError("0", "SPA not found")
    return MethodResult({"type": _out(rows[0])}, rows=1)


def type_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """Change a type's title, code or flags."""
    row = _find(ctx, params)
    data = dict(row["DATA"] or {})
    _apply(data, _fields(params))
    data.update({"updatedBy": ctx.caller.user_id, "updatedTime": ctx.now_iso()})
    ctx.store.update_row(_TABLE, int(row["ID"]), {"DATA": data})
    fresh = ctx.store.fetch_row(_TABLE, int(row["ID"]))
    assert fresh is not None
    return MethodResult({"type": _out(fresh)}, rows=1)


def type_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """Remove a type; its items become unreachable."""
    row = _find(ctx, params)
    ctx.store.delete_row(_TABLE, int(row["ID"]))
    _forget(ctx, int(row["ENTITY_TYPE_ID"]))
    return MethodResult([], rows=1)


def _check_filter(filter_: Any) -> None:
    """Controller methods refuse a filter on a field they do not know (unlike legacy ones)."""
    if not isinstance(filter_, dict):
        return
    for key in filter_:
        name = str(key).lstrip("=!<>@%?")
        if name.upper() == "LOGIC" or name.isdigit() or isinstance(filter_[key], dict):
            continue
        if name not in _COLUMNS:
            raise errors.RestError("INVALID_ARG_VALUE", f"Unknown field {name} in filter")


def type_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """Types, filtered and ordered by ``id``/``entityTypeId``/``title``, 50 a page."""
    _check_filter(params.get("filter"))
    where, args = build_where(params.get("filter"), _COLUMNS.get)
    order = build_order(params.get("order"), _COLUMNS.get)
    start = max(0, php_intval(params.get("start", 0)))
    size = ctx.config.list_page_size
    rows = ctx.store.select(_TABLE, where, args, order, size, start)
    total = ctx.store.count(_TABLE, where, args)
    nxt = start + size if start + size < total else None
    return MethodResult({"types": [_out(r) for r in rows]}, next=nxt, total=total, rows=len(rows))


def type_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """The fields of a type record."""

    def entry(kind: str, title: str, read_only: bool = False) -> dict[str, Any]:
        return field_entry(kind, title, required=title == "Title", read_only=read_only)

    described = {
        "id": entry("integer", "ID", True),
        "title": entry("string", "Title"),
        "code": entry("string", "Code"),
        "createdBy": entry("user", "Created by", True),
        "entityTypeId": entry("integer", "Entity type ID"),
        "customSectionId": entry("integer", "Custom section"),
        **{flag: entry("boolean", flag) for flag in _FLAGS},
        "createdTime": entry("datetime", "Created on", True),
        "updatedTime": entry("datetime", "Updated on", True),
        "updatedBy": entry("user", "Updated by", True),
    }
    return MethodResult({"fields": described})


def register_types(engine: Engine) -> None:
    """Register ``crm.type.*``."""
    engine.register("crm.type.add", type_add, "crm")
    engine.register("crm.type.get", type_get, "crm")
    engine.register("crm.type.getByEntityTypeId", type_get_by_entity_type_id, "crm")
    engine.register("crm.type.update", type_update, "crm")
    engine.register("crm.type.delete", type_delete, "crm")
    engine.register("crm.type.list", type_list, "crm")
    engine.register("crm.type.fields", type_fields, "crm")
