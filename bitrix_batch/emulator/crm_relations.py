"""CRM bindings: ``crm.deal.contact.*``, ``crm.lead.contact.*``, ``crm.contact.company.*``,
``crm.company.contact.*`` (``add``, ``delete``, ``fields``, ``items.get/set/delete``).

A binding is a row (owner type/id, item type/id, SORT, ROLE_ID, IS_PRIMARY). Contact-company
links are one link seen from two sides, so each write keeps the mirror row too. The owner's
single-value column (``CONTACT_ID`` of a deal or lead, ``COMPANY_ID`` of a contact) follows
the primary binding, and writing ``CONTACT_IDS``/``COMPANY_IDS`` through ``add``/``update``
replaces the bindings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .entities import Entity, field_entry
from .php import PhpKey, php_intval, php_str, php_values

__all__ = ["RELATED_FIELDS", "forget_relations", "register_relations", "sync_fields"]

_TABLE = "crm_relation"
_TABLES = {1: "crm_lead", 2: "crm_deal", 3: "crm_contact", 4: "crm_company"}
#: The owner column that mirrors the primary binding.
_PRIMARY_COLUMN = {1: "CONTACT_ID", 2: "CONTACT_ID", 3: "COMPANY_ID"}
#: Fields of ``add``/``update`` that rewrite an entity's bindings, multiple one first.
RELATED_FIELDS: dict[str, tuple[str, ...]] = {
    "lead": ("CONTACT_IDS", "CONTACT_ID"),
    "deal": ("CONTACT_IDS", "CONTACT_ID"),
    "contact": ("COMPANY_IDS", "COMPANY_ID"),
    "company": ("CONTACT_ID",),
}


@dataclass(frozen=True)
class _Binding:
    """One family: whose items, of which type, under which key."""

    owner: str
    owner_type: int
    item_type: int
    key: str  # CONTACT_ID / COMPANY_ID

    @property
    def mirrored(self) -> bool:
        return {self.owner_type, self.item_type} == {3, 4}


_BINDINGS = (
    _Binding("deal", 2, 3, "CONTACT_ID"),
    _Binding("lead", 1, 3, "CONTACT_ID"),
    _Binding("contact", 3, 4, "COMPANY_ID"),
    _Binding("company", 4, 3, "CONTACT_ID"),
)


def _links(
    ctx: CallContext, owner_type: int, owner_id: int, item_type: int
) -> list[dict[str, Any]]:
    return ctx.store.select(
        _TABLE,
        '"OWNER_TYPE" = ? AND "OWNER_ID" = ? AND "ITEM_TYPE" = ?',
        [owner_type, owner_id, item_type],
        '"SORT" ASC, "ID" ASC',
    )


def _normalize(ctx: CallContext, owner_type: int, owner_id: int, item_type: int) -> None:
    """Exactly one primary when there are links; the owner's column follows it."""
    links = _links(ctx, owner_type, owner_id, item_type)
    primary = [link for link in links if link["IS_PRIMARY"] == "Y"]
    if links and len(primary) != 1:
        chosen = primary[0] if primary else links[0]
        for link in links:
            flag = "Y" if link["ID"] == chosen["ID"] else "N"
            if link["IS_PRIMARY"] != flag:
                ctx.store.update_row(_TABLE, int(link["ID"]), {"IS_PRIMARY": flag})
        primary = [chosen]
    column = _PRIMARY_COLUMN.get(owner_type)
    if column is not None:
        value = int(primary[0]["ITEM_ID"]) if primary else None
        ctx.store.update_row(_TABLES[owner_type], owner_id, {column: value})


def _put(
    ctx: CallContext,
    owner_type: int,
    owner_id: int,
    item_type: int,
    item_id: int,
    sort: int,
    primary: bool,
) -> None:
    existing = ctx.store.select(
        _TABLE,
        '"OWNER_TYPE" = ? AND "OWNER_ID" = ? AND "ITEM_TYPE" = ? AND "ITEM_ID" = ?',
        [owner_type, owner_id, item_type, item_id],
    )
    values = {"SORT": sort, "ROLE_ID": 0, "IS_PRIMARY": "Y" if primary else "N"}
    if primary:
        ctx.store.db.execute(
            f'UPDATE {_TABLE} SET "IS_PRIMARY" = \'N\' WHERE "OWNER_TYPE" = ? AND '
            '"OWNER_ID" = ? AND "ITEM_TYPE" = ?',
            (owner_type, owner_id, item_type),
        )
    if existing:
        ctx.store.update_row(_TABLE, int(existing[0]["ID"]), values)
    else:
        ctx.store.insert_row(
            _TABLE,
            {
                "OWNER_TYPE": owner_type,
                "OWNER_ID": owner_id,
                "ITEM_TYPE": item_type,
                "ITEM_ID": item_id,
                **values,
            },
        )


def _drop(ctx: CallContext, owner_type: int, owner_id: int, item_type: int, item_id: int) -> None:
    ctx.store.db.execute(
        f'DELETE FROM {_TABLE} WHERE "OWNER_TYPE" = ? AND "OWNER_ID" = ? AND "ITEM_TYPE" = ? '
        'AND "ITEM_ID" = ?',
        (owner_type, owner_id, item_type, item_id),
    )


def _add(
    ctx: CallContext, b: _Binding, owner_id: int, item_id: int, sort: int, primary: bool
) -> None:
    _put(ctx, b.owner_type, owner_id, b.item_type, item_id, sort, primary)
    _normalize(ctx, b.owner_type, owner_id, b.item_type)
    if b.mirrored:
        mirror = _links(ctx, b.item_type, item_id, b.owner_type)
        if not any(int(m["ITEM_ID"]) == owner_id for m in mirror):
            last = max((int(m["SORT"] or 0) for m in mirror), default=0)
            _put(ctx, b.item_type, item_id, b.owner_type, owner_id, last + 10, not mirror)
            _normalize(ctx, b.item_type, item_id, b.owner_type)


def _remove(ctx: CallContext, b: _Binding, owner_id: int, item_id: int) -> None:
    _drop(ctx, b.owner_type, owner_id, b.item_type, item_id)
    _normalize(ctx, b.owner_type, owner_id, b.item_type)
    if b.mirrored:
        _drop(ctx, b.item_type, item_id, b.owner_type, owner_id)
        _normalize(ctx, b.item_type, item_id, b.owner_type)


def _set(ctx: CallContext, b: _Binding, owner_id: int, items: list[dict[str, Any]]) -> None:
    for link in _links(ctx, b.owner_type, owner_id, b.item_type):
        _remove(ctx, b, owner_id, int(link["ITEM_ID"]))
    for offset, item in enumerate(items):
        item_id = php_intval(item.get(b.key))
        if item_id <= 0:
            continue
        sort = php_intval(item.get("SORT", (offset + 1) * 10))
        primary = php_str(item.get("IS_PRIMARY", "N")).upper() == "Y"
        _add(ctx, b, owner_id, item_id, sort, primary)


def _binding_of(entity_name: str) -> _Binding:
    return next(b for b in _BINDINGS if b.owner == entity_name)


def sync_fields(ctx: CallContext, entity: Entity, ident: int, fields: Mapping[str, Any]) -> None:
    """Rewrite an entity's bindings from ``CONTACT_IDS``/``COMPANY_IDS``/``CONTACT_ID``."""
    b = _binding_of(entity.name)
    names = RELATED_FIELDS[entity.name]
    name = next(n for n in names if n in fields)
    raw = fields[name]
    values = php_values(raw) if isinstance(raw, dict | list) else [raw]
    ids = [php_intval(v) for v in values if php_intval(v) > 0]
    _set(
        ctx,
        b,
        ident,
        [
            {b.key: i, "SORT": (n + 1) * 10, "IS_PRIMARY": "Y" if n == 0 else "N"}
            for n, i in enumerate(ids)
        ],
    )


def forget_relations(ctx: CallContext, type_id: int, ident: int) -> None:
    """Drop a deleted record's bindings, on both sides."""
    owners = ctx.store.select(_TABLE, '"ITEM_TYPE" = ? AND "ITEM_ID" = ?', [type_id, ident])
    ctx.store.db.execute(
        f'DELETE FROM {_TABLE} WHERE ("OWNER_TYPE" = ? AND "OWNER_ID" = ?) '
        'OR ("ITEM_TYPE" = ? AND "ITEM_ID" = ?)',
        (type_id, ident, type_id, ident),
    )
    for owner in owners:
        _normalize(ctx, int(owner["OWNER_TYPE"]), int(owner["OWNER_ID"]), type_id)


class _Handlers:
    """The methods of one binding family."""

    def __init__(self, binding: _Binding) -> None:
        self.b = binding

    def _owner(self, ctx: CallContext, params: dict[PhpKey, Any]) -> int:
        upper = {str(k).upper(): v for k, v in params.items()}
        ident = php_intval(upper.get("ID"))
        if ident <= 0:
            raise errors.RestError("", "The parameter ownerEntityID is invalid or not defined.")
        if ctx.store.fetch_row(_TABLES[self.b.owner_type], ident) is None:
            raise errors.RestError("", "Not found.")
        return ident

    def _fields(self, params: dict[PhpKey, Any]) -> dict[str, Any]:
        upper = {str(k).upper(): v for k, v in params.items()}
        fields = upper.get("FIELDS")
        if not isinstance(fields, dict):
            raise errors.RestError("", "The parameter 'fields' must be array.")
        out = {str(k).upper(): v for k, v in fields.items()}
        if php_intval(out.get(self.b.key)) <= 0:
            raise errors.RestError("", f"The parameter 'fields' must contain {self.b.key}.")
        return out

    def items_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        links = _links(ctx, self.b.owner_type, owner, self.b.item_type)
        result = [
            {
                self.b.key: int(link["ITEM_ID"]),
                "SORT": int(link["SORT"] or 0),
                "ROLE_ID": int(link["ROLE_ID"] or 0),
                "IS_PRIMARY": link["IS_PRIMARY"],
            }
            for link in links
        ]
        return MethodResult(result, rows=len(result))

    def items_set(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        upper = {str(k).upper(): v for k, v in params.items()}
        raw = upper.get("ITEMS")
        items = [
            {str(k).upper(): v for k, v in i.items()}
            for i in (php_values(raw) if isinstance(raw, dict | list) else [])
            if isinstance(i, dict)
        ]
        _set(ctx, self.b, owner, items)
        return MethodResult(True, rows=len(items))

    def items_delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        _set(ctx, self.b, owner, [])
        return MethodResult(True, rows=1)

    def add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        fields = self._fields(params)
        current = _links(ctx, self.b.owner_type, owner, self.b.item_type)
        last = max((int(link["SORT"] or 0) for link in current), default=0)
        sort = php_intval(fields.get("SORT", last + 10))
        primary = php_str(fields.get("IS_PRIMARY", "N")).upper() == "Y"
        _add(ctx, self.b, owner, php_intval(fields[self.b.key]), sort, primary)
        return MethodResult(True, rows=1)

    def delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        fields = self._fields(params)
        _remove(ctx, self.b, owner, php_intval(fields[self.b.key]))
        return MethodResult(True, rows=1)

    def fields(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        def entry(kind: str, title: str, required: bool = False) -> dict[str, Any]:
            return field_entry(kind, title, required=required)

        target = "crm_contact" if self.b.item_type == 3 else "crm_company"
        return MethodResult(
            {
                self.b.key: entry(target, "Contact" if self.b.item_type == 3 else "Company", True),
                "SORT": entry("integer", "Sort order"),
                "ROLE_ID": entry("integer", "Role"),
                "IS_PRIMARY": entry("char", "Primary"),
            }
        )


def register_relations(engine: Engine) -> None:
    """Register the binding families."""
    for binding in _BINDINGS:
        handlers = _Handlers(binding)
        other = "contact" if binding.item_type == 3 else "company"
        prefix = f"crm.{binding.owner}.{other}"
        engine.register(f"{prefix}.items.get", handlers.items_get, "crm")
        engine.register(f"{prefix}.items.set", handlers.items_set, "crm")
        engine.register(f"{prefix}.items.delete", handlers.items_delete, "crm")
        engine.register(f"{prefix}.add", handlers.add, "crm")
        engine.register(f"{prefix}.delete", handlers.delete, "crm")
        engine.register(f"{prefix}.fields", handlers.fields, "crm")
