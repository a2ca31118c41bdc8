"""Hypothesis against the answer side: arbitrary JSON and bytes where Bitrix24's answer goes.

Whatever comes back, `batch()` returns an outcome for every command (or raises one of the
project's own errors when nothing could run), and `call()` raises only typed errors.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

from bitrix_batch import BitrixBatchError, BitrixClient, RetryPolicy, Status
from tests.fake_bitrix import WEBHOOK

#: JSON values, odd numbers included (what a hostile or broken server could send).
NUMBERS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e400", "-Infinity", "NaN", "12", "", "x"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def batch_answer(keys: list[str], data: st.DataObject) -> Any:
    """A batch answer whose maps hold arbitrary values for our keys and others."""
    section_keys = st.sampled_from([*keys, "other", "0"])
    maps = {
        name: data.draw(st.one_of(JSON, st.dictionaries(section_keys, JSON, max_size=4)))
        for name in ("result", "result_error", "result_total", "result_next", "result_time")
    }
    return {"result": maps, "time": data.draw(JSON)}


def encoded(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True, default=str).encode()


def answering(handler: Any) -> BitrixClient:
    """A client whose every answer comes from `handler`, tried once, unpaced."""
    return BitrixClient(
        WEBHOOK, transport=httpx.MockTransport(handler), rate_limit=None, retry=RetryPolicy.never()
    )


async def run(handler: Any, cmd: Any) -> Any:
    async with answering(handler) as client:
        return await client.batch(cmd)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_batch_answer_leaves_every_command_accounted(data: st.DataObject) -> None:
    keys = ["a", "b", "c"]
    body = batch_answer(keys, data)
    status = data.draw(st.sampled_from([200, 200, 200, 400, 401, 500, 503]))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, content=encoded(body), headers={"content-type": "application/json"}
        )

    cmd = {"a": "crm.lead.add", "b": "user.current", "c": ("crm.lead.get", {"id": 1})}
    try:
        result = anyio.run(run, handler, cmd)
    except BitrixBatchError:
        return  # nothing ran at all: raising loses nothing
    assert set(result) == set(keys)
    assert all(isinstance(r.status, Status) for r in result.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.one_of(st.binary(max_size=200), JSON.map(encoded)),
    status=st.sampled_from([200, 201, 301, 400, 401, 404, 429, 500, 503]),
    ctype=st.sampled_from(["application/json", "text/html", "", "application/json; x"]),
)
def test_any_bytes_for_a_direct_call_raise_only_typed_errors(
    content: bytes, status: int, ctype: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"content-type": ctype})

    async def call() -> Any:
        async with answering(handler) as client:
            return await client.call("user.current")

    with contextlib.suppress(BitrixBatchError):
        anyio.run(call)


def test_deeply_nested_answers_are_typed_errors() -> None:
    """JSON 100,000 levels deep is refused as an invalid answer, not a RecursionError."""
    deep = b"[" * 100_000 + b"]" * 100_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep, headers={"content-type": "application/json"})

    cmd = {"a": "crm.lead.add", "b": "user.current"}
    try:
        result = anyio.run(run, handler, cmd)
    except BitrixBatchError:
        return
    assert result["a"].status is Status.UNKNOWN


HOSTILE = [float("inf"), float("-inf"), float("nan"), 10**400, "1e400", "x", [1], {"a": 1}]


def test_hostile_numbers_in_the_side_maps_keep_every_outcome() -> None:
    """Totals, cursors and times the client cannot represent never discard what ran."""
    for value in HOSTILE:
        for section in ("result_total", "result_next", "result_time"):
            body = {
                "result": {
                    "result": {"a": 7, "b": {"ID": "1"}},
                    "result_error": [],
                    "result_total": {},
                    "result_next": {},
                    "result_time": {},
                    section: {"a": value, "b": {"operating": value, "start": value}},
                },
                "time": {"operating": value, "operating_reset_at": value},
            }

            def handler(request: httpx.Request, body: Any = body) -> httpx.Response:
                return httpx.Response(
                    200, content=encoded(body), headers={"content-type": "application/json"}
                )

            result = anyio.run(run, handler, {"a": "crm.lead.add", "b": "user.current"})
            assert result["a"].status is Status.OK, (section, value)
            assert result["a"].result == 7
            assert result["b"].status is Status.OK
