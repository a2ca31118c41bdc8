"""Review: places where the emulator deviated from the server spec (fixed; kept as tests).

The spec is ``/work/shared/reference/bitrix-server-semantics.md``; each test names its section.
"""

from __future__ import annotations

import json

import pytest

from tests.emulator_support import api, make_emulator

#: Larger than PHP_INT_MAX: PHP's intval() of this string saturates at 9223372036854775807.
HUGE = "99999999999999999999"


async def test_operating_floor_applies_to_the_requests_total_per_method() -> None:
    """One request's calls of a method are summed; the 0.1 s floor applies to the sum (§4.2)."""
    emu = make_emulator(seed_leads=1, operating_limit=True, operating_limit_seconds=1)
    async with api(emu) as a:
        # 50 x crm.lead.get at the default 0.04 s: the request spent 2.0 s in crm.lead.get.
        body = await a.batch(["crm.lead.get?id=1"] * 50)
        assert len(body["result"]) == 50
        status, answer = await a.call("crm.lead.get", {"id": 1})
    # 2.0 s > the 1 s budget: the method is now blocked.
    assert status == 429, answer
    assert answer["error"] == "OPERATION_TIME_LIMIT"


async def test_integer_past_php_int_max_is_a_per_command_error_not_a_crash() -> None:
    """intval() saturates at PHP_INT_MAX: a huge ID is a per-command error, batch 200 (§8.1)."""
    async with api() as a:
        status, body = await a.call(
            "batch", {"cmd": {"a": f"crm.lead.get?ID={HUGE}", "b": "user.current"}}
        )
    assert status == 200
    assert list(body["result"]["result_error"]) == ["a"]
    assert list(body["result"]["result"]) == ["b"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"fields": {"TITLE": "x", "OPPORTUNITY": NaN}}',
        b'{"fields": {"TITLE": "x", "OPPORTUNITY": Infinity}}',
        b'{"fields": {"TITLE": "\\ud800"}}',
    ],
    ids=["nan", "infinity", "lone-surrogate"],
)
async def test_json_php_rejects_is_an_empty_parameter_set(raw: bytes) -> None:
    """NaN, Infinity and unpaired \\uD800 are invalid JSON to PHP: no parameters at all (§1.1)."""
    emu = make_emulator()
    async with api(emu) as a:
        response = await a.raw(
            "crm.lead.add", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert emu.count("lead") == 0


async def test_string_offset_minus_one_is_the_last_byte() -> None:
    """A path step into a string takes one byte; PHP's offset -1 is the last byte (§2.4)."""
    emu = make_emulator()
    async with api(emu) as a:
        await a.batch({"u": "user.current", "a": "crm.lead.add?fields[TITLE]=$result[u][NAME][-1]"})
    assert emu.records("lead")[0]["TITLE"] == "n"  # NAME is "John"


async def test_embedded_float_is_spliced_as_php_prints_it() -> None:
    """An embedded float is spliced as PHP's (string) cast prints it: 14 digits (§2.1)."""
    emu = make_emulator()
    async with api(emu) as a:
        body = await a.batch(
            {
                "b": "crm.lead.add?fields[TITLE]=first",
                "c": "crm.lead.add?fields[TITLE]=took $time[b][duration]",
            }
        )
    duration = body["result_time"]["b"]["duration"]
    assert isinstance(duration, float)
    # (string)$float with precision=14 is %.14G (no exponent for this magnitude).
    assert emu.records("lead")[1]["TITLE"] == "took " + format(duration, ".14G")


async def test_only_lowercase_start_is_the_paging_offset() -> None:
    """The server reads and removes only the parameter `start`; `START` is not paging (§6)."""
    emu = make_emulator(seed_leads=60)
    async with api(emu) as a:
        response = await a.raw("crm.lead.list", json={"START": 50, "select": ["ID"]})
    body = json.loads(response.text)
    assert body["result"][0]["ID"] == "1"
    assert body["next"] == 50
