"""``tasks.task.add/get/update/delete/list``: the controller-style task methods.

The shape that matters to clients (semantics document §6, source S8): parameters name fields
in UPPER_SNAKE case (``filter {">ID": 5}``, ``order {"ID": "asc"}``, ``select ["ID",
"TITLE"]``; camelCase names are accepted too), while answers print them in camelCase with
string values (``{"id": "5", "title": "..."}``) under a sub-key: ``result.tasks`` for a list,
``result.task`` for one task. Paging is the controller's: ``page = intval(start/50)+1``,
``next = offset + 50`` while below ``total``; ``start=-1`` gives neither ``total`` nor
``next``. The ID is always in a row, whatever ``select`` says, as the CRM lists do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval, php_str, php_values
from .query import Column, build_order, build_where
from .store import Store

__all__ = ["TASK_TABLE", "register_tasks", "seed_tasks"]

TASK_TABLE = "tasks"

#: Stored columns: (UPPER_SNAKE name, SQLite type, camelCase name in answers).
_FIELDS = (
    ("ID", "INTEGER PRIMARY KEY AUTOINCREMENT", "id"),
    ("TITLE", "TEXT", "title"),
    ("DESCRIPTION", "TEXT", "description"),
    ("STATUS", "INTEGER", "status"),
    ("PRIORITY", "INTEGER", "priority"),
    ("RESPONSIBLE_ID", "INTEGER", "responsibleId"),
    ("CREATED_BY", "INTEGER", "createdBy"),
    ("GROUP_ID", "INTEGER", "groupId"),
    ("DEADLINE", "TEXT", "deadline"),
    ("CREATED_DATE", "TEXT", "createdDate"),
    ("CHANGED_DATE", "TEXT", "changedDate"),
)
_BY_NAME = {name: (sql, out) for name, sql, out in _FIELDS}
_BY_CAMEL = {out.lower(): name for name, _, out in _FIELDS}
_READ_ONLY = {"ID", "CREATED_BY", "CREATED_DATE", "CHANGED_DATE"}
#: STATUS 2 is "pending", PRIORITY 1 "normal" (the server's defaults for a new task).
_DEFAULTS = {"STATUS": 2, "PRIORITY": 1, "GROUP_ID": 0}


def _create_table(store: Store) -> None:
    body = ", ".join(f'"{name}" {sql}' for name, sql, _ in _FIELDS)
    with store.lock:
        store.db.execute(f"CREATE TABLE IF NOT EXISTS {TASK_TABLE} ({body})")


def _name(raw: str) -> str | None:
    """The stored column for a parameter's field name (UPPER_SNAKE or camelCase)."""
    if raw.upper() in _BY_NAME:
        return raw.upper()
    return _BY_CAMEL.get(raw.lower())


def _resolve(raw: str) -> Column | None:
    name = _name(raw)
    if name is None:
        return None
    kind = "INTEGER" if "INTEGER" in _BY_NAME[name][0] else "TEXT"
    return Column(f'"{name}"', kind)


def _out(row: dict[str, Any], wanted: set[str] | None) -> dict[str, Any]:
    """A task as the answers print it: camelCase names, values as strings (null stays)."""
    out: dict[str, Any] = {}
    for name, _, camel in _FIELDS:
        if wanted is not None and name not in wanted:
            continue
        value = row.get(name)
        out[camel] = None if value is None else php_str(value)
    return out


def _wanted(select: Any) -> set[str] | None:
    names = [php_str(v) for v in php_values(select)] if select not in (None, "", {}) else []
    if not names or "*" in names:
        return None
    chosen = {"ID"}
    for raw in names:
        name = _name(raw)
        if name is not None:
            chosen.add(name)
    return chosen


def _task_id(params: dict[PhpKey, Any]) -> int:
    named = {str(k).lower(): v for k, v in params.items()}
    return php_intval(named.get("taskid", named.get("id")))


def _not_found() -> errors.RestError:
    return errors.RestError("ERROR_CORE", "Task not found or not accessible")


def _fields(params: dict[PhpKey, Any]) -> dict[str, Any]:
    raw = {str(k).lower(): v for k, v in params.items()}.get("fields")
    if not isinstance(raw, dict):
        raise errors.RestError("ERROR_CORE", "The parameter 'fields' must be array.")
    row: dict[str, Any] = {}
    for key, value in raw.items():
        name = _name(str(key))
        if name is None or name in _READ_ONLY or isinstance(value, dict | list):
            continue
        kind = _BY_NAME[name][0]
        row[name] = php_intval(value) if kind.startswith("INTEGER") else php_str(value)
    return row


def _add(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    given = _fields(params)
    row = {**_DEFAULTS, "RESPONSIBLE_ID": ctx.caller.user_id, **given}
    if not php_str(row.get("TITLE", "")).strip():
        raise errors.RestError("ERROR_CORE", "Task title is not specified.")
    now = ctx.now_iso()
    row.update({"CREATED_BY": ctx.caller.user_id, "CREATED_DATE": now, "CHANGED_DATE": now})
    ident = ctx.store.insert_row(TASK_TABLE, row)
    ctx.stats.record_add("task", ident, given)
    stored = ctx.store.fetch_row(TASK_TABLE, ident)
    assert stored is not None
    return MethodResult({"task": _out(stored, None)}, rows=1)


def _get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    ident = _task_id(params)
    row = ctx.store.fetch_row(TASK_TABLE, ident) if ident > 0 else None
    if row is None:
        raise _not_found()
    return MethodResult({"task": _out(row, None)}, rows=1)


def _update(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    ident = _task_id(params)
    changes = {**_fields(params), "CHANGED_DATE": ctx.now_iso()}
    if ident <= 0 or not ctx.store.update_row(TASK_TABLE, ident, changes):
        raise _not_found()
    ctx.stats.record_write("task", ident, "update")
    row = ctx.store.fetch_row(TASK_TABLE, ident)
    assert row is not None
    return MethodResult({"task": _out(row, None)}, rows=1)


def _delete(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    ident = _task_id(params)
    if ident <= 0 or not ctx.store.delete_row(TASK_TABLE, ident):
        raise _not_found()
    ctx.stats.record_write("task", ident, "delete")
    return MethodResult({"task": True}, rows=1)


def _list(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    named = {str(k).lower(): v for k, v in params.items()}
    where, args = build_where(named.get("filter"), _resolve)
    order = build_order(named.get("order"), _resolve)
    size = ctx.config.list_page_size
    # The server reads and removes exactly `start` (§6).
    start = php_intval(params.get("start", 0))
    counted = start != -1
    # Integers (a float loses a huge start's digits); SQLite takes offsets below 2**63.
    offset = 0 if not counted else min(max(0, start // size * size), 2**63 - 1)
    rows = ctx.store.select(TASK_TABLE, where, args, order, size, offset)
    total = ctx.store.count(TASK_TABLE, where, args) if counted else None
    wanted = _wanted(named.get("select"))
    tasks = [_out(r, wanted) for r in rows]
    nxt = offset + size if total is not None and offset + size < total else None
    return MethodResult({"tasks": tasks}, next=nxt, total=total, rows=len(rows))


def seed_tasks(store: Store, count: int, now: float, tz: Any = None) -> None:
    """``count`` generated tasks (titles ``Task <n>``), inserted in one transaction."""
    _create_table(store)
    if count <= 0:
        return
    stamp = datetime.fromtimestamp(now, tz).isoformat(timespec="seconds")
    first = store.count(TASK_TABLE) + 1
    names = (
        "TITLE",
        "STATUS",
        "PRIORITY",
        "RESPONSIBLE_ID",
        "CREATED_BY",
        "GROUP_ID",
        "CREATED_DATE",
        "CHANGED_DATE",
    )
    rows = ((f"Task {first + i}", 2, 1, 1, 1, 0, stamp, stamp) for i in range(count))
    store.insert_many(TASK_TABLE, names, rows)


def register_tasks(engine: Engine) -> None:
    """Create the task table and register the task methods (scope ``task``)."""
    _create_table(engine.store)
    for action, handler in (
        ("add", _add),
        ("get", _get),
        ("update", _update),
        ("delete", _delete),
        ("list", _list),
    ):
        engine.register(f"tasks.task.{action}", handler, "task")
