"""CRM entity definitions: fields, their types, and how values go in and come out.

The field lists themselves are data in :mod:`.crm_tables`; this module holds the types that
read them and the value conversions every family shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .php import php_intval, php_str, php_values

if TYPE_CHECKING:
    from .crm_tables import ENTITIES, ENTITY_BY_TYPE_ID

__all__ = [
    "ENTITIES",
    "ENTITY_BY_TYPE_ID",
    "Entity",
    "Field",
    "Stamps",
    "camel",
    "field_entry",
    "multifield_in",
    "parse_fields",
    "uncamel",
]

_SQL_TYPES = {
    "integer": "INTEGER",
    "user": "INTEGER",
    "crm_company": "INTEGER",
    "crm_contact": "INTEGER",
    "crm_lead": "INTEGER",
    "crm_quote": "INTEGER",
    "crm_category": "INTEGER",
    "crm_enum_ownertype": "INTEGER",
    "crm_enum_activitytype": "INTEGER",
    "crm_enum_activitystatus": "INTEGER",
    "crm_enum_activitypriority": "INTEGER",
    "crm_enum_activitynotifytype": "INTEGER",
    "crm_enum_contenttype": "INTEGER",
    "crm_enum_activitydirection": "INTEGER",
    "double": "REAL",
}
#: Types stored as JSON (lists or objects), never filtered by value.
_JSON_TYPES = frozenset(
    {"crm_multifield", "crm_activity_communication", "crm_activity_binding", "object", "diskfile"}
)
_DATE_TYPES = frozenset({"date", "datetime"})


def field_entry(
    kind: str,
    title: str,
    *,
    required: bool = False,
    read_only: bool = False,
    immutable: bool = False,
) -> dict[str, Any]:
    """One ``*.fields`` entry of a field that is no stored column (dictionaries, bindings,
    types), in the shape every ``*.fields`` method prints."""
    return {
        "type": kind,
        "isRequired": required,
        "isReadOnly": read_only,
        "isImmutable": immutable,
        "isMultiple": False,
        "isDynamic": False,
        "title": title,
    }


@dataclass(frozen=True)
class Field:
    """One field of an entity as ``crm.*.fields`` describes it."""

    name: str
    type: str
    title: str
    read_only: bool = False
    required: bool = False
    multiple: bool = False
    immutable: bool = False
    deprecated: bool = False
    #: Derived from other tables (CONTACT_IDS): no column, not printed by ``get``.
    virtual: bool = False
    status_type: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def sql_type(self) -> str:
        """The SQLite column type."""
        return _SQL_TYPES.get(self.type, "TEXT")

    @property
    def is_multifield(self) -> bool:
        """PHONE/EMAIL/WEB/IM/LINK: lists of ``{ID, VALUE, VALUE_TYPE, TYPE_ID}``."""
        return self.type == "crm_multifield"

    @cached_property
    def out_kind(self) -> str:
        """How ``legacy_out`` prints it: ``multi``, ``double``, ``date`` or ``plain``."""
        if self.is_multifield:
            return "multi"
        if self.type == "double":
            return "double"
        return "date" if self.type in _DATE_TYPES else "plain"

    @property
    def is_json(self) -> bool:
        """Stored as JSON: multi-fields, communications, bindings, settings objects."""
        return self.type in _JSON_TYPES

    def describe(self) -> dict[str, Any]:
        """The ``crm.*.fields`` entry, keys in the portal's order."""
        out: dict[str, Any] = {
            "type": self.type,
            "isRequired": self.required,
            "isReadOnly": self.read_only,
            "isImmutable": self.immutable,
            "isMultiple": self.multiple or self.is_multifield,
            "isDynamic": False,
        }
        if self.deprecated:
            out["isDeprecated"] = True
        if self.status_type:
            out["statusType"] = self.status_type
        out["title"] = self.title
        if self.settings:
            out["settings"] = dict(self.settings)
        return out

    def to_db(self, value: Any) -> Any:
        """Coerce an incoming value to what the column stores (None = empty)."""
        if self.is_json:
            return value if isinstance(value, dict | list) else None
        if isinstance(value, dict | list):
            return None
        if value is None or value == "":
            return None
        if self.sql_type == "INTEGER":
            return php_intval(value)
        if self.type == "double":
            try:
                return float(php_str(value).replace(",", "."))
            except ValueError:
                return 0.0
        if self.type == "char":
            return "Y" if php_str(value).upper() in ("Y", "1", "TRUE") else "N"
        return php_str(value)

    def legacy_out(self, value: Any) -> Any:
        """How legacy methods (``crm.lead.get``) print a stored value: mostly strings.

        Empty dates print as ``""`` (BIRTHDATE, DATE_CLOSED in a real ``crm.lead.get``);
        other empty values as null.
        """
        if value is None:
            return "" if self.type in _DATE_TYPES else None
        if self.type == "double":
            return f"{float(value):.2f}"
        if isinstance(value, int | float):
            return str(value)
        return value

    def item_out(self, value: Any) -> Any:
        """How ``crm.item.*`` prints a stored value: typed."""
        if value is None:
            return None
        if self.type == "double":
            return float(value)
        return value


@dataclass(frozen=True)
class Stamps:
    """Which columns a write stamps with the caller and the time (None: the entity has none)."""

    assigned: str | None = "ASSIGNED_BY_ID"
    created_by: str | None = "CREATED_BY_ID"
    modified_by: str | None = "MODIFY_BY_ID"
    created: str | None = "DATE_CREATE"
    modified: str | None = "DATE_MODIFY"


@dataclass(frozen=True)
class Entity:
    """A CRM entity type: method prefix, table, ``crm.item`` type id, fields, stamps."""

    name: str
    entity_type_id: int | None
    fields: tuple[Field, ...]
    defaults: tuple[tuple[str, Any], ...] = ()
    stamps: Stamps = field(default_factory=Stamps)
    #: The stage column; its semantics (P/S/F) and the moved-by stamps follow it.
    stage_field: str | None = None
    #: ``ENTITY_ID`` of its user fields (``CRM_LEAD``), None when it has none.
    uf_entity: str | None = None
    #: Key order of a ``get`` when it differs from the ``fields`` order (real captures).
    record_order: tuple[str, ...] = ()
    table_name: str = ""

    @property
    def table(self) -> str:
        """The SQLite table."""
        return self.table_name or f"crm_{self.name}"

    @cached_property
    def by_name(self) -> dict[str, Field]:
        """Fields by UPPER_SNAKE name."""
        return {f.name: f for f in self.fields}

    @cached_property
    def columns(self) -> tuple[Field, ...]:
        """Fields stored in a column of their own."""
        return tuple(f for f in self.fields if not f.virtual)

    @cached_property
    def scalar_fields(self) -> tuple[Field, ...]:
        """Fields a list returns by default (no multi-fields, no derived ones)."""
        return tuple(f for f in self.columns if not f.is_multifield)

    @cached_property
    def record_fields(self) -> tuple[Field, ...]:
        """Fields a ``get`` prints, in the portal's order."""
        printed = list(self.columns)
        if self.record_order:
            rank = {n: i for i, n in enumerate(self.record_order)}
            printed.sort(key=lambda f: rank.get(f.name, len(rank)))
        return tuple(printed)

    @cached_property
    def json_columns(self) -> frozenset[str]:
        """Columns decoded from JSON when read."""
        return frozenset({"UF", *(f.name for f in self.columns if f.is_json)})

    @cached_property
    def by_camel(self) -> dict[str, Field]:
        """Fields by their ``crm.item`` camelCase name."""
        return {camel(f.name): f for f in self.fields}


_CAMEL_OVERRIDES = {
    "ID": "id",
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "STATUS_ID": "stageId",
    "STATUS_SEMANTIC_ID": "stageSemanticId",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "MOVED_BY_ID": "movedBy",
    "PHONE": "fm",
    "EMAIL": "fmEmail",
}


def camel(name: str) -> str:
    """``ASSIGNED_BY_ID`` -> ``assignedById``; ``UF_CRM_X`` -> ``ufCrmX``.

    A digit part after a letter part joins it, one after a digit part keeps its underscore:
    ``UF_CRM_11_1712074666`` -> ``ufCrm11_1712074666`` (as real smart-process items print).
    """
    if name in _CAMEL_OVERRIDES:
        return _CAMEL_OVERRIDES[name]
    parts = [p for p in name.lower().split("_") if p]
    if not parts:
        return name
    out = parts[0]
    for part in parts[1:]:
        if part[0].isdigit():
            out += ("_" if out[-1].isdigit() else "") + part
        else:
            out += part[0].upper() + part[1:]
    return out


def uncamel(name: str) -> str:
    """The inverse of :func:`camel` for user fields (``ufCrm11_17`` -> ``UF_CRM_11_17``)."""
    spaced = re.sub(r"(?<!^)([A-Z])", r"_\1", name)
    return re.sub(r"(?<=[A-Za-z])(\d)", r"_\1", spaced).upper()


_FLAG_NAMES = {
    "R": "required",
    "O": "read_only",
    "I": "immutable",
    "M": "multiple",
    "X": "deprecated",
    "V": "virtual",
}


def parse_fields(spec: str) -> tuple[Field, ...]:
    """Fields from a table, one a line: ``NAME type[:STATUS|>PARENT] FLAGS Title words``.

    ``FLAGS`` is ``-`` or letters: R required, O read-only, I immutable, M multiple,
    X deprecated, V virtual. ``crm_status:SOURCE`` sets ``statusType``; ``crm_company>4``
    sets ``settings.parentEntityTypeId``.
    """
    out: list[Field] = []
    for line in spec.strip().splitlines():
        name, type_, flags, title = [*line.split(None, 3), ""][:4]
        status_type = None
        settings: tuple[tuple[str, Any], ...] = ()
        if ":" in type_:
            type_, status_type = type_.split(":", 1)
        elif ">" in type_:
            type_, parent = type_.split(">", 1)
            settings = (("parentEntityTypeId", int(parent)),)
        kw = {_FLAG_NAMES[c]: True for c in flags if c in _FLAG_NAMES}
        out.append(
            Field(
                name,
                type_,
                title or name,
                status_type=status_type,
                settings=settings,
                **kw,
            )
        )
    return tuple(out)


def multifield_in(
    existing: list[dict[str, Any]], value: Any, type_id: str, new_id: Callable[[], int]
) -> list[dict[str, Any]]:
    """Merge PHONE/EMAIL input into the stored list: new entries appended, ``ID`` updates,
    ``ID`` with an empty VALUE (or ``DELETE=Y``) removes."""
    entries = [dict(e) for e in existing]
    for raw in php_values(value) if isinstance(value, dict | list) else []:
        if not isinstance(raw, dict | list):
            continue
        item = raw if isinstance(raw, dict) else dict(enumerate(raw))
        val = php_str(item.get("VALUE", ""))
        vtype = php_str(item.get("VALUE_TYPE", "WORK")) or "WORK"
        ident = php_intval(item.get("ID", 0))
        if ident:
            match = [e for e in entries if int(e["ID"]) == ident]
            if not match:
                continue
            if not val or php_str(item.get("DELETE", "")).upper() == "Y":
                entries.remove(match[0])
            else:
                match[0].update({"VALUE": val, "VALUE_TYPE": vtype})
        elif val:
            entries.append(
                {"ID": str(new_id()), "VALUE_TYPE": vtype, "VALUE": val, "TYPE_ID": type_id}
            )
    return entries


def __getattr__(name: str) -> Any:
    # ENTITIES / ENTITY_BY_TYPE_ID live with the tables (crm_tables imports this module, so
    # they are looked up lazily to keep either import order working).
    if name in ("ENTITIES", "ENTITY_BY_TYPE_ID"):
        from . import crm_tables

        return getattr(crm_tables, name)
    raise AttributeError(name)
