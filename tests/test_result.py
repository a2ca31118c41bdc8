"""What a batch returns: `BatchResult`'s maps and the compact `CommandTime`."""

from __future__ import annotations

import json
from typing import Any

import httpx

from bitrix_batch import (
    BatchResult,
    BitrixClient,
    CommandResult,
    CommandTime,
    Ref,
    RetryPolicy,
    Status,
)
from bitrix_batch._encoding import php_strval
from bitrix_batch.emulator import Emulator, EmulatorConfig

RAW = {
    "start": 1764633600.1,
    "finish": 1764633600.2,
    "duration": 0.1,
    "processing": 0.09,
    "date_start": "2025-12-02T00:00:00+03:00",
    "date_finish": "2025-12-02T00:00:00+03:00",
    "operating_reset_at": 1764634200,
    "operating": 0,
}


def test_command_time_reads_like_the_dict_it_came_from() -> None:
    """Same keys, values and equality as the server's block; dict() gives it back."""
    t = CommandTime.of(dict(RAW))
    assert isinstance(t, CommandTime)
    assert t == RAW
    assert dict(t) == RAW
    assert t["duration"] == 0.1
    assert len(t) == 8
    assert json.loads(json.dumps(dict(t))) == RAW


def test_command_time_keeps_what_the_server_left_out_out() -> None:
    """A field the server did not send is absent, not None."""
    t = CommandTime.of({"start": 1.0, "duration": 0.5})
    assert t is not None
    assert dict(t) == {"start": 1.0, "duration": 0.5}
    assert "finish" not in t
    assert t.get("finish") is None


def test_an_unknown_time_shape_is_kept_as_sent() -> None:
    """Extra fields (a newer portal) or a non-object: nothing is dropped or invented."""
    raw = {**RAW, "new_field": 1}
    assert CommandTime.of(raw) is raw
    assert CommandTime.of(None) is None
    odd: Any = []
    assert CommandTime.of(odd) is odd


def test_equal_strings_of_one_answer_are_shared() -> None:
    """The dates of one answer's commands are one string object, not one each."""
    strings: dict[str, str] = {}
    a = CommandTime.of(json.loads(json.dumps(RAW)), strings)
    b = CommandTime.of(json.loads(json.dumps(RAW)), strings)
    assert a is not None and b is not None  # noqa: PT018
    assert a["date_start"] is b["date_start"] is b["date_finish"]


def test_derived_maps_hold_only_commands_that_have_the_figure() -> None:
    """result_total/result_next/result_time are built from the outcomes when read."""
    ok = CommandResult("a", "crm.lead.list", Status.OK, result=[], total=120, next=50, time=RAW)
    add = CommandResult("b", "crm.lead.add", Status.OK, result=7)
    result = BatchResult([ok, add])
    assert result.result_total == {"a": 120}
    assert result.result_next == {"a": 50}
    assert result.result_time == {"a": RAW}
    assert result.result_total is result.result_total  # built once


async def test_time_references_resolve_across_requests() -> None:
    """$time[x][...] of a command in an earlier request is substituted from its block."""
    emu = Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))
    cmd: dict[str, Any] = {
        "lead": ("crm.lead.add", {"fields": {"TITLE": "x"}}),
        "note": ("crm.lead.update", {"id": Ref("lead"), "fields": {
            "COMMENTS": f"took {Ref.time('lead')['duration']} s"}}),
        "read": ("crm.lead.get", {"id": Ref("lead")}),
    }
    client = BitrixClient(emu.webhook_url(), transport=httpx.ASGITransport(app=emu.app),
                          rate_limit=None, retry=RetryPolicy.testing())
    async with client:
        first = await client.batch(cmd)
        assert first.ok
        got = await client.call("crm.lead.get", {"id": first.result["lead"]})
    duration = first["lead"].time["duration"]  # type: ignore[index]
    # Spliced into text the way PHP casts a double (14 significant digits).
    assert got["COMMENTS"] == f"took {php_strval(duration)} s"


def test_command_time_survives_copies_and_pickles() -> None:
    """A block without some fields stays without them through deepcopy and pickle."""
    import copy
    import pickle

    t = CommandTime.of({"start": 1.0, "finish": 2.0})
    assert dict(copy.deepcopy(t)) == {"start": 1.0, "finish": 2.0}  # type: ignore[arg-type]
    assert dict(pickle.loads(pickle.dumps(t))) == {"start": 1.0, "finish": 2.0}
