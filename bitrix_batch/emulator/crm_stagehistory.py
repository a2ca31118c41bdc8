"""``crm.stagehistory.list``: every stage a lead, deal or smart-process item entered.

A row is written when a record is created (``TYPE_ID`` 1) and whenever its stage changes
(2). Values print as strings, as in a real capture; leads use ``STATUS_ID`` and
``STATUS_SEMANTIC_ID``, the others ``STAGE_ID`` and ``STAGE_SEMANTIC_ID``.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .entities import Entity
from .php import PhpKey, php_intval, php_str, php_values
from .query import Column, build_order, build_where

__all__ = ["record_stage", "register_stagehistory"]

_TABLE = "crm_stagehistory"
_NAMES = (
    "ID",
    "TYPE_ID",
    "OWNER_ID",
    "CREATED_TIME",
    "CATEGORY_ID",
    "STAGE_SEMANTIC_ID",
    "STAGE_ID",
)
_INTEGERS = frozenset({"ID", "TYPE_ID", "OWNER_ID", "CATEGORY_ID"})


def _columns(lead: bool) -> dict[str, Column]:
    out = {n: Column(f'"{n}"', "INTEGER" if n in _INTEGERS else "TEXT") for n in _NAMES}
    if lead:
        out["STATUS_ID"] = out.pop("STAGE_ID")
        out["STATUS_SEMANTIC_ID"] = out.pop("STAGE_SEMANTIC_ID")
    return out


def record_stage(
    ctx: CallContext, entity: Entity, ident: int, row: dict[str, Any], created: bool
) -> None:
    """Write the history row of a new record or a stage change."""
    if entity.entity_type_id is None or entity.stage_field is None:
        return
    if entity.entity_type_id not in (1, 2) and entity.entity_type_id < 128:
        return
    semantic = row.get("STATUS_SEMANTIC_ID") or row.get("STAGE_SEMANTIC_ID") or "P"
    ctx.store.insert_row(
        _TABLE,
        {
            "ENTITY_TYPE_ID": entity.entity_type_id,
            "TYPE_ID": 1 if created else 2,
            "OWNER_ID": ident,
            "CREATED_TIME": ctx.now_iso(),
            "CATEGORY_ID": php_intval(row.get("CATEGORY_ID")),
            "STAGE_SEMANTIC_ID": semantic,
            "STAGE_ID": row.get(entity.stage_field),
        },
    )


def stagehistory_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.stagehistory.list?entityTypeId=``: ``{"items": [...]}`` with ``total``, 50 a page."""
    type_id = php_intval(params.get("entityTypeId"))
    if type_id not in (1, 2) and type_id < 128:
        raise errors.RestError("", "Entity type is not supported.")
    lead = type_id == 1
    columns = _columns(lead)
    where, args = build_where(params.get("filter"), lambda n: columns.get(n.upper()))
    order = build_order(params.get("order"), lambda n: columns.get(n.upper()))
    start = php_intval(params.get("start", 0))
    size = ctx.config.list_page_size
    offset = 0 if start == -1 else max(0, start)
    where = f'"ENTITY_TYPE_ID" = ? AND ({where})'
    args = [type_id, *args]
    rows = ctx.store.select(_TABLE, where, args, order, size, offset)
    total = None if start == -1 else ctx.store.count(_TABLE, where, args)
    select = [php_str(v).upper() for v in php_values(params.get("select") or {})]
    names = [n for n in columns if not select or n in select or "*" in select]
    items = []
    for r in rows:
        item = {}
        for name in names:
            value = r[columns[name].sql.strip('"')]
            item[name] = None if value is None else str(value)
        items.append(item)
    nxt = offset + size if total is not None and offset + size < total else None
    return MethodResult({"items": items}, next=nxt, total=total, rows=len(rows))


def register_stagehistory(engine: Engine) -> None:
    """Register ``crm.stagehistory.list``."""
    engine.register("crm.stagehistory.list", stagehistory_list, "crm")
