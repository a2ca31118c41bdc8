"""Dictionaries: ``crm.status.*``, ``crm.category.*``, ``crm.dealcategory.*``, ``crm.enum.*``.

Statuses live in a table seeded on first use with the stock sets a new portal has (lead
stages, deal stages, sources, contact/company types, industries, ...); a new deal pipeline
gets its own ``DEAL_STAGE_<n>`` set with ``C<n>:`` prefixes. The enums are constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import errors
from .crm_types import dynamic_entity
from .engine import CallContext, Engine, MethodResult
from .entities import field_entry
from .php import PhpKey, php_intval, php_str
from .query import Column, build_order, build_where

__all__ = ["register_dictionaries"]

_STATUS = "crm_status"
_CATEGORY = "crm_category"
_STAGE_COLORS = ("#39A8EF", "#2FC6F6", "#55D0E0", "#47E4C2", "#FFA900", "#7BD500", "#FF5752")

#: (ENTITY_ID, name, stage entity type id or None, [(STATUS_ID, NAME), ...])
_STOCK: tuple[tuple[str, str, int | None, tuple[tuple[str, str], ...]], ...] = (
    (
        "STATUS",
        "Lead stages",
        1,
        (
            ("NEW", "Unassigned"),
            ("IN_PROCESS", "In progress"),
            ("PROCESSED", "Processed"),
            ("CONVERTED", "Good lead"),
            ("JUNK", "Junk lead"),
        ),
    ),
    (
        "SOURCE",
        "Sources",
        None,
        (
            ("CALL", "Call"),
            ("EMAIL", "E-Mail"),
            ("WEB", "Website"),
            ("ADVERTISING", "Advertising"),
            ("PARTNER", "Existing client"),
            ("RECOMMENDATION", "By recommendation"),
            ("TRADE_SHOW", "Show/Exhibition"),
            ("WEBFORM", "CRM form"),
            ("CALLBACK", "Callback"),
            ("RC_GENERATOR", "Sales boost"),
            ("STORE", "Online store"),
            ("OTHER", "Other"),
        ),
    ),
    (
        "CONTACT_TYPE",
        "Contact type",
        None,
        (
            ("CLIENT", "Clients"),
            ("SUPPLIER", "Suppliers"),
            ("PARTNER", "Partners"),
            ("OTHER", "Other"),
        ),
    ),
    (
        "COMPANY_TYPE",
        "Company type",
        None,
        (
            ("CUSTOMER", "Client"),
            ("SUPPLIER", "Supplier"),
            ("COMPETITOR", "Competitor"),
            ("PARTNER", "Partner"),
            ("OTHER", "Other"),
        ),
    ),
    (
        "EMPLOYEES",
        "Employees",
        None,
        (
            ("EMPLOYEES_1", "fewer than 50"),
            ("EMPLOYEES_2", "50-250"),
            ("EMPLOYEES_3", "250-500"),
            ("EMPLOYEES_4", "over 500"),
        ),
    ),
    (
        "INDUSTRY",
        "Industry",
        None,
        (
            ("IT", "Information Technology"),
            ("TELECOM", "Telecommunication"),
            ("MANUFACTURING", "Manufacturing"),
            ("BANKING", "Banking Services"),
            ("CONSULTING", "Consulting"),
            ("FINANCE", "Finance"),
            ("GOVERNMENT", "Government"),
            ("DELIVERY", "Delivery"),
            ("ENTERTAINMENT", "Entertainment"),
            ("NOTPROFIT", "Non-profit"),
            ("OTHER", "Other"),
        ),
    ),
    (
        "DEAL_TYPE",
        "Deal type",
        None,
        (
            ("SALE", "Sales"),
            ("COMPLEX", "Complex sale"),
            ("GOODS", "Merchandise sales"),
            ("SERVICES", "Services sale"),
            ("SERVICE", "After-sales service"),
        ),
    ),
    (
        "DEAL_STAGE",
        "Deal stages",
        2,
        (
            ("NEW", "New"),
            ("PREPARATION", "Document creation"),
            ("PREPAYMENT_INVOICE", "Invoice"),
            ("EXECUTING", "In progress"),
            ("FINAL_INVOICE", "Final invoice"),
            ("WON", "Deal won"),
            ("LOSE", "Deal lost"),
            ("APOLOGY", "Analyze failure"),
        ),
    ),
    (
        "QUOTE_STATUS",
        "Quote stages",
        None,
        (
            ("DRAFT", "New"),
            ("SENT", "Sent to client"),
            ("RECEIVED", "Received"),
            ("APPROVED", "Approved"),
            ("DECLAINED", "Declined"),
        ),
    ),
    (
        "HONORIFIC",
        "Salutations",
        None,
        (("HNR_EN_1", "Mr."), ("HNR_EN_2", "Mrs."), ("HNR_EN_3", "Ms."), ("HNR_EN_4", "Dr.")),
    ),
)
_STOCK_BY_ID = {entry[0]: entry for entry in _STOCK}
_SYSTEM = frozenset({"NEW", "CONVERTED", "JUNK", "WON", "LOSE", "IN_PROCESS", "PROCESSED"})
_FINAL_FAILURE = frozenset({"JUNK", "LOSE", "APOLOGY"})
_STATUS_COLUMNS = {
    "ID": Column('"ID"', "INTEGER"),
    "ENTITY_ID": Column('"ENTITY_ID"'),
    "STATUS_ID": Column('"STATUS_ID"'),
    "NAME": Column('"NAME"'),
    "SORT": Column('"SORT"', "INTEGER"),
    "SYSTEM": Column('"SYSTEM"'),
    "CATEGORY_ID": Column('"CATEGORY_ID"', "INTEGER"),
    "SEMANTICS": Column('"SEMANTICS"'),
}
_CATEGORY_COLUMNS = {
    "id": Column('"ID"', "INTEGER"),
    "name": Column('"NAME"'),
    "sort": Column('"SORT"', "INTEGER"),
    "entityTypeId": Column('"ENTITY_TYPE_ID"', "INTEGER"),
}
_DEALCATEGORY_COLUMNS = {k.upper(): v for k, v in _CATEGORY_COLUMNS.items()}


def _stage_set(
    base: tuple[tuple[str, str], ...], entity: str, category: int | None
) -> list[dict[str, Any]]:
    prefix = f"C{category}:" if category else ""
    rows = []
    for number, (status, name) in enumerate(base):
        semantics = (
            "S" if status in ("WON", "CONVERTED") else ("F" if status in _FINAL_FAILURE else None)
        )
        rows.append(
            {
                "ENTITY_ID": entity,
                "STATUS_ID": prefix + status,
                "NAME": name,
                "NAME_INIT": name if status in _SYSTEM else "",
                "SORT": (number + 1) * 10,
                "SYSTEM": "Y" if status in _SYSTEM else "N",
                "CATEGORY_ID": category,
                "COLOR": _STAGE_COLORS[number % len(_STAGE_COLORS)],
                "SEMANTICS": semantics,
            }
        )
    return rows


def ensure_seeded(ctx: CallContext) -> None:
    """Stock statuses, once per store (again after the store is cleared)."""
    if ctx.store.cache.get("statuses"):
        return
    if ctx.store.next_sequence("status_seeded") == 1:
        for entity, _, _, base in _STOCK:
            for row in _stage_set(base, entity, None):
                ctx.store.insert_row(_STATUS, row)
    ctx.store.cache["statuses"] = True


def _status_out(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": str(row["ID"]),
        "ENTITY_ID": row["ENTITY_ID"],
        "STATUS_ID": row["STATUS_ID"],
        "NAME": row["NAME"],
        "NAME_INIT": row["NAME_INIT"] or "",
        "SORT": str(row["SORT"]),
        "SYSTEM": row["SYSTEM"],
        "CATEGORY_ID": None if row["CATEGORY_ID"] is None else str(row["CATEGORY_ID"]),
        "COLOR": row["COLOR"],
        "SEMANTICS": row["SEMANTICS"],
    }
    if str(row["ENTITY_ID"]).startswith(("STATUS", "DEAL_STAGE")):
        semantic = {"S": "success", "F": "failure"}.get(row["SEMANTICS"] or "", "process")
        out["EXTRA"] = {"SEMANTICS": semantic, "COLOR": row["COLOR"]}
    return out


def _upper(params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _fields(params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    fields = _upper(params).get("FIELDS")
    if not isinstance(fields, dict):
        raise errors.RestError("", "The parameter 'fields' must be array.")
    return {str(k).upper(): v for k, v in fields.items()}


def _status_or_error(ctx: CallContext, params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    ensure_seeded(ctx)
    ident = php_intval(_upper(params).get("ID"))
    if ident <= 0:
        raise errors.RestError("", "ID is not defined or invalid.")
    row = ctx.store.fetch_row(_STATUS, ident)
    if row is None:
        raise errors.not_found()
    return row


def _known_entities(ctx: CallContext) -> set[str]:
    rows = ctx.store.db.execute(f'SELECT DISTINCT "ENTITY_ID" FROM {_STATUS}').fetchall()
    return {r[0] for r in rows} | set(_STOCK_BY_ID)


def status_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.add``: a new entry of a dictionary; the stage prefix is added for pipelines."""
    ensure_seeded(ctx)
    fields = _fields(params)
    entity = php_str(fields.get("ENTITY_ID", ""))
    status = php_str(fields.get("STATUS_ID", ""))
    missing = [
        f"The field {n} is required."
        for n, v in (("ENTITY_ID", entity), ("STATUS_ID", status))
        if not v
    ]
    if missing:
        raise errors.RestError("", " ".join(missing))
    if entity not in _known_entities(ctx):
        raise errors.RestError("", "Specified entity type is not supported.")
    name = php_str(fields.get("NAME", ""))
    if not name:
        raise errors.RestError("", "The field Title is required.")
    category = None
    if entity.startswith("DEAL_STAGE_"):
        category = php_intval(entity.rsplit("_", 1)[-1])
        if not status.startswith(f"C{category}:"):
            status = f"C{category}:{status}"
    taken = ctx.store.count(_STATUS, '"ENTITY_ID" = ? AND "STATUS_ID" = ?', [entity, status])
    if taken:
        raise errors.RestError("ERROR_CORE", "The specified status ID already exists.")
    semantics = php_str(fields.get("SEMANTICS", "")).upper() or None
    ident = ctx.store.insert_row(
        _STATUS,
        {
            "ENTITY_ID": entity,
            "STATUS_ID": status,
            "NAME": name,
            "NAME_INIT": "",
            "SORT": php_intval(fields.get("SORT", 10)),
            "SYSTEM": "N",
            "CATEGORY_ID": category,
            "COLOR": php_str(fields.get("COLOR", "")) or _STAGE_COLORS[0],
            "SEMANTICS": semantics if semantics in ("S", "F") else None,
        },
    )
    return MethodResult(ident, rows=1)


def status_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.get``."""
    return MethodResult(_status_out(_status_or_error(ctx, params)), rows=1)


def status_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.update``: NAME, SORT, COLOR (ENTITY_ID and STATUS_ID stay)."""
    row = _status_or_error(ctx, params)
    fields = _fields(params)
    change: dict[str, Any] = {}
    if "NAME" in fields:
        change["NAME"] = php_str(fields["NAME"])
    if "SORT" in fields:
        change["SORT"] = php_intval(fields["SORT"])
    if "COLOR" in fields:
        change["COLOR"] = php_str(fields["COLOR"])
    ctx.store.update_row(_STATUS, int(row["ID"]), change)
    return MethodResult(True, rows=1)


def status_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.delete``; system entries only with ``params[FORCED]=Y``."""
    row = _status_or_error(ctx, params)
    extra = _upper(params).get("PARAMS")
    forced = isinstance(extra, dict) and php_str(_upper(extra).get("FORCED", "")) == "Y"
    if row["SYSTEM"] == "Y" and not forced:
        raise errors.RestError("", "Can't delete system status")
    ctx.store.delete_row(_STATUS, int(row["ID"]))
    return MethodResult(True, rows=1)


def status_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.list``: every entry at once, filtered and ordered."""
    ensure_seeded(ctx)
    upper = _upper(params)
    where, args = build_where(upper.get("FILTER"), lambda n: _STATUS_COLUMNS.get(n.upper()))
    order_in = upper.get("ORDER")
    order = build_order(
        order_in if order_in else {"ENTITY_ID": "ASC", "SORT": "ASC"},
        lambda n: _STATUS_COLUMNS.get(n.upper()),
    )
    rows = ctx.store.select(_STATUS, where, args, order)
    return MethodResult([_status_out(r) for r in rows], total=len(rows), rows=len(rows))


def status_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.fields``."""

    def entry(
        kind: str,
        title: str,
        read_only: bool = False,
        required: bool = False,
        immutable: bool = False,
    ) -> dict[str, Any]:
        return field_entry(
            kind, title, required=required, read_only=read_only, immutable=immutable
        )

    return MethodResult(
        {
            "ID": entry("integer", "ID", read_only=True),
            "ENTITY_ID": entry("string", "Entity ID", required=True, immutable=True),
            "STATUS_ID": entry("string", "Status ID", required=True, immutable=True),
            "SORT": entry("integer", "Sort"),
            "NAME": entry("string", "Name", required=True),
            "NAME_INIT": entry("string", "Default name", read_only=True),
            "SYSTEM": entry("char", "System", read_only=True),
            "CATEGORY_ID": entry("integer", "Pipeline", read_only=True),
            "COLOR": entry("string", "Color"),
            "SEMANTICS": entry("string", "Semantics", read_only=True),
            "EXTRA": entry("object", "Extra", read_only=True),
        }
    )


def _stage_entities(ctx: CallContext) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entity, name, type_id, base in _STOCK:
        entry: dict[str, Any] = {"ID": entity, "NAME": name}
        if type_id is not None:
            entry.update(
                {
                    "SEMANTIC_INFO": {
                        "START_FIELD": base[0][0],
                        "FINAL_SUCCESS_FIELD": "CONVERTED" if type_id == 1 else "WON",
                        "FINAL_UNSUCCESS_FIELD": "JUNK" if type_id == 1 else "LOSE",
                        "FINAL_SORT": 0,
                    },
                    "ENTITY_TYPE_ID": type_id,
                    "PREFIX": "",
                    "FIELD_ATTRIBUTE_SCOPE": "",
                    "IS_ENABLED": True,
                }
            )
            if type_id == 2:
                entry.update({"CATEGORY_ID": 0})
        out.append(entry)
    for category in ctx.store.select(_CATEGORY, '"ENTITY_TYPE_ID" = 2'):
        ident = int(category["ID"])
        out.append(
            {
                "ID": f"DEAL_STAGE_{ident}",
                "NAME": f"Deal stages ({category['NAME']})",
                "PARENT_ID": "DEAL_STAGE",
                "SEMANTIC_INFO": {
                    "START_FIELD": f"C{ident}:NEW",
                    "FINAL_SUCCESS_FIELD": f"C{ident}:WON",
                    "FINAL_UNSUCCESS_FIELD": f"C{ident}:LOSE",
                    "FINAL_SORT": 0,
                },
                "ENTITY_TYPE_ID": 2,
                "PREFIX": f"C{ident}",
                "FIELD_ATTRIBUTE_SCOPE": f"category_{ident}",
                "IS_ENABLED": True,
                "CATEGORY_ID": ident,
                "CATEGORY_NAME": category["NAME"],
                "CATEGORY_SORT": int(category["SORT"] or 0),
            }
        )
    return out


def status_entity_types(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.entity.types``: the dictionaries, stage sets with their semantics."""
    return MethodResult(_stage_entities(ctx))


def _items_of(ctx: CallContext, entity: str) -> list[dict[str, Any]]:
    ensure_seeded(ctx)
    rows = ctx.store.select(_STATUS, '"ENTITY_ID" = ?', [entity], '"SORT" ASC, "ID" ASC')
    return [
        {"NAME": r["NAME"], "SORT": int(r["SORT"] or 0), "STATUS_ID": r["STATUS_ID"]} for r in rows
    ]


def status_entity_items(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.status.entity.items?entityId=SOURCE``: NAME, SORT, STATUS_ID."""
    entity = php_str(_upper(params).get("ENTITYID", ""))
    items = _items_of(ctx, entity)
    return MethodResult(items, rows=len(items))


# -- categories -------------------------------------------------------------------------------


def _check_type(ctx: CallContext, type_id: int) -> None:
    """Deals, contacts, companies and existing smart processes have pipelines."""
    if type_id in (2, 3, 4) or (type_id >= 128 and dynamic_entity(ctx.store, type_id)):
        return
    raise errors.RestError("NOT_FOUND", "SPA not found")


def _default_category(type_id: int) -> dict[str, Any]:
    return {"id": 0, "name": "General", "sort": 0, "entityTypeId": type_id, "isDefault": "Y"}


def _category_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["ID"]),
        "name": row["NAME"],
        "sort": int(row["SORT"] or 0),
        "entityTypeId": int(row["ENTITY_TYPE_ID"]),
        "isDefault": row["IS_DEFAULT"] or "N",
        "originId": row["ORIGIN_ID"] or "",
        "originatorId": row["ORIGINATOR_ID"] or "",
    }


def _new_category(ctx: CallContext, type_id: int, fields: Mapping[str, Any]) -> int:
    name = php_str(fields.get("name", fields.get("NAME", "")))
    ident = ctx.store.insert_row(
        _CATEGORY,
        {
            "ENTITY_TYPE_ID": type_id,
            "NAME": name,
            "SORT": php_intval(fields.get("sort", fields.get("SORT", 500))),
            "IS_DEFAULT": "N",
            "ORIGIN_ID": php_str(fields.get("originId", "")),
            "ORIGINATOR_ID": php_str(fields.get("originatorId", "")),
        },
    )
    if type_id == 2:
        ensure_seeded(ctx)
        for row in _stage_set(_STOCK_BY_ID["DEAL_STAGE"][3], f"DEAL_STAGE_{ident}", ident):
            ctx.store.insert_row(_STATUS, row)
    return ident


def _category_or_error(ctx: CallContext, type_id: int, ident: int) -> dict[str, Any]:
    row = ctx.store.fetch_row(_CATEGORY, ident) if ident > 0 else None
    if row is None or int(row["ENTITY_TYPE_ID"]) != type_id:
        raise errors.RestError("NOT_FOUND", "Category not found")
    return row


def category_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.category.list``: the default pipeline first, then by sort."""
    type_id = php_intval(params.get("entityTypeId"))
    _check_type(ctx, type_id)
    where, args = build_where(params.get("filter"), _CATEGORY_COLUMNS.get)
    rows = ctx.store.select(
        _CATEGORY,
        f'"ENTITY_TYPE_ID" = ? AND ({where})',
        [type_id, *args],
        build_order(params.get("order") or {"sort": "ASC"}, _CATEGORY_COLUMNS.get),
    )
    categories = [_default_category(type_id), *(_category_out(r) for r in rows)]
    return MethodResult({"categories": categories}, total=len(categories), rows=len(rows))


def category_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.category.get``."""
    type_id = php_intval(params.get("entityTypeId"))
    _check_type(ctx, type_id)
    ident = php_intval(params.get("id"))
    if ident == 0:
        return MethodResult({"category": _default_category(type_id)}, rows=1)
    return MethodResult({"category": _category_out(_category_or_error(ctx, type_id, ident))})


def category_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.category.add``: a new pipeline (deal pipelines get their stage set)."""
    type_id = php_intval(params.get("entityTypeId"))
    _check_type(ctx, type_id)
    fields = params.get("fields")
    if not isinstance(fields, dict) or not php_str(fields.get("name", "")):
        raise errors.RestError("", "The field Name is required.")
    ident = _new_category(ctx, type_id, {str(k): v for k, v in fields.items()})
    row = ctx.store.fetch_row(_CATEGORY, ident)
    assert row is not None
    return MethodResult({"category": _category_out(row)}, rows=1)


def category_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.category.update``: name and sort."""
    type_id = php_intval(params.get("entityTypeId"))
    row = _category_or_error(ctx, type_id, php_intval(params.get("id")))
    fields = params.get("fields")
    fields = fields if isinstance(fields, dict) else {}
    change: dict[str, Any] = {}
    if "name" in fields:
        change["NAME"] = php_str(fields["name"])
    if "sort" in fields:
        change["SORT"] = php_intval(fields["sort"])
    ctx.store.update_row(_CATEGORY, int(row["ID"]), change)
    fresh = ctx.store.fetch_row(_CATEGORY, int(row["ID"]))
    assert fresh is not None
    return MethodResult({"category": _category_out(fresh)}, rows=1)


def category_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.category.delete`` (the default pipeline cannot go)."""
    type_id = php_intval(params.get("entityTypeId"))
    row = _category_or_error(ctx, type_id, php_intval(params.get("id")))
    ctx.store.delete_row(_CATEGORY, int(row["ID"]))
    ctx.store.db.execute(
        f'DELETE FROM {_STATUS} WHERE "ENTITY_ID" = ?', (f"DEAL_STAGE_{row['ID']}",)
    )
    return MethodResult(None, rows=1)


def category_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.category.fields``."""

    def entry(kind: str, title: str, read_only: bool = False) -> dict[str, Any]:
        return field_entry(kind, title, required=title == "Name", read_only=read_only)

    return MethodResult(
        {
            "fields": {
                "id": entry("integer", "ID", True),
                "name": entry("string", "Name"),
                "sort": entry("integer", "Sort"),
                "entityTypeId": entry("integer", "Entity type", True),
                "isDefault": entry("boolean", "Default"),
                "originId": entry("string", "Origin ID"),
                "originatorId": entry("string", "Originator ID"),
            }
        }
    )


# -- crm.dealcategory (legacy view of the deal pipelines) --------------------------------------


def _dealcategory_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "ID": str(row["ID"]),
        "CREATED_DATE": None,
        "NAME": row["NAME"],
        "IS_LOCKED": "N",
        "SORT": str(row["SORT"] or 0),
    }


def dealcategory_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.list``: the pipelines other than the default one."""
    upper = _upper(params)
    where, args = build_where(upper.get("FILTER"), lambda n: _DEALCATEGORY_COLUMNS.get(n.upper()))
    order = build_order(
        upper.get("ORDER") or {"SORT": "ASC"}, lambda n: _DEALCATEGORY_COLUMNS.get(n.upper())
    )
    rows = ctx.store.select(_CATEGORY, f'"ENTITY_TYPE_ID" = 2 AND ({where})', args, order)
    return MethodResult([_dealcategory_out(r) for r in rows], total=len(rows), rows=len(rows))


def _dealcategory_id(params: Mapping[PhpKey, Any]) -> int:
    ident = php_intval(_upper(params).get("ID"))
    if ident <= 0:
        raise errors.RestError("", "ID is not defined or invalid.")
    return ident


def dealcategory_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.get``."""
    row = ctx.store.fetch_row(_CATEGORY, _dealcategory_id(params))
    if row is None or int(row["ENTITY_TYPE_ID"]) != 2:
        raise errors.not_found()
    return MethodResult(_dealcategory_out(row), rows=1)


def dealcategory_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.add``: the new ID."""
    fields = _fields(params)
    if not php_str(fields.get("NAME", "")):
        raise errors.RestError("", "The field NAME is required.")
    return MethodResult(_new_category(ctx, 2, fields), rows=1)


def dealcategory_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.update``."""
    ident = _dealcategory_id(params)
    if ctx.store.fetch_row(_CATEGORY, ident) is None:
        raise errors.not_found()
    fields = _fields(params)
    change = {
        k: (php_intval(v) if k == "SORT" else php_str(v))
        for k, v in fields.items()
        if k in ("NAME", "SORT")
    }
    ctx.store.update_row(_CATEGORY, ident, change)
    return MethodResult(True, rows=1)


def dealcategory_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.delete``."""
    ident = _dealcategory_id(params)
    if not ctx.store.delete_row(_CATEGORY, ident):
        raise errors.not_found()
    ctx.store.db.execute(f'DELETE FROM {_STATUS} WHERE "ENTITY_ID" = ?', (f"DEAL_STAGE_{ident}",))
    return MethodResult(True, rows=1)


def dealcategory_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.fields``."""

    def entry(kind: str, title: str, read_only: bool = False) -> dict[str, Any]:
        return field_entry(kind, title, required=title == "Name", read_only=read_only)

    return MethodResult(
        {
            "ID": entry("integer", "ID", True),
            "CREATED_DATE": entry("date", "Created on", True),
            "NAME": entry("string", "Name"),
            "IS_LOCKED": entry("char", "Locked", True),
            "SORT": entry("integer", "Sort"),
        }
    )


def dealcategory_default_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.default.get``."""
    name = ctx.store.cache.get("default_deal_category", "General")
    return MethodResult({"ID": 0, "NAME": name, "CREATED_DATE": None, "SORT": 0})


def dealcategory_default_set(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.default.set``: rename the default pipeline (kept until a reset)."""
    ctx.store.cache["default_deal_category"] = php_str(_upper(params).get("NAME", "General"))
    return MethodResult(True)


def dealcategory_stage_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.stage.list?ID=n``: NAME, SORT, STATUS_ID of a pipeline's stages."""
    ident = php_intval(_upper(params).get("ID"))
    items = _items_of(ctx, f"DEAL_STAGE_{ident}" if ident > 0 else "DEAL_STAGE")
    return MethodResult(items, rows=len(items))


def dealcategory_status(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.dealcategory.status?ID=n``: the dictionary of a pipeline's stages."""
    ident = php_intval(_upper(params).get("ID"))
    return MethodResult(f"DEAL_STAGE_{ident}" if ident > 0 else "DEAL_STAGE")


def register_dictionaries(engine: Engine) -> None:
    """Register statuses, categories and deal categories."""
    for name, handler in (
        ("crm.status.add", status_add),
        ("crm.status.get", status_get),
        ("crm.status.update", status_update),
        ("crm.status.delete", status_delete),
        ("crm.status.list", status_list),
        ("crm.status.fields", status_fields),
        ("crm.status.entity.types", status_entity_types),
        ("crm.status.entity.items", status_entity_items),
        ("crm.category.list", category_list),
        ("crm.category.get", category_get),
        ("crm.category.add", category_add),
        ("crm.category.update", category_update),
        ("crm.category.delete", category_delete),
        ("crm.category.fields", category_fields),
        ("crm.dealcategory.list", dealcategory_list),
        ("crm.dealcategory.get", dealcategory_get),
        ("crm.dealcategory.add", dealcategory_add),
        ("crm.dealcategory.update", dealcategory_update),
        ("crm.dealcategory.delete", dealcategory_delete),
        ("crm.dealcategory.fields", dealcategory_fields),
        ("crm.dealcategory.default.get", dealcategory_default_get),
        ("crm.dealcategory.default.set", dealcategory_default_set),
        ("crm.dealcategory.stage.list", dealcategory_stage_list),
        ("crm.dealcategory.status", dealcategory_status),
    ):
        engine.register(name, handler, "crm")
