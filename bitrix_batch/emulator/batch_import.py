"""``crm.item.batchImport``: up to 20 ``crm.item`` creations in one call.

As documented: ``entityTypeId`` and ``data`` (a list of ``fields`` sets, camelCase names);
the answer is ``result.items``, one entry per element of ``data`` in its order, either
``{"item": {"id": N}}`` or ``{"error": code, "error_description": text}``. More than 20
elements refuse the whole call (400 ``MAX_IMPORT_BATCH_SIZE_EXCEEDED``) before anything is
created; an unknown entity type is the whole call's 400 ``NOT_FOUND``.

Each element is created by whatever handler is registered as ``crm.item.add``, looked up per
call, so every entity type that method knows is importable here too.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey

__all__ = ["MAX_IMPORT_ITEMS", "register_batch_import"]

#: "A maximum of 20 entities can be imported in a single request."
MAX_IMPORT_ITEMS = 20


def _missing(name: str) -> errors.RestError:
    # Controller methods answer a missing argument with the integer code 100.
    return errors.RestError(
        "100", f"Could not find value for parameter {{{name}}}", 400, {"error": 100}
    )


def batch_import(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """Create each element of ``data`` through ``crm.item.add``; per-item outcomes."""
    if "entityTypeId" not in params:
        raise _missing("entityTypeId")
    data = params.get("data")
    if data is None:
        raise _missing("data")
    if not isinstance(data, dict):  # parse_str and JSON lists both arrive as PHP arrays
        raise errors.RestError(
            "100",
            "Invalid value to match with parameter {data}. Should be value of type array.",
            400,
            {"error": 100},
        )
    if len(data) > MAX_IMPORT_ITEMS:
        raise errors.RestError(
            "MAX_IMPORT_BATCH_SIZE_EXCEEDED",
            f"You cannot import more than {MAX_IMPORT_ITEMS} items",
        )
    add, describe = ctx.engine.lookup("crm.item.add"), ctx.engine.lookup("crm.item.fields")
    if add is None or describe is None:  # pragma: no cover - both are always registered
        raise errors.method_not_found()
    # An unknown entity type fails the whole call; crm.item.fields says so without writing.
    describe.handler(ctx, {"entityTypeId": params["entityTypeId"]})
    items: list[dict[str, Any]] = []
    rows = 0
    for fields in data.values():
        sub: dict[PhpKey, Any] = {"entityTypeId": params["entityTypeId"], "fields": fields}
        if "useOriginalUfNames" in params:
            sub["useOriginalUfNames"] = params["useOriginalUfNames"]
        try:
            produced = add.handler(ctx, sub)
        except errors.RestError as exc:
            items.append({"error": exc.code, "error_description": exc.description})
            continue
        rows += 1
        item = produced.result.get("item") if isinstance(produced.result, dict) else None
        ident = item.get("id") if isinstance(item, dict) else None
        items.append({"item": {"id": ident}})
    return MethodResult({"items": items}, rows=rows)


def register_batch_import(engine: Engine) -> None:
    """Add ``crm.item.batchImport`` (scope ``crm``)."""
    engine.register("crm.item.batchImport", batch_import, "crm")
