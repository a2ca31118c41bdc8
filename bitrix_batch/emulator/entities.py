"""CRM entity definitions: fields, their types, and how values go in and come out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .php import php_intval, php_str, php_values

__all__ = ["ENTITIES", "ENTITY_BY_TYPE_ID", "Entity", "Field", "camel"]

_SQL_TYPES = {
    "integer": "INTEGER",
    "user": "INTEGER",
    "crm_company": "INTEGER",
    "crm_contact": "INTEGER",
    "crm_category": "INTEGER",
    "double": "REAL",
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

    @property
    def sql_type(self) -> str:
        """The SQLite column type."""
        return _SQL_TYPES.get(self.type, "TEXT")

    @property
    def is_multifield(self) -> bool:
        """PHONE/EMAIL/WEB/IM: lists of ``{ID, VALUE, VALUE_TYPE, TYPE_ID}``."""
        return self.type == "crm_multifield"

    def describe(self) -> dict[str, Any]:
        """The ``crm.*.fields`` entry."""
        return {
            "type": self.type,
            "isRequired": self.required,
            "isReadOnly": self.read_only,
            "isImmutable": False,
            "isMultiple": self.multiple or self.is_multifield,
            "isDynamic": False,
            "title": self.title,
        }

    def to_db(self, value: Any) -> Any:
        """Coerce an incoming value to what the column stores (None = empty)."""
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
        """How legacy methods (``crm.lead.get``) print a stored value: mostly strings."""
        if value is None:
            return None
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


def _f(name: str, type_: str = "string", title: str | None = None, **kw: bool) -> Field:
    return Field(name, type_, title or name.replace("_", " ").title(), **kw)


_COMMON_TAIL = (
    _f("COMMENTS"),
    _f("OPENED", "char"),
    _f("SOURCE_ID", "crm_status", "Source"),
    _f("ASSIGNED_BY_ID", "user", "Responsible"),
    _f("CREATED_BY_ID", "user", "Created by", read_only=True),
    _f("MODIFY_BY_ID", "user", "Modified by", read_only=True),
    _f("DATE_CREATE", "datetime", "Created", read_only=True),
    _f("DATE_MODIFY", "datetime", "Modified", read_only=True),
)
_CONTACT_POINTS = (
    _f("HAS_PHONE", "char", "Has phone", read_only=True),
    _f("HAS_EMAIL", "char", "Has email", read_only=True),
    _f("PHONE", "crm_multifield", "Phone"),
    _f("EMAIL", "crm_multifield", "E-mail"),
)


@dataclass(frozen=True)
class Entity:
    """A CRM entity type: legacy method prefix, table, ``crm.item`` type id, fields."""

    name: str
    entity_type_id: int
    fields: tuple[Field, ...]
    defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def table(self) -> str:
        """The SQLite table."""
        return f"crm_{self.name}"

    @property
    def by_name(self) -> dict[str, Field]:
        """Fields by UPPER_SNAKE name."""
        return {f.name: f for f in self.fields}

    @property
    def scalar_fields(self) -> tuple[Field, ...]:
        """Fields a list returns by default (no multi-fields)."""
        return tuple(f for f in self.fields if not f.is_multifield)

    @property
    def by_camel(self) -> dict[str, Field]:
        """Fields by their ``crm.item`` camelCase name."""
        return {camel(f.name): f for f in self.fields}


_CAMEL_OVERRIDES = {
    "ID": "id",
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "STATUS_ID": "stageId",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "PHONE": "fm",
    "EMAIL": "fmEmail",
}


def camel(name: str) -> str:
    """``ASSIGNED_BY_ID`` -> ``assignedById``; ``UF_CRM_X`` -> ``ufCrmX``."""
    if name in _CAMEL_OVERRIDES:
        return _CAMEL_OVERRIDES[name]
    parts = [p for p in name.lower().split("_") if p]
    return parts[0] + "".join(p.title() for p in parts[1:]) if parts else name


def uncamel(name: str) -> str:
    """The inverse of :func:`camel` for user fields (``ufCrmX`` -> ``UF_CRM_X``)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).upper()


LEAD = Entity(
    "lead",
    1,
    (
        _f("ID", "integer", "ID", read_only=True),
        _f("TITLE", title="Lead name"),
        _f("NAME", title="First name"),
        _f("SECOND_NAME", title="Middle name"),
        _f("LAST_NAME", title="Last name"),
        _f("STATUS_ID", "crm_status", "Stage"),
        _f("OPPORTUNITY", "double", "Total"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("COMPANY_ID", "crm_company", "Company"),
        _f("CONTACT_ID", "crm_contact", "Contact"),
        _f("POST", title="Position"),
        _f("ADDRESS", title="Address"),
        *_COMMON_TAIL,
        *_CONTACT_POINTS,
    ),
    (("STATUS_ID", "NEW"), ("OPENED", "Y"), ("CURRENCY_ID", "RUB"), ("OPPORTUNITY", 0.0)),
)
CONTACT = Entity(
    "contact",
    3,
    (
        _f("ID", "integer", "ID", read_only=True),
        _f("NAME", title="First name"),
        _f("SECOND_NAME", title="Middle name"),
        _f("LAST_NAME", title="Last name"),
        _f("POST", title="Position"),
        _f("TYPE_ID", "crm_status", "Contact type"),
        _f("COMPANY_ID", "crm_company", "Company"),
        _f("BIRTHDATE", "date", "Date of birth"),
        _f("ADDRESS", title="Address"),
        *_COMMON_TAIL,
        *_CONTACT_POINTS,
    ),
    (("TYPE_ID", "CLIENT"), ("OPENED", "Y")),
)
COMPANY = Entity(
    "company",
    4,
    (
        _f("ID", "integer", "ID", read_only=True),
        _f("TITLE", title="Company name", required=True),
        _f("COMPANY_TYPE", "crm_status", "Company type"),
        _f("INDUSTRY", "crm_status", "Industry"),
        _f("EMPLOYEES", "crm_status", "Employees"),
        _f("REVENUE", "double", "Annual revenue"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("ADDRESS", title="Address"),
        *_COMMON_TAIL,
        *_CONTACT_POINTS,
    ),
    (("COMPANY_TYPE", "CUSTOMER"), ("OPENED", "Y"), ("CURRENCY_ID", "RUB")),
)
DEAL = Entity(
    "deal",
    2,
    (
        _f("ID", "integer", "ID", read_only=True),
        _f("TITLE", title="Name"),
        _f("TYPE_ID", "crm_status", "Type"),
        _f("CATEGORY_ID", "crm_category", "Pipeline"),
        _f("STAGE_ID", "crm_status", "Stage"),
        _f("PROBABILITY", "integer", "Probability"),
        _f("OPPORTUNITY", "double", "Amount"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("COMPANY_ID", "crm_company", "Company"),
        _f("CONTACT_ID", "crm_contact", "Contact"),
        _f("BEGINDATE", "date", "Start date"),
        _f("CLOSEDATE", "date", "End date"),
        _f("CLOSED", "char", "Closed"),
        *_COMMON_TAIL,
    ),
    (
        ("STAGE_ID", "NEW"),
        ("CATEGORY_ID", 0),
        ("OPENED", "Y"),
        ("CLOSED", "N"),
        ("CURRENCY_ID", "RUB"),
        ("OPPORTUNITY", 0.0),
    ),
)

ENTITIES: dict[str, Entity] = {e.name: e for e in (LEAD, CONTACT, COMPANY, DEAL)}
ENTITY_BY_TYPE_ID: dict[int, Entity] = {e.entity_type_id: e for e in ENTITIES.values()}


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
