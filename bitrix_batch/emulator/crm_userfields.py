"""User fields: ``crm.<lead|deal|contact|company>.userfield.add/get/list/update/delete``.

A portal stores a ``UF_*`` value only when the field is declared, and stores it typed by the
field's ``USER_TYPE_ID``; undeclared ``UF_*`` names in ``fields`` are dropped silently.
Declared fields appear in ``crm.*.fields`` with ``isDynamic: true`` and their labels.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval, php_shape, php_str, php_values
from .query import Column, build_order, build_where
from .store import Store

__all__ = ["UserFields", "coerce_value", "declared", "describe", "register_userfields"]

_TABLE = "crm_userfield"
_FLAGS = ("MULTIPLE", "MANDATORY", "SHOW_FILTER", "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE")
_FLAG_DEFAULTS = {"SHOW_FILTER": "N", "SHOW_IN_LIST": "Y", "EDIT_IN_LIST": "Y"}
_LABELS = (
    "EDIT_FORM_LABEL",
    "LIST_COLUMN_LABEL",
    "LIST_FILTER_LABEL",
    "ERROR_MESSAGE",
    "HELP_MESSAGE",
)
#: Settings portals print as integers (the ``string`` type's layout).
_INT_SETTINGS = frozenset({"SIZE", "ROWS", "MIN_LENGTH", "MAX_LENGTH", "PRECISION"})
_TYPES = frozenset(
    {
        "string",
        "integer",
        "double",
        "boolean",
        "date",
        "datetime",
        "enumeration",
        "money",
        "url",
        "address",
        "file",
        "employee",
        "crm",
        "crm_status",
        "iblock_element",
        "iblock_section",
        "resourcebooking",
        "hlblock",
    }
)
_COLUMNS = {
    "ID": Column('"ID"', "INTEGER"),
    "ENTITY_ID": Column('"ENTITY_ID"'),
    "FIELD_NAME": Column('"FIELD_NAME"'),
    "USER_TYPE_ID": Column('"USER_TYPE_ID"'),
    "XML_ID": Column('"XML_ID"'),
    "SORT": Column('"SORT"', "INTEGER"),
    **{flag: Column(f'"{flag}"') for flag in _FLAGS},
}
_ENTITY_IDS = {
    "lead": "CRM_LEAD",
    "deal": "CRM_DEAL",
    "contact": "CRM_CONTACT",
    "company": "CRM_COMPANY",
}


def declared(store: Store, uf_entity: str) -> dict[str, dict[str, Any]]:
    """The declared user fields of an entity by FIELD_NAME (cached until one changes)."""
    key = f"uf:{uf_entity}"
    cached: dict[str, dict[str, Any]] | None = store.cache.get(key)
    if cached is None:
        rows = store.select(_TABLE, '"ENTITY_ID" = ?', [uf_entity], '"SORT" ASC, "ID" ASC')
        cached = {r["FIELD_NAME"]: r for r in rows}
        store.cache[key] = cached
    return cached


def _one(decl: dict[str, Any], value: Any) -> Any:
    kind = decl["USER_TYPE_ID"]
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    if kind in ("integer", "employee", "enumeration", "iblock_element", "iblock_section"):
        return php_intval(value)
    if kind == "double":
        try:
            return float(php_str(value).replace(",", "."))
        except ValueError:
            return 0.0
    if kind == "boolean":
        return 1 if php_str(value).upper() in ("1", "Y", "TRUE") else 0
    return php_str(value)


def coerce_value(decl: dict[str, Any], value: Any) -> Any:
    """A value as the declared field stores it: typed; a list when the field is multiple."""
    if decl["MULTIPLE"] == "Y":
        items = php_values(value) if isinstance(value, dict | list) else [value]
        return [v for v in (_one(decl, i) for i in items) if v is not None]
    if isinstance(value, dict | list):
        values = php_values(value)
        value = values[0] if values else None
    return _one(decl, value)


def _label(decl: dict[str, Any], name: str) -> Any:
    value = (decl["LABELS"] or {}).get(name)
    if isinstance(value, dict):
        return next(iter(value.values()), decl["FIELD_NAME"]) or decl["FIELD_NAME"]
    return value or decl["FIELD_NAME"]


def describe(decl: dict[str, Any]) -> dict[str, Any]:
    """The ``crm.*.fields`` entry of a declared user field."""
    out: dict[str, Any] = {
        "type": decl["USER_TYPE_ID"],
        "isRequired": decl["MANDATORY"] == "Y",
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": decl["MULTIPLE"] == "Y",
        "isDynamic": True,
        "title": decl["FIELD_NAME"],
        "listLabel": _label(decl, "LIST_COLUMN_LABEL"),
        "formLabel": _label(decl, "EDIT_FORM_LABEL"),
        "filterLabel": _label(decl, "LIST_FILTER_LABEL"),
        "settings": decl["SETTINGS"] or [],
    }
    if decl["USER_TYPE_ID"] == "enumeration":
        out["items"] = [{"ID": e["ID"], "VALUE": e["VALUE"]} for e in decl["LIST"] or []]
    return out


def _settings(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in php_shape(raw).items() if isinstance(php_shape(raw), dict) else []:
        out[key] = php_intval(value) if key in _INT_SETTINGS else value
    return out


def _enum_items(raw: Any, first_id: int) -> list[dict[str, Any]]:
    items = []
    for offset, entry in enumerate(php_values(raw) if isinstance(raw, dict | list) else []):
        if not isinstance(entry, dict):
            continue
        items.append(
            {
                "ID": str(php_intval(entry.get("ID")) or first_id + offset),
                "SORT": str(php_intval(entry.get("SORT", 10 * (offset + 1)))),
                "VALUE": php_str(entry.get("VALUE", "")),
                "DEF": "Y" if php_str(entry.get("DEF", "N")).upper() == "Y" else "N",
                "XML_ID": php_str(entry.get("XML_ID", "")) or f"{first_id + offset}",
            }
        )
    return items


def _fields_param(params: dict[PhpKey, Any]) -> dict[str, Any]:
    upper = {str(k).upper(): v for k, v in params.items()}
    fields = upper.get("FIELDS")
    if not isinstance(fields, dict):
        raise errors.RestError("", "The parameter 'fields' must be array.")
    return {str(k).upper(): v for k, v in fields.items()}


def _columns_from(fields: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if "XML_ID" in fields:
        row["XML_ID"] = php_str(fields["XML_ID"]) or None
    if "SORT" in fields:
        row["SORT"] = php_intval(fields["SORT"])
    for flag in _FLAGS:
        if flag in fields:
            row[flag] = "Y" if php_str(fields[flag]).upper() in ("Y", "1", "TRUE") else "N"
    if "SETTINGS" in fields:
        row["SETTINGS"] = _settings(fields["SETTINGS"])
    if "LIST" in fields:
        row["LIST"] = _enum_items(fields["LIST"], ctx.store.next_sequence("uf_enum", 50))
    return row


def _labels(fields: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    labels = dict(current)
    if "LABEL" in fields:
        for name in _LABELS[:3]:
            labels.setdefault(name, php_shape(fields["LABEL"]))
    for name in _LABELS:
        if name in fields:
            labels[name] = php_shape(fields[name])
    return labels


def _out(decl: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": str(decl["ID"]),
        "ENTITY_ID": decl["ENTITY_ID"],
        "FIELD_NAME": decl["FIELD_NAME"],
        "USER_TYPE_ID": decl["USER_TYPE_ID"],
        "XML_ID": decl["XML_ID"],
        "SORT": str(decl["SORT"]),
        **{flag: decl[flag] for flag in _FLAGS},
        "SETTINGS": decl["SETTINGS"] or [],
    }
    labels = decl["LABELS"] or {}
    for name in _LABELS:
        out[name] = labels.get(name, {"en": ""})
    if decl["USER_TYPE_ID"] == "enumeration":
        out["LIST"] = decl["LIST"] or []
    return out


class UserFields:
    """Handlers for one entity's user fields (``prefix``: what FIELD_NAME must start with)."""

    def __init__(self, uf_entity: str, prefix: str = "UF_CRM_") -> None:
        self.uf_entity = uf_entity
        self.prefix = prefix

    def _find(self, ctx: CallContext, params: dict[PhpKey, Any]) -> dict[str, Any]:
        ident = php_intval({str(k).upper(): v for k, v in params.items()}.get("ID"))
        if ident <= 0:
            raise errors.RestError("", "ID is not defined or invalid.")
        row = ctx.store.fetch_row(_TABLE, ident)
        if row is None or row["ENTITY_ID"] != self.uf_entity:
            raise errors.not_found()
        return row

    def add(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        fields = _fields_param(params)
        name = php_str(fields.get("FIELD_NAME", "")).upper()
        if not name:
            raise errors.RestError("ERROR_CORE", "FIELD_NAME is not defined.")
        if not name.startswith(self.prefix):
            name = self.prefix + name.removeprefix("UF_")
        kind = php_str(fields.get("USER_TYPE_ID", "")).lower()
        if kind not in _TYPES:
            raise errors.RestError("ERROR_CORE", "USER_TYPE_ID is not defined or invalid.")
        if name in declared(ctx.store, self.uf_entity):
            raise errors.RestError("ERROR_CORE", f"Field {name} already exists.")
        row: dict[str, Any] = {
            "ENTITY_ID": self.uf_entity,
            "FIELD_NAME": name,
            "USER_TYPE_ID": kind,
            "SORT": 100,
            "MULTIPLE": "N",
            "MANDATORY": "N",
            "IS_SEARCHABLE": "N",
            **_FLAG_DEFAULTS,
        }
        row.update(_columns_from(fields, ctx))
        row["LABELS"] = _labels(fields, {})
        ident = ctx.store.insert_row(_TABLE, row)
        ctx.store.cache.pop(f"uf:{self.uf_entity}", None)
        return MethodResult(ident, rows=1)

    def get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        return MethodResult(_out(self._find(ctx, params)), rows=1)

    def update(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        current = self._find(ctx, params)
        fields = _fields_param(params)
        row = _columns_from(fields, ctx)
        row["LABELS"] = _labels(fields, current["LABELS"] or {})
        ctx.store.update_row(_TABLE, int(current["ID"]), row)
        ctx.store.cache.pop(f"uf:{self.uf_entity}", None)
        return MethodResult(True, rows=1)

    def delete(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        current = self._find(ctx, params)
        ctx.store.delete_row(_TABLE, int(current["ID"]))
        ctx.store.cache.pop(f"uf:{self.uf_entity}", None)
        return MethodResult(True, rows=1)

    def list(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        upper = {str(k).upper(): v for k, v in params.items()}
        where, args = build_where(upper.get("FILTER"), lambda n: _COLUMNS.get(n.upper()))
        where = f'"ENTITY_ID" = ? AND ({where})'
        order = build_order(upper.get("ORDER"), lambda n: _COLUMNS.get(n.upper()))
        rows = ctx.store.select(_TABLE, where, [self.uf_entity, *args], order)
        # No paging: the portal answers every user field at once, with the total.
        return MethodResult([_out(r) for r in rows], total=len(rows), rows=len(rows))


_TYPE_TITLES = {
    "string": "String",
    "integer": "Integer",
    "double": "Number",
    "boolean": "Yes/No",
    "date": "Date",
    "datetime": "Date/Time",
    "enumeration": "List",
    "money": "Money",
    "url": "Link",
    "address": "Address",
    "file": "File",
    "employee": "Bind to employee",
    "crm": "Bind to CRM items",
    "crm_status": "Bind to CRM reference",
    "iblock_element": "Bind to information block elements",
    "iblock_section": "Bind to information block sections",
    "resourcebooking": "Resource booking",
    "hlblock": "Bind to highload block elements",
}


def userfield_types(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.userfield.types``: the user-field types with titles."""
    return MethodResult([{"ID": k, "title": v} for k, v in _TYPE_TITLES.items()])


def register_userfields(engine: Engine) -> None:
    """Register ``crm.<entity>.userfield.*`` for leads, deals, contacts and companies."""
    for name, uf_entity in _ENTITY_IDS.items():
        handlers = UserFields(uf_entity)
        for action in ("add", "get", "update", "delete", "list"):
            engine.register(f"crm.{name}.userfield.{action}", getattr(handlers, action), "crm")
    engine.register("crm.userfield.types", userfield_types, "crm")
