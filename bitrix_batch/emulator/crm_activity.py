"""``crm.activity.*`` and ``crm.timeline.comment.*``: the generic legacy handlers from
:mod:`.crm` (their fields are tables in :mod:`.crm_tables`) with the checks these two add:
an owner that exists, the required fields, and ``COMMUNICATIONS`` for calls, meetings and
e-mails. Also ``crm.duplicate.findbycomm``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import errors
from .crm_tables import ACTIVITY, ENTITY_BY_TYPE_ID, TIMELINE_COMMENT
from .engine import CallContext, Engine, MethodResult
from .entities import field_entry
from .php import PhpKey, php_intval, php_str, php_values

__all__ = ["register_activity"]

#: Activity types whose add needs COMMUNICATIONS (meeting, call, e-mail).
_NEEDS_COMMUNICATIONS = frozenset({1, 2, 4})
_COMMUNICATION_KIND = {2: "PHONE", 4: "EMAIL", 1: ""}
_TIMELINE_OWNERS = {"lead": 1, "deal": 2, "contact": 3, "company": 4}
_DUPLICATE_TYPES = {"LEAD": "crm_lead", "CONTACT": "crm_contact", "COMPANY": "crm_company"}


def _owner_exists(ctx: CallContext, type_id: int, owner_id: int) -> bool:
    entity = ENTITY_BY_TYPE_ID.get(type_id)
    if entity is None:
        from .crm_types import dynamic_entity

        entity = dynamic_entity(ctx.store, type_id) if type_id >= 128 else None
    return entity is not None and ctx.store.fetch_row(entity.table, owner_id) is not None


def _upper_fields(params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    fields = {str(k).upper(): v for k, v in params.items()}.get("FIELDS")
    if not isinstance(fields, dict):
        raise errors.RestError("", "The parameter 'fields' must be array.")
    return {str(k).upper(): v for k, v in fields.items()}


def _communications(raw: Any, type_id: int, owner: tuple[int, int]) -> list[dict[str, Any]]:
    out = []
    for n, entry in enumerate(php_values(raw) if isinstance(raw, dict | list) else []):
        if not isinstance(entry, dict):
            continue
        item = {str(k).upper(): v for k, v in entry.items()}
        value = php_str(item.get("VALUE", ""))
        if not value:
            continue
        out.append(
            {
                "ID": str(n + 1),
                "TYPE": php_str(item.get("TYPE", "")) or _COMMUNICATION_KIND.get(type_id, ""),
                "VALUE": value,
                "ENTITY_ID": str(php_intval(item.get("ENTITY_ID")) or owner[1]),
                "ENTITY_TYPE_ID": str(php_intval(item.get("ENTITY_TYPE_ID")) or owner[0]),
            }
        )
    return out


def _activity_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    from .crm import Crm

    fields = _upper_fields(params)
    owner_type = php_intval(fields.get("OWNER_TYPE_ID"))
    owner_id = php_intval(fields.get("OWNER_ID"))
    type_id = php_intval(fields.get("TYPE_ID"))
    for name, value in (
        ("OWNER_TYPE_ID", owner_type),
        ("OWNER_ID", owner_id),
        ("TYPE_ID", type_id),
    ):
        if value <= 0:
            raise errors.RestError("", f"The field {name} is not defined or invalid.")
    if not _owner_exists(ctx, owner_type, owner_id):
        raise errors.RestError("", "Owner is not found.")
    communications = _communications(fields.get("COMMUNICATIONS"), type_id, (owner_type, owner_id))
    if type_id in _NEEDS_COMMUNICATIONS and not communications:
        raise errors.RestError("", "The field COMMUNICATIONS is not defined or invalid.")
    fields["COMMUNICATIONS"] = communications
    fields["BINDINGS"] = [{"OWNER_ID": str(owner_id), "OWNER_TYPE_ID": str(owner_type)}]
    fields.setdefault("SUBJECT", "")
    row = Crm(ACTIVITY).create(ctx, fields)
    # BINDINGS is read-only to callers; the owner binding is written by the server.
    ctx.store.update_row(ACTIVITY.table, int(row["ID"]), {"BINDINGS": fields["BINDINGS"]})
    return MethodResult(int(row["ID"]), rows=1)


def _timeline_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    from .crm import Crm

    fields = _upper_fields(params)
    kind = php_str(fields.get("ENTITY_TYPE", "")).lower()
    owner_id = php_intval(fields.get("ENTITY_ID"))
    type_id = _TIMELINE_OWNERS.get(kind)
    if type_id is None and kind.startswith("dynamic_"):
        type_id = php_intval(kind.removeprefix("dynamic_"))
    if not type_id or owner_id <= 0 or not _owner_exists(ctx, type_id, owner_id):
        raise errors.RestError("OWNER_NOT_FOUND", "Owner of the item not found")
    if not php_str(fields.get("COMMENT", "")).strip():
        raise errors.RestError("INVALID_ARG_VALUE", "Empty comment")
    fields["ENTITY_TYPE"] = kind
    row = Crm(TIMELINE_COMMENT).create(ctx, fields)
    return MethodResult(int(row["ID"]), rows=1)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def duplicate_findbycomm(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.duplicate.findbycomm``: IDs per entity type holding any of ``values`` (max 20)."""
    upper = {str(k).upper(): v for k, v in params.items()}
    kind = php_str(upper.get("TYPE", "")).upper()
    if kind not in ("EMAIL", "PHONE"):
        raise errors.RestError("", "Communication type is not defined or invalid.")
    raw = upper.get("VALUES")
    values = [php_str(v) for v in (php_values(raw) if isinstance(raw, dict | list) else [])]
    if not values:
        raise errors.RestError("", "Communication values are not defined.")
    if len(values) > 20:
        raise errors.RestError("", "Too many communication values (20 at most).")
    wanted_type = php_str(upper.get("ENTITY_TYPE", "")).upper()
    tables = {k: v for k, v in _DUPLICATE_TYPES.items() if not wanted_type or k == wanted_type}
    if kind == "PHONE":
        targets = {_digits(v) for v in values if _digits(v)}
        norm = "replace(replace(replace(replace(replace(replace(json_extract(value, '$.VALUE'),"
        norm += "' ', ''), '-', ''), '(', ''), ')', ''), '+', ''), '.', '')"
    else:
        targets = {v.strip().lower() for v in values}
        norm = "lower(trim(json_extract(value, '$.VALUE')))"
    out: dict[str, list[int]] = {}
    marks = ", ".join("?" * len(targets)) or "NULL"
    for name, table in tables.items():
        rows = ctx.store.db.execute(
            f'SELECT DISTINCT {table}.ID FROM {table}, json_each({table}."{kind}") '
            f"WHERE {norm} IN ({marks}) ORDER BY {table}.ID",
            list(targets),
        ).fetchall()
        if rows:
            out[name] = [int(r[0]) for r in rows]
    return MethodResult(out if out else [], rows=sum(len(v) for v in out.values()))


def _activity_row(ctx: CallContext, params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    ident = php_intval(params.get("activityId"))
    row = ctx.store.fetch_row(ACTIVITY.table, ident) if ident > 0 else None
    if row is None:
        raise errors.RestError("NOT_FOUND", "Activity not found")
    return row


def _save_bindings(ctx: CallContext, row: dict[str, Any], pairs: list[tuple[int, int]]) -> None:
    bindings = [{"OWNER_ID": str(i), "OWNER_TYPE_ID": str(t)} for t, i in pairs]
    ctx.store.update_row(ACTIVITY.table, int(row["ID"]), {"BINDINGS": bindings})


def _pairs(row: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(b["OWNER_TYPE_ID"]), int(b["OWNER_ID"])) for b in row.get("BINDINGS") or []]


def binding_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.binding.list?activityId=n``: ``entityTypeId``/``entityId`` pairs."""
    pairs = _pairs(_activity_row(ctx, params))
    return MethodResult([{"entityTypeId": t, "entityId": i} for t, i in pairs], rows=len(pairs))


def binding_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.binding.add``: bind the activity to one more record."""
    row = _activity_row(ctx, params)
    pair = (php_intval(params.get("entityTypeId")), php_intval(params.get("entityId")))
    if not _owner_exists(ctx, *pair):
        raise errors.RestError("NOT_FOUND", "Owner not found")
    pairs = _pairs(row)
    if pair in pairs:
        raise errors.RestError("ALREADY_BOUND", "The activity is already bound to this item")
    _save_bindings(ctx, row, [*pairs, pair])
    return MethodResult(True, rows=1)


def binding_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.binding.delete``: an activity keeps at least one binding."""
    row = _activity_row(ctx, params)
    pair = (php_intval(params.get("entityTypeId")), php_intval(params.get("entityId")))
    pairs = _pairs(row)
    if pair not in pairs:
        raise errors.RestError("NOT_FOUND", "Binding not found")
    if len(pairs) == 1:
        raise errors.RestError("LAST_BINDING", "The last binding of an activity cannot go")
    _save_bindings(ctx, row, [p for p in pairs if p != pair])
    return MethodResult(True, rows=1)


def binding_move(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.binding.move``: rebind from a source record to a target record."""
    row = _activity_row(ctx, params)
    source = (
        php_intval(params.get("sourceEntityTypeId")),
        php_intval(params.get("sourceEntityId")),
    )
    target = (
        php_intval(params.get("targetEntityTypeId")),
        php_intval(params.get("targetEntityId")),
    )
    pairs = _pairs(row)
    if source not in pairs:
        raise errors.RestError("NOT_FOUND", "Binding not found")
    if not _owner_exists(ctx, *target):
        raise errors.RestError("NOT_FOUND", "Owner not found")
    _save_bindings(ctx, row, [target if p == source else p for p in pairs if p != target])
    return MethodResult(True, rows=1)


def communication_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.communication.fields``."""

    def entry(kind: str, title: str, required: bool = False) -> dict[str, Any]:
        return field_entry(kind, title, required=required)

    return MethodResult(
        {
            "ID": {**entry("integer", "ID"), "isReadOnly": True},
            "ACTIVITY_ID": entry("integer", "Activity ID"),
            "TYPE": entry("string", "Type"),
            "VALUE": entry("string", "Value", True),
            "ENTITY_ID": entry("integer", "Entity ID", True),
            "ENTITY_TYPE_ID": entry("integer", "Entity type ID", True),
        }
    )


def type_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.type.add``: an application's activity type (TYPE_ID unique)."""
    fields = _upper_fields(params)
    type_id, name = php_str(fields.get("TYPE_ID", "")), php_str(fields.get("NAME", ""))
    if not type_id or not name:
        raise errors.RestError("", "The fields TYPE_ID and NAME are required.")
    if ctx.store.count("crm_activity_type", '"TYPE_ID" = ?', [type_id]):
        raise errors.RestError("", f"Activity type {type_id} already exists.")
    configurable = "Y" if php_str(fields.get("IS_CONFIGURABLE_TYPE", "N")).upper() == "Y" else "N"
    ctx.store.insert_row(
        "crm_activity_type",
        {"TYPE_ID": type_id, "NAME": name, "IS_CONFIGURABLE_TYPE": configurable},
    )
    return MethodResult(True, rows=1)


def type_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.type.list``."""
    rows = ctx.store.select("crm_activity_type")
    out = [
        {
            "ID": str(r["ID"]),
            "NAME": r["NAME"],
            "TYPE_ID": r["TYPE_ID"],
            "IS_CONFIGURABLE_TYPE": r["IS_CONFIGURABLE_TYPE"],
        }
        for r in rows
    ]
    return MethodResult(out, rows=len(out))


def type_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.activity.type.delete?TYPE_ID=…``."""
    type_id = php_str({str(k).upper(): v for k, v in params.items()}.get("TYPE_ID", ""))
    gone = ctx.store.db.execute('DELETE FROM crm_activity_type WHERE "TYPE_ID" = ?', (type_id,))
    if gone.rowcount == 0:
        raise errors.not_found()
    return MethodResult(True, rows=1)


def register_activity(engine: Engine) -> None:
    """Override the generic ``add`` of activities and timeline comments; bindings, types,
    duplicates."""
    engine.register("crm.activity.add", _activity_add, "crm")
    for name, handler in (
        ("binding.list", binding_list),
        ("binding.add", binding_add),
        ("binding.delete", binding_delete),
        ("binding.move", binding_move),
        ("communication.fields", communication_fields),
        ("type.add", type_add),
        ("type.list", type_list),
        ("type.delete", type_delete),
    ):
        engine.register(f"crm.activity.{name}", handler, "crm")
    engine.register("crm.timeline.comment.add", _timeline_add, "crm")
    engine.register("crm.duplicate.findbycomm", duplicate_findbycomm, "crm")
