"""Product rows: legacy ``crm.lead|deal.productrows.get/set`` and ``crm.item.productrow.*``.

One table holds both views. A row keeps its values in camelCase (the ``crm.item`` names);
the legacy methods print them UPPER_SNAKE with the legacy types (``ID`` and ``OWNER_ID`` as
strings, ``PRICE_ACCOUNT`` as a two-decimal string). Prices follow the portal's arithmetic:
``PRICE`` is the final unit price, discount and tax are taken back out of it. Writing rows
recomputes the owner's ``OPPORTUNITY`` unless it is manual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .entities import camel, field_entry
from .php import PhpKey, php_intval, php_str, php_values
from .query import Column, build_order, build_where

__all__ = ["forget_rows", "register_productrows"]

_TABLE = "crm_productrow"
_LEGACY_OWNERS = {"lead": ("L", 1, "crm_lead"), "deal": ("D", 2, "crm_deal")}
_OWNER_CODES = {1: "L", 2: "D", 3: "C", 4: "CO", 7: "Q", 31: "SI"}
_NUMBERS = (
    "price",
    "priceExclusive",
    "priceNetto",
    "priceBrutto",
    "quantity",
    "discountRate",
    "discountSum",
)
_LEGACY_KEYS = [
    "productId",
    "productName",
    "originalProductName",
    "productDescription",
    "price",
    "priceExclusive",
    "priceNetto",
    "priceBrutto",
    "priceAccount",
    "quantity",
    "discountTypeId",
    "discountRate",
    "discountSum",
    "taxRate",
    "taxIncluded",
    "customized",
    "measureCode",
    "measureName",
    "sort",
    "xmlId",
    "type",
    "storeId",
]
_COLUMNS = {
    "id": Column('"ID"', "INTEGER"),
    "ownerId": Column('"OWNER_ID"', "INTEGER"),
    "ownerType": Column('"OWNER_TYPE"'),
    "sort": Column('"SORT"', "INTEGER"),
    "productId": Column("json_extract(DATA, '$.productId')", "INTEGER"),
}


def owner_code(type_id: int) -> str:
    """The ``ownerType`` of an entity type: ``D``, ``L``, ... ``T<hex>`` for smart processes."""
    return _OWNER_CODES.get(type_id) or f"T{type_id:x}"


def _owner_table(code: str) -> str | None:
    by_code = {v: k for k, v in _OWNER_CODES.items()}
    type_id = by_code.get(code)
    if type_id is None and code.startswith("T"):
        try:
            type_id = int(code[1:], 16)
        except ValueError:
            return None
        return f"crm_dynamic_{type_id}"
    return {1: "crm_lead", 2: "crm_deal", 3: "crm_contact", 4: "crm_company"}.get(type_id or 0)


def _number(value: Any, default: float = 0.0) -> float:
    try:
        return float(php_str(value).replace(",", ".")) if value not in (None, "") else default
    except ValueError:
        return default


def _plain(value: float) -> int | float:
    """Whole numbers print as integers, as portals print ``QUANTITY: 1``."""
    return int(value) if float(value).is_integer() else round(value, 4)


def _compute(raw: Mapping[str, Any], row_id: int) -> dict[str, Any]:
    """A row from camelCase input: the price arithmetic and the defaults."""
    tax = raw.get("taxRate")
    tax_rate = None if tax in (None, "") else _number(tax)
    included = php_str(raw.get("taxIncluded", "N")).upper() == "Y"
    price = _number(raw.get("price"), _number(raw.get("priceExclusive")))
    factor = 1 + (tax_rate or 0) / 100
    exclusive = price / factor if tax_rate else price
    discount_type = php_intval(raw.get("discountTypeId", 2)) or 2
    rate = _number(raw.get("discountRate"))
    if discount_type == 1:
        discount = _number(raw.get("discountSum"))
        netto = exclusive + discount
        rate = discount / netto * 100 if netto else 0.0
    else:
        netto = exclusive / (1 - rate / 100) if rate < 100 else exclusive
        discount = netto - exclusive
    name = php_str(raw.get("productName", "")) or f"[{row_id}]"  # row_id 0: set after insert
    return {
        "productId": php_intval(raw.get("productId", 0)),
        "productName": name,
        "originalProductName": name,
        "productDescription": raw.get("productDescription"),
        "price": _plain(price),
        "priceExclusive": _plain(exclusive),
        "priceNetto": _plain(netto),
        "priceBrutto": _plain(netto * factor if tax_rate else netto),
        "priceAccount": _plain(price),
        "quantity": _plain(_number(raw.get("quantity"), 1.0)),
        "discountTypeId": discount_type,
        "discountRate": _plain(rate),
        "discountSum": _plain(discount),
        "taxRate": tax_rate,
        "taxIncluded": "Y" if included else "N",
        "customized": php_str(raw.get("customized", "Y")) or "Y",
        "measureCode": php_intval(raw.get("measureCode", 796)),
        "measureName": php_str(raw.get("measureName", "pcs")) or "pcs",
        "sort": php_intval(raw.get("sort", 10)),
        "xmlId": php_str(raw.get("xmlId", "")),
        "type": php_intval(raw.get("type", 1)) or 1,
        "storeId": php_intval(raw.get("storeId", 0)),
    }


def _item_out(row: dict[str, Any]) -> dict[str, Any]:
    data = dict(row["DATA"] or {})
    out: dict[str, Any] = {
        "id": int(row["ID"]),
        "ownerId": int(row["OWNER_ID"]),
        "ownerType": row["OWNER_TYPE"],
    }
    out.update(data)
    out["priceAccount"] = data.get("priceAccount", 0)
    return out


def _legacy_out(row: dict[str, Any]) -> dict[str, Any]:
    data = dict(row["DATA"] or {})
    out: dict[str, Any] = {
        "ID": str(row["ID"]),
        "OWNER_ID": str(row["OWNER_ID"]),
        "OWNER_TYPE": row["OWNER_TYPE"],
    }
    for key in _LEGACY_KEYS:
        upper = "".join("_" + c if c.isupper() else c.upper() for c in key)
        out[upper] = data.get(key)
    out["PRICE_ACCOUNT"] = f"{float(data.get('priceAccount') or 0):.2f}"
    return out


def _rows_of(ctx: CallContext, code: str, owner_id: int) -> list[dict[str, Any]]:
    return ctx.store.select(
        _TABLE, '"OWNER_TYPE" = ? AND "OWNER_ID" = ?', [code, owner_id], '"SORT" ASC, "ID" ASC'
    )


def _recount(ctx: CallContext, code: str, owner_id: int) -> None:
    """The owner's OPPORTUNITY is the rows' sum unless it was set by hand."""
    table = _owner_table(code)
    if table is None:
        return
    owner = ctx.store.fetch_row(table, owner_id)
    if owner is None or "OPPORTUNITY" not in owner or owner.get("IS_MANUAL_OPPORTUNITY") == "Y":
        return
    total = sum(
        _number(r["DATA"].get("price")) * _number(r["DATA"].get("quantity"))
        for r in _rows_of(ctx, code, owner_id)
    )
    ctx.store.update_row(table, owner_id, {"OPPORTUNITY": round(total, 2)})


def _insert(ctx: CallContext, code: str, owner_id: int, raw: Mapping[str, Any]) -> int:
    data = _compute(raw, 0)
    ident = ctx.store.insert_row(
        _TABLE, {"OWNER_TYPE": code, "OWNER_ID": owner_id, "SORT": data["sort"], "DATA": data}
    )
    if not php_str(raw.get("productName", "")):
        # Neither a name nor a catalogue product: portals name the row "[<its id>]".
        data["productName"] = data["originalProductName"] = f"[{ident}]"
        ctx.store.update_row(_TABLE, ident, {"DATA": data})
    return ident


def _replace(ctx: CallContext, code: str, owner_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    ctx.store.db.execute(
        f'DELETE FROM {_TABLE} WHERE "OWNER_TYPE" = ? AND "OWNER_ID" = ?', (code, owner_id)
    )
    for offset, raw in enumerate(rows):
        _insert(ctx, code, owner_id, {"sort": (offset + 1) * 10, **raw})
    _recount(ctx, code, owner_id)


def forget_rows(ctx: CallContext, type_id: int, ident: int) -> None:
    """Drop a deleted owner's rows."""
    ctx.store.db.execute(
        f'DELETE FROM {_TABLE} WHERE "OWNER_TYPE" = ? AND "OWNER_ID" = ?',
        (owner_code(type_id), ident),
    )


def _legacy_row_input(raw: Mapping[Any, Any]) -> dict[str, Any]:
    return {camel(str(k).upper()): v for k, v in raw.items()}


class _Legacy:
    """``crm.<lead|deal>.productrows.get/set``."""

    def __init__(self, owner: str) -> None:
        self.code, _, self.table = _LEGACY_OWNERS[owner]

    def _owner(self, ctx: CallContext, params: dict[PhpKey, Any]) -> int:
        ident = php_intval({str(k).upper(): v for k, v in params.items()}.get("ID"))
        if ident <= 0:
            raise errors.RestError("", "ID is not defined or invalid.")
        if ctx.store.fetch_row(self.table, ident) is None:
            raise errors.not_found()
        return ident

    def get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        rows = [_legacy_out(r) for r in _rows_of(ctx, self.code, owner)]
        return MethodResult(rows, rows=len(rows))

    def set(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        owner = self._owner(ctx, params)
        raw = {str(k).upper(): v for k, v in params.items()}.get("ROWS")
        rows = [
            _legacy_row_input(r)
            for r in (php_values(raw) if isinstance(raw, dict | list) else [])
            if isinstance(r, dict)
        ]
        _replace(ctx, self.code, owner, rows)
        return MethodResult(True, rows=len(rows) or 1)


def _row_or_error(ctx: CallContext, params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    row = ctx.store.fetch_row(_TABLE, php_intval(params.get("id")))
    if row is None:
        raise errors.RestError("NOT_FOUND", "Product row not found")
    return row


def _check_owner(ctx: CallContext, code: str, owner_id: int) -> None:
    table = _owner_table(code)
    if table is None or owner_id <= 0:
        raise errors.RestError("INVALID_ARG_VALUE", "Invalid owner")
    exists = ctx.store.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if exists is None or ctx.store.fetch_row(table, owner_id) is None:
        raise errors.RestError("NOT_FOUND", "Owner not found")


def _fields_param(params: Mapping[PhpKey, Any]) -> dict[str, Any]:
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise errors.RestError("100", "Could not find value for parameter {fields}")
    return {str(k): v for k, v in fields.items()}


def item_add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.add``: one row for ``ownerType``/``ownerId``."""
    fields = _fields_param(params)
    code, owner = php_str(fields.get("ownerType", "")), php_intval(fields.get("ownerId"))
    _check_owner(ctx, code, owner)
    ident = _insert(ctx, code, owner, fields)
    _recount(ctx, code, owner)
    row = ctx.store.fetch_row(_TABLE, ident)
    assert row is not None
    return MethodResult({"productRow": _item_out(row)}, rows=1)


def item_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.get``."""
    return MethodResult({"productRow": _item_out(_row_or_error(ctx, params))}, rows=1)


def item_update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.update``: the given values over the stored ones."""
    row = _row_or_error(ctx, params)
    merged = {**(row["DATA"] or {}), **_fields_param(params)}
    data = _compute(merged, int(row["ID"]))
    ctx.store.update_row(_TABLE, int(row["ID"]), {"DATA": data, "SORT": data["sort"]})
    _recount(ctx, row["OWNER_TYPE"], int(row["OWNER_ID"]))
    fresh = ctx.store.fetch_row(_TABLE, int(row["ID"]))
    assert fresh is not None
    return MethodResult({"productRow": _item_out(fresh)}, rows=1)


def item_delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.delete``."""
    row = _row_or_error(ctx, params)
    ctx.store.delete_row(_TABLE, int(row["ID"]))
    _recount(ctx, row["OWNER_TYPE"], int(row["OWNER_ID"]))
    return MethodResult([], rows=1)


def item_list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.list``: filtered by ``=ownerType``/``=ownerId``, 50 a page."""
    where, args = build_where(params.get("filter"), _COLUMNS.get)
    order = build_order(params.get("order"), _COLUMNS.get)
    start = php_intval(params.get("start", 0))
    size = ctx.config.list_page_size
    offset = 0 if start == -1 else max(0, start)
    rows = ctx.store.select(_TABLE, where, args, order, size, offset)
    total = None if start == -1 else ctx.store.count(_TABLE, where, args)
    nxt = offset + size if total is not None and offset + size < total else None
    return MethodResult(
        {"productRows": [_item_out(r) for r in rows]}, next=nxt, total=total, rows=len(rows)
    )


def item_set(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.set``: replace all rows of an owner."""
    code, owner = php_str(params.get("ownerType", "")), php_intval(params.get("ownerId"))
    _check_owner(ctx, code, owner)
    raw = params.get("productRows")
    rows = [
        {str(k): v for k, v in r.items()}
        for r in (php_values(raw) if isinstance(raw, dict | list) else [])
        if isinstance(r, dict)
    ]
    _replace(ctx, code, owner, rows)
    out = [_item_out(r) for r in _rows_of(ctx, code, owner)]
    return MethodResult({"productRows": out}, rows=len(out) or 1)


def item_fields(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """``crm.item.productrow.fields``."""
    kinds = {
        "productName": "string",
        "productDescription": "string",
        "taxIncluded": "char",
        "customized": "char",
        "measureName": "string",
        "xmlId": "string",
        "ownerType": "string",
    }
    names = ["id", "ownerId", "ownerType", *_LEGACY_KEYS]
    described = {
        name: field_entry(
            kinds.get(name, "double" if name in _NUMBERS else "integer"),
            name,
            required=name in ("ownerId", "ownerType"),
            read_only=name == "id",
            immutable=name in ("ownerId", "ownerType"),
        )
        for name in names
    }
    return MethodResult({"fields": described})


def register_productrows(engine: Engine) -> None:
    """Register both product-row families."""
    for owner in _LEGACY_OWNERS:
        legacy = _Legacy(owner)
        engine.register(f"crm.{owner}.productrows.get", legacy.get, "crm")
        engine.register(f"crm.{owner}.productrows.set", legacy.set, "crm")
    for action, handler in (
        ("add", item_add),
        ("get", item_get),
        ("update", item_update),
        ("delete", item_delete),
        ("list", item_list),
        ("set", item_set),
        ("fields", item_fields),
    ):
        engine.register(f"crm.item.productrow.{action}", handler, "crm")
