"""``telephony.externalcall.register`` / ``finish`` and ``disk.file.get``'s refusals.

What PBX integrations call first: registering an external call returns a ``CALL_ID`` that later
calls name, with the checks and ``ERROR_CORE`` texts the docs list (``USER_ID or
USER_PHONE_INNER should be set.``, ``Unknown TYPE.``, ...). The docs say the method works only
for applications; inbound webhooks with the ``telephony`` scope are served too, as PBX
integrations use them.

The emulator stores no files: ``disk.file.get`` answers what a portal answers for a file that
does not exist, ``ERROR_ARGUMENT`` when ``id`` is missing (parameter names are
case-sensitive: ``ID`` is not ``id``) and ``ERROR_NOT_FOUND`` otherwise.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .engine import CallContext, Engine, MethodResult
from .errors import RestError
from .php import PhpKey, php_intval, php_str

__all__ = ["register_telephony"]

_CALLS = "telephony_calls"
#: 1 outgoing, 2 incoming, 3 incoming with redirection, 4 callback, 5 informational.
_TYPES = frozenset({1, 2, 3, 4, 5})
_ENTITY_TYPES = frozenset({"CONTACT", "COMPANY", "LEAD"})
_PHONE = re.compile(r"\+?[0-9()\- ]{3,}")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?")


def _core(text: str) -> RestError:
    return RestError("ERROR_CORE", text, 400)


def _create_table(ctx: CallContext) -> None:
    with ctx.store.lock:
        ctx.store.db.execute(
            f"CREATE TABLE IF NOT EXISTS {_CALLS} (CALL_ID TEXT PRIMARY KEY, USER_ID INTEGER,"
            " PHONE_NUMBER TEXT, TYPE INTEGER, CRM_ENTITY_TYPE TEXT, CRM_ENTITY_ID INTEGER,"
            " FINISHED INTEGER DEFAULT 0)"
        )


def _register(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    user_id = php_intval(params.get("USER_ID"))
    if not user_id and not php_str(params.get("USER_PHONE_INNER", "")):
        raise _core("USER_ID or USER_PHONE_INNER should be set.")
    if user_id:
        with ctx.store.lock:
            found = ctx.store.db.execute(
                "SELECT ACTIVE FROM users WHERE ID = ?", (user_id,)
            ).fetchone()
        if found is None or str(found[0]) not in ("1", "Y", "True", "true"):
            raise _core("User is not found or is not active.")
    if php_intval(params.get("TYPE")) not in _TYPES:
        raise _core("Unknown TYPE.")
    phone = php_str(params.get("PHONE_NUMBER", ""))
    if not _PHONE.fullmatch(phone):
        raise _core("Unsupported phone number format.")
    start = params.get("CALL_START_DATE")
    if start not in (None, "") and not _ISO.match(php_str(start)):
        raise _core("CALL_START_DATE should be in the ISO-8601 format.")
    entity_type = php_str(params.get("CRM_ENTITY_TYPE", "")).upper()
    entity_id = php_intval(params.get("CRM_ENTITY_ID")) if entity_type in _ENTITY_TYPES else 0
    _create_table(ctx)
    with ctx.store.lock:
        (count,) = ctx.store.db.execute(f"SELECT COUNT(*) FROM {_CALLS}").fetchone()
        seed = f"{user_id}:{phone}:{count}".encode()
        call_id = f"externalCall.{hashlib.md5(seed).hexdigest()}.{int(ctx.timeline.cursor)}"
        ctx.store.db.execute(
            f"INSERT INTO {_CALLS} (CALL_ID, USER_ID, PHONE_NUMBER, TYPE, CRM_ENTITY_TYPE,"
            " CRM_ENTITY_ID) VALUES (?, ?, ?, ?, ?, ?)",
            (call_id, user_id, phone, php_intval(params.get("TYPE")), entity_type, entity_id),
        )
    result: dict[str, Any] = {
        "CALL_ID": call_id,
        "CRM_CREATED_LEAD": None,
        "CRM_CREATED_ENTITIES": [],
    }
    if entity_id:
        result |= {"CRM_ENTITY_TYPE": entity_type, "CRM_ENTITY_ID": entity_id}
    return MethodResult(result)


def _finish(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    call_id = php_str(params.get("CALL_ID", ""))
    _create_table(ctx)
    with ctx.store.lock:
        row = ctx.store.db.execute(
            f"SELECT USER_ID, PHONE_NUMBER, TYPE, CRM_ENTITY_TYPE, CRM_ENTITY_ID, FINISHED"
            f" FROM {_CALLS} WHERE CALL_ID = ?",
            (call_id,),
        ).fetchone()
        if row is None or row[5]:
            raise _core("Call is not found or is already finished.")
        ctx.store.db.execute(f"UPDATE {_CALLS} SET FINISHED = 1 WHERE CALL_ID = ?", (call_id,))
    user_id, phone, kind, entity_type, entity_id, _ = row
    duration = php_intval(params.get("DURATION"))
    return MethodResult(
        {
            "CALL_ID": call_id,
            "PORTAL_USER_ID": str(user_id),
            "PHONE_NUMBER": phone,
            "CALL_DURATION": str(duration),
            "CALL_TYPE": str(kind),
            "CALL_FAILED_CODE": php_str(params.get("STATUS_CODE", "200")),
            "CRM_ENTITY_TYPE": entity_type or None,
            "CRM_ENTITY_ID": str(entity_id) if entity_id else None,
        }
    )


def _disk_file_get(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    if "id" not in params:
        raise RestError("ERROR_ARGUMENT", "Could not find value for parameter {id}", 400)
    ident = php_intval(params.get("id"))
    raise RestError("ERROR_NOT_FOUND", f"Could not find entity with id '{ident}'", 400)


def register_telephony(engine: Engine) -> None:
    """Register the telephony call methods (scope ``telephony``) and ``disk.file.get``."""
    engine.register("telephony.externalcall.register", _register, "telephony")
    engine.register("telephony.externalcall.finish", _finish, "telephony")
    engine.register("disk.file.get", _disk_file_get, "disk")
