"""``crm.enum.*``: the constant lists portals answer (owner types, activity types, statuses,
directions, priorities, content types, address types, settings mode), and ``crm.enum.fields``.
``crm.enum.ownertype`` adds this portal's smart processes after the fixed types.
"""

from __future__ import annotations

from typing import Any

from .engine import CallContext, Engine, MethodResult
from .entities import field_entry
from .php import PhpKey

__all__ = ["register_enums"]


def _enum(*names: str) -> list[dict[str, Any]]:
    return [
        {"ID": n, "NAME": name, "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None}
        for n, name in enumerate(names)
    ]


_OWNER_TYPES = (
    (1, "Lead", "LEAD", "L"),
    (2, "Deal", "DEAL", "D"),
    (3, "Contact", "CONTACT", "C"),
    (4, "Company", "COMPANY", "CO"),
    (5, "Invoice (old version)", "INVOICE", "I"),
    (31, "Invoice", "SMART_INVOICE", "SI"),
    (7, "Quote", "QUOTE", "Q"),
    (8, "Billing Details", "REQUISITE", "RQ"),
    (36, "Document", "SMART_DOCUMENT", "DO"),
    (39, "Company Document", "SMART_B2E_DOC", "SBD"),
)
_ENUMS: dict[str, list[dict[str, Any]]] = {
    "activitytype": _enum("", "Meeting", "Call", "Task", "E-mail", "Action", "User action"),
    "contenttype": _enum("", "Plain text", "bbCode", "HTML"),
    "activitystatus": _enum("", "Pending", "Completed", "Automatically completed"),
    "activitydirection": _enum("", "Incoming", "Outgoing"),
    "activitypriority": _enum("", "low", "medium", "high"),
    "activitynotifytype": _enum("", "min.", "h.", "d."),
    "settings.mode": [
        {"ID": 1, "NAME": "Classic CRM", "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None},
        {"ID": 2, "NAME": "Simple CRM", "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None},
    ],
    "addresstype": [
        {"ID": n, "NAME": name, "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None}
        for n, name in (
            (11, "Shipping address"),
            (1, "Physical address"),
            (6, "Legal address"),
            (4, "Registered address"),
            (8, "Mailing address"),
            (9, "Beneficiary address"),
        )
    ],
}


def _enum_handler(values: list[dict[str, Any]]) -> Any:
    def handler(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        return MethodResult([dict(v) for v in values])

    return handler


def enum_ownertype(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.enum.ownertype``: the fixed types, then this portal's smart processes."""
    out = [
        {"ID": i, "NAME": n, "SYMBOL_CODE": c, "SYMBOL_CODE_SHORT": s}
        for i, n, c, s in _OWNER_TYPES
    ]
    for row in ctx.store.select("crm_type"):
        type_id = int(row["ENTITY_TYPE_ID"])
        out.append(
            {
                "ID": type_id,
                "NAME": (row["DATA"] or {}).get("title", ""),
                "SYMBOL_CODE": f"DYNAMIC_{type_id}",
                "SYMBOL_CODE_SHORT": f"T{type_id:x}",
            }
        )
    return MethodResult(out)


def enum_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.enum.fields``: the shape of every enum entry."""

    def entry(kind: str, title: str) -> dict[str, Any]:
        return field_entry(kind, title, read_only=True)

    return MethodResult(
        {
            "ID": entry("int", "ID"),
            "NAME": entry("string", "Name"),
            "SYMBOL_CODE": entry("string", "Symbol code"),
            "SYMBOL_CODE_SHORT": entry("string", "Short symbol code"),
        }
    )


def enum_order_owner_types(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.enum.getorderownertypes``."""
    return MethodResult([{"attribute": "DYN", "code": "DEAL", "id": 2, "name": "Deal"}])


def multifield_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.multifield.fields``: the entry of PHONE/EMAIL/WEB/IM/LINK lists."""

    def entry(kind: str, title: str, read_only: bool) -> dict[str, Any]:
        return field_entry(kind, title, read_only=read_only)

    return MethodResult(
        {
            "ID": entry("int", "ID", True),
            "TYPE_ID": entry("string", "Field type", True),
            "VALUE": entry("string", "Value", False),
            "VALUE_TYPE": entry("string", "Value type", False),
        }
    )


def register_enums(engine: Engine) -> None:
    """Register every ``crm.enum.*`` method."""
    engine.register("crm.enum.ownertype", enum_ownertype, "crm")
    engine.register("crm.enum.fields", enum_fields, "crm")
    engine.register("crm.enum.getorderownertypes", enum_order_owner_types, "crm")
    engine.register("crm.multifield.fields", multifield_fields, "crm")
    for suffix, values in _ENUMS.items():
        engine.register(f"crm.enum.{suffix}", _enum_handler(values), "crm")
