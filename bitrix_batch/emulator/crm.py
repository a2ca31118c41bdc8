"""CRM methods: legacy ``crm.<entity>.*`` (lead, contact, company, deal) and ``crm.item.*``.

Legacy methods print values as strings, take parameter names in any case, answer a missing
record with an error whose code is empty ("Not found", HTTP 400) and page by ``start`` floored
to a multiple of 50 (``start=-1``: no count, ``total`` 0, no ``next``). ``crm.item.*`` uses
camelCase names, typed values and controller paging (``start=-1``: neither total nor next).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .entities import ENTITIES, ENTITY_BY_TYPE_ID, Entity, Field, camel, multifield_in, uncamel
from .php import PhpKey, php_intval, php_shape, php_str, php_values
from .query import Column, build_order, build_where

__all__ = ["register_crm"]

_MULTI_TYPE = {"PHONE": "PHONE", "EMAIL": "EMAIL"}


def _upper(params: dict[PhpKey, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _start(params: Mapping[PhpKey, Any] | Mapping[str, Any]) -> int:
    # The server reads and removes exactly `start` (IRestService::getNavData, §6); `START`
    # is an ordinary parameter to it.
    return php_intval(params.get("start", 0))


def _resolver(entity: Entity, item_names: bool = False) -> Callable[[str], Column | None]:
    by_name = entity.by_name
    by_camel = entity.by_camel

    def resolve(name: str) -> Column | None:
        field = by_camel.get(name) if item_names else None
        if field is None:
            field = by_name.get(name.upper())
        if field is not None:
            return Column(f'"{field.name}"', field.sql_type, field.is_multifield)
        upper = uncamel(name) if item_names and name.startswith("uf") else name.upper()
        if upper.startswith("UF_"):
            return Column(f"json_extract(UF, '$.\"{upper}\"')")
        return None

    return resolve


def _page(ctx: CallContext, start: int) -> tuple[int, bool]:
    """The SQL offset for ``start`` and whether counting is on (``start=-1`` turns it off)."""
    size = ctx.config.list_page_size
    if start == -1:
        return 0, False
    page = int(start / size) + 1  # PHP intval(start/50)+1, truncating toward zero
    return max(0, (page - 1) * size), True


def _list_rows(
    ctx: CallContext,
    entity: Entity,
    params: dict[str, Any],
    item_names: bool,
) -> tuple[list[dict[str, Any]], int | None, int]:
    """Rows of one page, the total (None when not counted) and the offset used."""
    resolve = _resolver(entity, item_names)
    where, args = build_where(params.get("filter" if item_names else "FILTER"), resolve)
    order = build_order(params.get("order" if item_names else "ORDER"), resolve)
    offset, counted = _page(ctx, _start(params))
    size = ctx.config.list_page_size
    rows = ctx.store.select(entity.table, where, args, order, size, offset)
    total = ctx.store.count(entity.table, where, args) if counted else None
    return rows, total, offset


def _wanted(entity: Entity, select: Any, item_names: bool) -> tuple[list[Field], bool, set[str]]:
    """Fields a ``select`` asks for, whether all UF fields are wanted, and named UF fields."""
    names = [php_str(v) for v in php_values(select)] if select not in (None, "", {}) else []
    if not names:
        return list(entity.scalar_fields), False, set()
    fields: list[Field] = []
    all_uf = False
    uf: set[str] = set()
    lookup = entity.by_camel if item_names else {}
    for name in names:
        if name == "*":
            fields.extend(entity.scalar_fields)
            if item_names:
                all_uf = True
        elif name.upper() == "UF_*" or name == "uf*":
            all_uf = True
        elif name in lookup:
            fields.append(lookup[name])
        elif name.upper() in entity.by_name:
            fields.append(entity.by_name[name.upper()])
        elif name.upper().startswith("UF_") or (item_names and name.startswith("uf")):
            uf.add(uncamel(name) if item_names and name.startswith("uf") else name.upper())
    chosen = {f.name for f in fields} | {"ID"}
    return [f for f in entity.fields if f.name in chosen], all_uf, uf


def _legacy_row(
    entity: Entity, row: dict[str, Any], fields: list[Field], all_uf: bool, uf: set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in fields:
        value = row.get(field.name)
        if field.is_multifield:
            if value:
                out[field.name] = value
            continue
        out[field.name] = field.legacy_out(value)
    for name, value in (row.get("UF") or {}).items():
        if all_uf or name in uf:
            out[name] = value
    return out


def _item_row(
    entity: Entity, row: dict[str, Any], fields: list[Field], all_uf: bool, uf: set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in fields:
        if not field.is_multifield:
            out[camel(field.name)] = field.item_out(row.get(field.name))
    for name, value in (row.get("UF") or {}).items():
        if all_uf or name in uf:
            out[camel(name)] = value
    return out


def _require_id(params: dict[str, Any], key: str = "ID") -> int:
    ident = php_intval(params.get(key))
    if ident <= 0:
        raise errors.RestError("", "ID is not defined or invalid.")
    return ident


def _write_values(
    ctx: CallContext,
    entity: Entity,
    fields: dict[str, Any],
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    """Columns to store for incoming UPPER_SNAKE ``fields`` (unknown names are ignored)."""
    row: dict[str, Any] = {}
    uf = dict(existing.get("UF") or {}) if existing else {}
    uf_changed = False
    for name, value in fields.items():
        field = entity.by_name.get(name)
        if field is None:
            if name.startswith("UF_"):
                uf[name] = php_shape(value) if isinstance(value, dict) else value
                uf_changed = True
            continue
        if field.read_only:
            continue
        if field.is_multifield:
            current = list(existing.get(name) or []) if existing else []
            merged = multifield_in(
                current, value, _MULTI_TYPE[name], lambda: ctx.store.next_sequence("fm")
            )
            row[name] = merged
            row["HAS_" + name] = "Y" if merged else "N"
        else:
            row[name] = field.to_db(value)
    if uf_changed:
        row["UF"] = uf
    return row


def _entity_or_error(params: dict[PhpKey, Any]) -> Entity:
    type_id = php_intval(params.get("entityTypeId", params.get("ENTITYTYPEID")))
    entity = ENTITY_BY_TYPE_ID.get(type_id)
    if entity is None:
        raise errors.RestError("NOT_FOUND", "Smart process not found")
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


class _Crm:
    """Handlers bound to one entity."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity

    def create(self, ctx: CallContext, fields: dict[str, Any]) -> dict[str, Any]:
        entity = self.entity
        row: dict[str, Any] = dict(entity.defaults)
        row.update(
            {
                "ASSIGNED_BY_ID": ctx.caller.user_id,
                "CREATED_BY_ID": ctx.caller.user_id,
                "MODIFY_BY_ID": ctx.caller.user_id,
                "DATE_CREATE": ctx.now_iso(),
                "DATE_MODIFY": ctx.now_iso(),
            }
        )
        if "PHONE" in entity.by_name:
            row.update({"HAS_PHONE": "N", "HAS_EMAIL": "N"})
        row.update(_write_values(ctx, entity, fields, None))
        ident = ctx.store.insert_row(entity.table, row)
        ctx.stats.record_add(entity.name, ident, php_shape(fields))
        fetched = ctx.store.fetch_row(entity.table, ident)
        assert fetched is not None
        return fetched

    def change(self, ctx: CallContext, ident: int, fields: dict[str, Any]) -> dict[str, Any]:
        entity = self.entity
        existing = ctx.store.fetch_row(entity.table, ident)
        if existing is None:
            raise errors.not_found()
        row = _write_values(ctx, entity, fields, existing)
        row["DATE_MODIFY"] = ctx.now_iso()
        row["MODIFY_BY_ID"] = ctx.caller.user_id
        ctx.store.update_row(entity.table, ident, row)
        ctx.stats.record_write(entity.name, ident, "update")
        fetched = ctx.store.fetch_row(entity.table, ident)
        assert fetched is not None
        return fetched

    def remove(self, ctx: CallContext, ident: int) -> None:
        if not ctx.store.delete_row(self.entity.table, ident):
            raise errors.not_found()
        ctx.stats.record_write(self.entity.name, ident, "delete")

    # -- legacy -----------------------------------------------------------------------------

    def add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        fields = _upper(params).get("FIELDS")
        if not isinstance(fields, dict):
            raise errors.RestError("", "The parameter 'fields' must be array.")
        row = self.create(ctx, {str(k): v for k, v in fields.items()})
        return MethodResult(int(row["ID"]), rows=1)

    def get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        ident = _require_id(_upper(params))
        row = ctx.store.fetch_row(self.entity.table, ident)
        if row is None:
            raise errors.not_found()
        return MethodResult(
            _legacy_row(self.entity, row, list(self.entity.fields), True, set()), rows=1
        )

    def update(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        upper = _upper(params)
        ident = _require_id(upper)
        fields = upper.get("FIELDS")
        if not isinstance(fields, dict):
            raise errors.RestError("", "The parameter 'fields' must be array.")
        self.change(ctx, ident, {str(k): v for k, v in fields.items()})
        return MethodResult(True, rows=1)

    def delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        self.remove(ctx, _require_id(_upper(params)))
        return MethodResult(True, rows=1)

    def list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        upper = _upper(params)
        upper["start"] = _start(params)
        rows, total, offset = _list_rows(ctx, self.entity, upper, item_names=False)
        fields, all_uf, uf = _wanted(self.entity, upper.get("SELECT"), item_names=False)
        result = [_legacy_row(self.entity, r, fields, all_uf, uf) for r in rows]
        size = ctx.config.list_page_size
        nxt = offset + size if total is not None and offset + size < total else None
        return MethodResult(result, next=nxt, total=0 if total is None else total, rows=len(rows))

    def fields(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        return MethodResult({f.name: f.describe() for f in self.entity.fields})


def _item_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(params)
    row = _Crm(entity).create(ctx, _item_fields(entity, params.get("fields")))
    return MethodResult({"item": _item_row(entity, row, list(entity.fields), True, set())})


def _item_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(params)
    ident = php_intval(params.get("id"))
    row = ctx.store.fetch_row(entity.table, ident) if ident > 0 else None
    if row is None:
        raise errors.RestError("NOT_FOUND", "Element not found")
    return MethodResult({"item": _item_row(entity, row, list(entity.fields), True, set())}, rows=1)


def _item_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(params)
    ident = php_intval(params.get("id"))
    try:
        row = _Crm(entity).change(ctx, ident, _item_fields(entity, params.get("fields")))
    except errors.RestError:
        raise errors.RestError("NOT_FOUND", "Element not found") from None
    return MethodResult({"item": _item_row(entity, row, list(entity.fields), True, set())}, rows=1)


def _item_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(params)
    try:
        _Crm(entity).remove(ctx, php_intval(params.get("id")))
    except errors.RestError:
        raise errors.RestError("NOT_FOUND", "Element not found") from None
    return MethodResult({}, rows=1)


def _item_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(params)
    named = {str(k): v for k, v in params.items()}
    rows, total, offset = _list_rows(ctx, entity, named, item_names=True)
    select = params.get("select")
    fields, all_uf, uf = _wanted(entity, select if select else {0: "*"}, item_names=True)
    items = [_item_row(entity, r, fields, all_uf, uf) for r in rows]
    size = ctx.config.list_page_size
    nxt = offset + size if total is not None and offset + size < total else None
    return MethodResult({"items": items}, next=nxt, total=total, rows=len(rows))


def _item_fields_method(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    entity = _entity_or_error(params)
    described = {
        camel(f.name): {**f.describe(), "upperName": f.name}
        for f in entity.fields
        if not f.is_multifield
    }
    return MethodResult({"fields": described})


def register_crm(engine: Engine) -> None:
    """Register every CRM method."""
    for entity in ENTITIES.values():
        crm = _Crm(entity)
        for action in ("add", "get", "update", "delete", "list", "fields"):
            engine.register(f"crm.{entity.name}.{action}", getattr(crm, action), "crm")
    engine.register("crm.item.add", _item_add, "crm")
    engine.register("crm.item.get", _item_get, "crm")
    engine.register("crm.item.update", _item_update, "crm")
    engine.register("crm.item.delete", _item_delete, "crm")
    engine.register("crm.item.list", _item_list, "crm")
    engine.register("crm.item.fields", _item_fields_method, "crm")
