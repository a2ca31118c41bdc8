"""CRM methods: legacy ``crm.<entity>.*`` (lead, contact, company, deal, activity, timeline
comment) and ``crm.item.*`` for every entity type, smart processes included.

Legacy methods print values as strings, take parameter names in any case, answer a missing
record with an error whose code is empty ("Not found", HTTP 400) and page by ``start`` floored
to a multiple of 50 (``start=-1``: no count, ``total`` 0, no ``next``). ``crm.item.*`` uses
camelCase names, typed values and controller paging (``start=-1``: neither total nor next).
The other families (relations, product rows, dictionaries, user fields, types, activities)
live in the ``crm_*`` modules and are registered from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import errors
from .crm_activity import register_activity
from .crm_dictionaries import register_dictionaries
from .crm_enums import register_enums
from .crm_productrows import forget_rows, register_productrows
from .crm_relations import RELATED_FIELDS, forget_relations, register_relations, sync_fields
from .crm_stagehistory import record_stage, register_stagehistory
from .crm_tables import ENTITIES, ENTITY_BY_TYPE_ID
from .crm_types import dynamic_entity, register_types
from .crm_userfields import coerce_value, declared, describe, register_userfields
from .engine import CallContext, Engine, MethodResult
from .entities import Entity, Field, camel, multifield_in, uncamel
from .php import PhpKey, php_intval, php_shape, php_str, php_values
from .query import Column, build_order, build_where

__all__ = ["Crm", "entity_for_type", "register_crm"]

_FINAL_SUCCESS = frozenset({"WON", "CONVERTED", "SUCCESS"})
_FINAL_FAILURE = frozenset({"LOSE", "JUNK", "APOLOGY", "FAIL"})


def _upper(params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _start(params: Mapping[PhpKey, Any] | Mapping[str, Any]) -> int:
    # The server reads and removes exactly `start` (IRestService::getNavData, §6); `START`
    # is an ordinary parameter to it.
    return php_intval(params.get("start", 0))


def stage_semantic(stage: str) -> str:
    """P (in progress), S (success) or F (failure) of a stage id such as ``C2:WON``."""
    base = stage.rsplit(":", 1)[-1]
    if base in _FINAL_SUCCESS:
        return "S"
    if base in _FINAL_FAILURE:
        return "F"
    return "P"


def entity_for_type(ctx: CallContext, type_id: int) -> Entity | None:
    """The entity of a ``crm.item`` type id: the four standard ones or a smart process."""
    entity = ENTITY_BY_TYPE_ID.get(type_id)
    if entity is None and type_id >= 128:
        entity = dynamic_entity(ctx.store, type_id)
    return entity


_UF_KINDS = {
    "integer": "INTEGER",
    "employee": "INTEGER",
    "enumeration": "INTEGER",
    "boolean": "INTEGER",
    "double": "REAL",
}


def _resolver(
    entity: Entity,
    item_names: bool = False,
    decls: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[str], Column | None]:
    """Filter/order names to columns; ``decls`` (declared user fields) types the UF ones."""
    by_name = entity.by_name
    by_camel = entity.by_camel

    def resolve(name: str) -> Column | None:
        field = by_camel.get(name) if item_names else None
        if field is None:
            field = by_name.get(name.upper())
        if field is not None and not field.virtual:
            return Column(f'"{field.name}"', field.sql_type, field.is_multifield)
        upper = uncamel(name) if item_names and name.startswith("uf") else name.upper()
        if upper.startswith("UF_"):
            if not _UF_NAME.fullmatch(upper):
                return None  # no such field can exist: ignored, as other unknown keys
            decl = (decls or {}).get(upper)
            kind = _UF_KINDS.get(decl["USER_TYPE_ID"], "TEXT") if decl else "TEXT"
            # Safe to splice: the name is only letters, digits and underscores.
            path = f"json_extract(UF, '$.\"{upper}\"')"
            return Column(path, kind, multiple=decl is not None and decl.get("MULTIPLE") == "Y")
        return None

    return resolve


#: User-field names as portals make them; anything else in a filter is no field.
_UF_NAME = re.compile(r"UF_[A-Z0-9_]+")
#: The largest offset SQLite accepts (past it, a page is simply empty).
_MAX_OFFSET = 2**63 - 1


def _page(ctx: CallContext, start: int) -> tuple[int, bool]:
    """The SQL offset for ``start`` and whether counting is on (``start=-1`` turns it off)."""
    size = ctx.config.list_page_size
    if start == -1:
        return 0, False
    # PHP intval(start/50)+1, truncating toward zero; in integers, since a float loses a
    # huge start's digits (and SQLite takes offsets below 2**63 only).
    pages = abs(start) // size
    page = (pages if start >= 0 else -pages) + 1
    return min(max(0, (page - 1) * size), _MAX_OFFSET), True


def list_rows(
    ctx: CallContext,
    entity: Entity,
    params: Mapping[str, Any],
    item_names: bool,
) -> tuple[list[dict[str, Any]], int | None, int]:
    """Rows of one page, the total (None when not counted) and the offset used."""
    decls = declared(ctx.store, entity.uf_entity) if entity.uf_entity else None
    resolve = _resolver(entity, item_names, decls)
    where, args = build_where(params.get("filter" if item_names else "FILTER"), resolve)
    order = build_order(params.get("order" if item_names else "ORDER"), resolve)
    offset, counted = _page(ctx, _start(params))
    size = ctx.config.list_page_size
    rows = ctx.store.select(entity.table, where, args, order, size, offset)
    total = ctx.store.count(entity.table, where, args) if counted else None
    return rows, total, offset


def _uf_names(ctx: CallContext, entity: Entity) -> list[str]:
    return list(declared(ctx.store, entity.uf_entity)) if entity.uf_entity else []


def _wanted(
    ctx: CallContext, entity: Entity, select: Any, item_names: bool
) -> tuple[list[Field], list[str], bool]:
    """Fields a ``select`` asks for, the user fields to print, and whether it was "all"."""
    names = [php_str(v) for v in php_values(select)] if select not in (None, "", {}) else []
    if not names:
        return [f for f in entity.record_fields if not f.is_multifield], [], True
    chosen: set[str] = set()
    uf: list[str] = []
    everything = False
    lookup = entity.by_camel if item_names else {}
    for name in names:
        field = lookup.get(name) or entity.by_name.get(name.upper())
        if name == "*":
            everything = True
            chosen.update(f.name for f in entity.record_fields if not f.is_multifield)
            if item_names:
                uf = _uf_names(ctx, entity)
        elif name.upper() == "UF_*" or name == "uf*":
            uf = _uf_names(ctx, entity)
        elif field is not None:
            chosen.add(field.name)
        elif name.upper().startswith("UF_") or (item_names and name.startswith("uf")):
            upper = uncamel(name) if item_names and name.startswith("uf") else name.upper()
            if upper in declared(ctx.store, entity.uf_entity or "") and upper not in uf:
                uf.append(upper)
    chosen.add("ID")
    return [f for f in entity.record_fields if f.name in chosen], uf, everything


def legacy_row(row: dict[str, Any], fields: list[Field], uf: list[str]) -> dict[str, Any]:
    """A stored row as legacy methods print it (``Field.legacy_out``, inlined: lists print
    50 rows of ~50 fields per call)."""
    out: dict[str, Any] = {}
    get = row.get
    for field in fields:
        name = field.name
        value = get(name)
        kind = field.out_kind
        if kind == "multi":
            if value:  # portals leave the key out when the record has no entries
                out[name] = value
        elif value is None:
            out[name] = "" if kind == "date" else None
        elif kind == "double":
            out[name] = f"{float(value):.2f}"
        elif isinstance(value, int | float):
            out[name] = str(value)
        else:
            out[name] = value
    if uf:
        stored = row.get("UF") or {}
        for name in uf:
            out[name] = stored.get(name)
    return out


def item_row(
    entity: Entity, row: dict[str, Any], fields: list[Field], uf: list[str], everything: bool
) -> dict[str, Any]:
    """A stored row as ``crm.item.*`` prints it (camelCase, typed)."""
    out: dict[str, Any] = {}
    for field in fields:
        if not field.is_multifield:
            out[camel(field.name)] = field.item_out(row.get(field.name))
    stored = row.get("UF") or {}
    for name in uf:
        out[camel(name)] = stored.get(name)
    if everything:
        out["entityTypeId"] = entity.entity_type_id
    return out


def require_id(params: Mapping[str, Any], key: str = "ID") -> int:
    """A positive ``ID`` parameter, or the legacy ``ID is not defined or invalid.``."""
    ident = php_intval(params.get(key))
    if ident <= 0:
        raise errors.RestError("", "ID is not defined or invalid.")
    return ident


def _stage_columns(ctx: CallContext, entity: Entity, row: dict[str, Any]) -> None:
    """What a stage change drags along: semantics, closed flags, the moved-by stamps."""
    stage_field = entity.stage_field
    if stage_field is None or stage_field not in row:
        return
    by_name = entity.by_name
    category = php_intval(row.get("CATEGORY_ID"))
    stage = php_str(row[stage_field] or "")
    if stage_field == "STAGE_ID" and category > 0 and stage and ":" not in stage:
        stage = f"C{category}:{stage}"
    row[stage_field] = stage or None
    semantic = stage_semantic(stage)
    for name in ("STATUS_SEMANTIC_ID", "STAGE_SEMANTIC_ID"):
        if name in by_name:
            row[name] = semantic
    if "CLOSED" in by_name:
        row["CLOSED"] = "N" if semantic == "P" else "Y"
    if "IS_NEW" in by_name:
        row["IS_NEW"] = "Y" if stage.rsplit(":", 1)[-1] == "NEW" else "N"
    if "DATE_CLOSED" in by_name:
        row["DATE_CLOSED"] = None if semantic == "P" else ctx.now_iso()
    if "MOVED_BY_ID" in by_name:
        row["MOVED_BY_ID"] = ctx.caller.user_id
        row["MOVED_TIME"] = ctx.now_iso()


def _write_values(
    ctx: CallContext,
    entity: Entity,
    fields: Mapping[str, Any],
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    """Columns to store for incoming UPPER_SNAKE ``fields`` (unknown names are ignored,
    undeclared ``UF_*`` names too)."""
    row: dict[str, Any] = {}
    by_name = entity.by_name
    uf: dict[str, Any] | None = None
    decls: dict[str, dict[str, Any]] | None = None
    for name, value in fields.items():
        field = by_name.get(name)
        if field is None:
            if name.startswith("UF_") and entity.uf_entity:
                if decls is None:
                    decls = declared(ctx.store, entity.uf_entity)
                    uf = dict(existing.get("UF") or {}) if existing else {}
                decl = decls.get(name)
                if decl is not None and uf is not None:
                    uf[name] = coerce_value(decl, value)
            continue
        if field.read_only or field.virtual:
            continue
        if field.is_multifield:
            current = list(existing.get(name) or []) if existing else []
            merged = multifield_in(current, value, name, lambda: ctx.store.next_sequence("fm"))
            row[name] = merged
            if "HAS_" + name in by_name:
                row["HAS_" + name] = "Y" if merged else "N"
        elif field.is_json:
            row[name] = php_shape(value) if isinstance(value, dict | list) else None
        else:
            row[name] = field.to_db(value)
    if uf is not None and (existing is None or uf != (existing.get("UF") or {})):
        row["UF"] = uf
    return row


class Crm:
    """Create/change/remove plus the legacy handlers, bound to one entity."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity

    def create(self, ctx: CallContext, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Insert a record from UPPER_SNAKE ``fields``; returns the stored row."""
        entity = self.entity
        row: dict[str, Any] = dict(entity.defaults)
        stamps = entity.stamps
        now = ctx.now_iso()
        user = ctx.caller.user_id
        for column, value in (
            (stamps.assigned, user),
            (stamps.created_by, user),
            (stamps.modified_by, user),
            (stamps.created, now),
            (stamps.modified, now),
        ):
            if column is not None:
                row[column] = value
        written = _write_values(ctx, entity, fields, None)
        if entity.stage_field and written.get(entity.stage_field) is None:
            written.pop(entity.stage_field, None)  # an empty stage keeps the default
        row.update(written)
        _stage_columns(ctx, entity, row)
        ident = ctx.store.insert_row(entity.table, row)
        record_stage(ctx, entity, ident, row, created=True)
        if any(name in fields for name in RELATED_FIELDS.get(entity.name, ())):
            sync_fields(ctx, entity, ident, fields)
        ctx.stats.record_add(entity.name, ident, php_shape(dict(fields)))
        fetched = ctx.store.fetch_row(entity.table, ident)
        assert fetched is not None
        return fetched

    def change(self, ctx: CallContext, ident: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Update a record; ``Not found`` when it does not exist."""
        entity = self.entity
        existing = ctx.store.fetch_row(entity.table, ident)
        if existing is None:
            raise errors.not_found()
        row = _write_values(ctx, entity, fields, existing)
        stage = entity.stage_field
        if stage is not None and row.get(stage, "kept") is None:
            del row[stage]  # an empty or non-text stage leaves the stage as it is
        if stage is not None and stage in row:
            staged = {"CATEGORY_ID": existing.get("CATEGORY_ID"), **row}
            _stage_columns(ctx, entity, staged)
            if "CATEGORY_ID" not in row:
                staged.pop("CATEGORY_ID")
            if staged[stage] == existing.get(stage):
                for name in ("MOVED_BY_ID", "MOVED_TIME", "DATE_CLOSED"):
                    staged.pop(name, None)
            else:
                record_stage(ctx, entity, ident, {**existing, **staged}, created=False)
            row = staged
        if entity.stamps.modified:
            row[entity.stamps.modified] = ctx.now_iso()
        if entity.stamps.modified_by:
            row[entity.stamps.modified_by] = ctx.caller.user_id
        ctx.store.update_row(entity.table, ident, row)
        if any(name in fields for name in RELATED_FIELDS.get(entity.name, ())):
            sync_fields(ctx, entity, ident, fields)
        ctx.stats.record_write(entity.name, ident, "update")
        fetched = ctx.store.fetch_row(entity.table, ident)
        assert fetched is not None
        return fetched

    def remove(self, ctx: CallContext, ident: int) -> None:
        """Delete a record with its bindings and product rows."""
        if not ctx.store.delete_row(self.entity.table, ident):
            raise errors.not_found()
        if self.entity.entity_type_id is not None:
            forget_relations(ctx, self.entity.entity_type_id, ident)
            forget_rows(ctx, self.entity.entity_type_id, ident)
        ctx.stats.record_write(self.entity.name, ident, "delete")

    # -- legacy -----------------------------------------------------------------------------

    def add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``crm.<entity>.add``: the new ID."""
        fields = _upper(params).get("FIELDS")
        if not isinstance(fields, dict):
            raise errors.RestError("", "The parameter 'fields' must be array.")
        row = self.create(ctx, {str(k): v for k, v in fields.items()})
        return MethodResult(int(row["ID"]), rows=1)

    def get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``crm.<entity>.get``: every standard field, declared user fields included."""
        ident = require_id(_upper(params))
        row = ctx.store.fetch_row(self.entity.table, ident)
        if row is None:
            raise errors.not_found()
        uf = _uf_names(ctx, self.entity)
        return MethodResult(legacy_row(row, list(self.entity.record_fields), uf), rows=1)

    def update(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``crm.<entity>.update``: true."""
        upper = _upper(params)
        ident = require_id(upper)
        fields = upper.get("FIELDS")
        if not isinstance(fields, dict):
            raise errors.RestError("", "The parameter 'fields' must be array.")
        self.change(ctx, ident, {str(k): v for k, v in fields.items()})
        return MethodResult(True, rows=1)

    def delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``crm.<entity>.delete``: true."""
        self.remove(ctx, require_id(_upper(params)))
        return MethodResult(True, rows=1)

    def list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``crm.<entity>.list``: one page of 50."""
        upper = _upper(params)
        upper["start"] = _start(params)
        rows, total, offset = list_rows(ctx, self.entity, upper, item_names=False)
        fields, uf, _ = _wanted(ctx, self.entity, upper.get("SELECT"), item_names=False)
        result = [legacy_row(r, fields, uf) for r in rows]
        size = ctx.config.list_page_size
        nxt = offset + size if total is not None and offset + size < total else None
        return MethodResult(result, next=nxt, total=0 if total is None else total, rows=len(rows))

    def fields(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``crm.<entity>.fields``: standard fields, then the declared user fields."""
        described = {f.name: f.describe() for f in self.entity.fields}
        if self.entity.uf_entity:
            for name, decl in declared(ctx.store, self.entity.uf_entity).items():
                described[name] = describe(decl)
        return MethodResult(described)


# -- crm.item ---------------------------------------------------------------------------------


def _entity_or_error(ctx: CallContext, params: Mapping[PhpKey, Any]) -> Entity:
    type_id = php_intval(params.get("entityTypeId", params.get("ENTITYTYPEID")))
    entity = entity_for_type(ctx, type_id)
    if entity is None:
        raise errors.RestError("NOT_FOUND", "SPA not found")
    return entity


def _item_fields(entity: Entity, raw: Any) -> dict[str, Any]:
    """crm.item ``fields`` (camelCase) translated to UPPER_SNAKE names."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    by_camel = entity.by_camel
    for key, value in raw.items():
        name = str(key)
        field = by_camel.get(name)
        if field is not None:
            out[field.name] = value
        elif name.startswith("uf"):
            out[uncamel(name)] = value
        elif name.upper() in entity.by_name:
            out[name.upper()] = value
    return out


def _item_whole(ctx: CallContext, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    fields = [f for f in entity.record_fields if not f.is_multifield]
    return item_row(entity, row, fields, _uf_names(ctx, entity), True)


def _item_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(ctx, params)
    row = Crm(entity).create(ctx, _item_fields(entity, params.get("fields")))
    return MethodResult({"item": _item_whole(ctx, entity, row)}, rows=1)


def _item_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(ctx, params)
    ident = php_intval(params.get("id"))
    row = ctx.store.fetch_row(entity.table, ident) if ident > 0 else None
    if row is None:
        raise errors.RestError("NOT_FOUND", "Element not found")
    return MethodResult({"item": _item_whole(ctx, entity, row)}, rows=1)


def _item_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(ctx, params)
    ident = php_intval(params.get("id"))
    try:
        row = Crm(entity).change(ctx, ident, _item_fields(entity, params.get("fields")))
    except errors.RestError:
        raise errors.RestError("NOT_FOUND", "Element not found") from None
    return MethodResult({"item": _item_whole(ctx, entity, row)}, rows=1)


def _item_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(ctx, params)
    try:
        Crm(entity).remove(ctx, php_intval(params.get("id")))
    except errors.RestError:
        raise errors.RestError("NOT_FOUND", "Element not found") from None
    return MethodResult([], rows=1)


def _item_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(ctx, params)
    named = {str(k): v for k, v in params.items()}
    rows, total, offset = list_rows(ctx, entity, named, item_names=True)
    select = params.get("select")
    fields, uf, everything = _wanted(ctx, entity, select if select else {0: "*"}, True)
    items = [item_row(entity, r, fields, uf, everything) for r in rows]
    size = ctx.config.list_page_size
    nxt = offset + size if total is not None and offset + size < total else None
    return MethodResult({"items": items}, next=nxt, total=total, rows=len(rows))


def _item_fields_method(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(ctx, params)
    described = {
        camel(f.name): {**f.describe(), "upperName": f.name}
        for f in entity.fields
        if not f.is_multifield
    }
    if entity.uf_entity:
        for name, decl in declared(ctx.store, entity.uf_entity).items():
            described[camel(name)] = {**describe(decl), "upperName": name}
    return MethodResult({"fields": described})


def register_crm(engine: Engine) -> None:
    """Register every CRM method."""
    for entity in ENTITIES.values():
        crm = Crm(entity)
        for action in ("add", "get", "update", "delete", "list", "fields"):
            engine.register(f"crm.{entity.name}.{action}", getattr(crm, action), "crm")
    engine.register("crm.item.add", _item_add, "crm")
    engine.register("crm.item.get", _item_get, "crm")
    engine.register("crm.item.update", _item_update, "crm")
    engine.register("crm.item.delete", _item_delete, "crm")
    engine.register("crm.item.list", _item_list, "crm")
    engine.register("crm.item.fields", _item_fields_method, "crm")
    register_userfields(engine)
    register_types(engine)
    register_relations(engine)
    register_productrows(engine)
    register_dictionaries(engine)
    register_enums(engine)
    register_activity(engine)
    register_stagehistory(engine)
