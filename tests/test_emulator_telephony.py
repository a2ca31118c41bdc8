"""telephony.externalcall.register/finish and disk.file.get's refusals, as the docs list them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator_support import api

CALL = {"USER_ID": 1, "PHONE_NUMBER": "+79163345641", "TYPE": 1, "SHOW": 0}


async def test_a_registered_call_has_an_id_that_finish_takes_once() -> None:
    async with api() as a:
        status, body = await a.call(
            "telephony.externalcall.register",
            {**CALL, "CALL_START_DATE": "2026-03-07T10:20:30+03:00", "CRM_CREATE": 0,
             "CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 43707},
        )
        assert status == 200, body
        result = body["result"]
        assert result["CALL_ID"].startswith("externalCall.")
        assert result["CRM_CREATED_LEAD"] is None
        assert result["CRM_CREATED_ENTITIES"] == []
        assert (result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"]) == ("LEAD", 43707)
        again_status, again = await a.call("telephony.externalcall.register", CALL)
        assert again_status == 200
        assert again["result"]["CALL_ID"] != result["CALL_ID"]
        status, done = await a.call(
            "telephony.externalcall.finish",
            {"CALL_ID": result["CALL_ID"], "USER_ID": 1, "DURATION": 42},
        )
        assert status == 200, done
        assert done["result"]["CALL_DURATION"] == "42"
        status, twice = await a.call(
            "telephony.externalcall.finish", {"CALL_ID": result["CALL_ID"], "USER_ID": 1}
        )
        assert status == 400
        assert twice["error"] == "ERROR_CORE"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"USER_ID": None}, "USER_ID or USER_PHONE_INNER should be set."),
        ({"USER_ID": 987654}, "User is not found or is not active."),
        ({"TYPE": 9}, "Unknown TYPE."),
        ({"PHONE_NUMBER": "call me"}, "Unsupported phone number format."),
        ({"CALL_START_DATE": "yesterday"}, "CALL_START_DATE should be in the ISO-8601 format."),
    ],
)
async def test_register_refuses_what_the_docs_list(change: dict[str, Any], text: str) -> None:
    params = {k: v for k, v in (CALL | change).items() if v is not None}
    async with api() as a:
        status, body = await a.call("telephony.externalcall.register", params)
    assert status == 400
    assert body == {"error": "ERROR_CORE", "error_description": text}


async def test_disk_file_get_names_the_missing_parameter_or_the_missing_file() -> None:
    async with api() as a:
        status, body = await a.call("disk.file.get", {"ID": 1})  # names are case-sensitive
        assert status == 400
        assert body["error"] == "ERROR_ARGUMENT"
        assert "Could not find value for parameter" in body["error_description"]
        status, body = await a.call("disk.file.get", {"id": 1})
        assert status == 400
        assert body["error"] == "ERROR_NOT_FOUND"
        assert "Could not find entity with id" in body["error_description"]
