"""Hypothesis against the whole executor: a job of many requests, each answered by a server
that Hypothesis drives: it runs the commands and answers well, or answers garbage (any bytes,
any JSON, any status) before or after running them, or drops the connection before or after,
or runs them and loses part of the answer.

Whatever happens, the run ends (no hang), raises nothing but the project's own errors, and
keeps the promises the README makes: every command has exactly one outcome; no write runs
twice; a write that ran is never reported as not run or failed; and a command whose input is
not a confirmed result is never sent.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import anyio
import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

from bitrix_batch import BitrixBatchError, BitrixClient, Literal, Ref, RetryPolicy, Status
from tests.fake_bitrix import WEBHOOK, FakeBitrix
from tests.fake_clock import FakeClock
from tests.test_fuzz_answers import JSON, encoded

ADDS = 40
#: How one request is answered.
MODES = st.sampled_from(
    ["ok", "ok", "ok", "garbage_before", "garbage_after", "drop_before", "drop_after", "partial"]
)
#: Statuses a server or a gateway in front of it may send with a body that is not an answer.
BEFORE_STATUSES = st.sampled_from([200, 301, 400, 401, 403, 404, 429, 500, 502, 503])
#: After running, only what a real stack can still send: a 200 whose body is broken, or a
#: gateway's 5xx.
AFTER_STATUSES = st.sampled_from([200, 500, 502, 504])
BODIES = st.one_of(st.binary(max_size=64), JSON.map(encoded))


def job() -> dict[str, Any]:
    """Adds, updates of them (writes by reference) and gets of them (reads by reference);
    every fifth add holds `Literal` text the server would substitute, so it goes as a direct
    call (planner Rule 7)."""
    cmd: dict[str, Any] = {}
    for i in range(ADDS):
        extra = {"COMMENTS": Literal("Price $total[x] incl. VAT")} if i % 5 == 0 else {}
        cmd[f"add{i}"] = ("crm.lead.add", {"fields": {"TITLE": f"add{i}", **extra}})
    for i in range(0, ADDS, 2):
        cmd[f"upd{i}"] = ("crm.lead.update", {"id": Ref(f"add{i}"), "fields": {"C": f"upd{i}"}})
        cmd[f"get{i}"] = ("crm.lead.get", {"id": Ref(f"add{i}")})
    return cmd


class Server:
    """Runs batches on a `FakeBitrix` and remembers every write that ran."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.fake = FakeBitrix()
        self.runs: Counter[str] = Counter()
        self.updated: dict[str, int] = {}  # update key -> the lead ID it ran on
        self.ids: dict[int, str] = {}  # lead ID -> the add that made it
        self.fake.methods.update(
            {"crm.lead.add": self._add, "crm.lead.update": self._update, "crm.lead.get": self._get}
        )

    def _add(self, params: dict[str, Any]) -> int:
        key = params["fields"]["TITLE"]
        self.runs[key] += 1
        ident = 1000 + len(self.ids)
        self.ids[ident] = key
        return ident

    def _update(self, params: dict[str, Any]) -> bool:
        key = params["fields"]["C"]
        self.runs[key] += 1
        self.updated[key] = int(params["id"])
        return True

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ID": str(params["id"])}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        draw = self.data.draw
        mode = draw(MODES, label="mode")
        if mode == "garbage_before":
            return httpx.Response(draw(BEFORE_STATUSES), content=draw(BODIES))
        if mode == "drop_before":
            raise httpx.ConnectError("refused", request=request)
        payload = json.loads(request.content)
        method = request.url.path.rsplit("/", 1)[-1]
        if method == "batch":
            body = self.fake.run_batch(payload)
        else:  # a direct call: nothing substituted, the text arrives as written
            assert payload["fields"]["COMMENTS"] == "Price $total[x] incl. VAT"
            body = {"result": self.fake.methods[method](payload), "time": {"operating": 0}}
        if mode == "garbage_after":
            return httpx.Response(draw(AFTER_STATUSES), content=draw(BODIES))
        if mode == "drop_after":
            raise httpx.ReadTimeout("lost", request=request)
        if mode == "partial" and method == "batch":
            inner = body["result"]
            for name in ("result", "result_total", "result_next", "result_time"):
                section = inner[name] if isinstance(inner[name], dict) else {}
                kept = [k for k in section if draw(st.booleans(), label=f"keep {name}")]
                inner[name] = {k: section[k] for k in kept} | {"stray": draw(JSON)}
            body["time"] = draw(JSON)
        return httpx.Response(200, content=encoded(body))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_sequence_of_answers_keeps_the_promises(data: st.DataObject) -> None:
    server = Server(data)
    cmd = job()
    clock = FakeClock()

    async def main() -> Any:
        async with BitrixClient(
            WEBHOOK,
            transport=httpx.MockTransport(server.handle),
            rate_limit=None,
            retry=RetryPolicy.testing(attempts=3),
            clock=clock,
            sleep=clock.sleep,
            wall_clock=clock.wall,
        ) as client:
            with anyio.fail_after(30):  # real seconds: the fake clock never sleeps
                return await client.batch(cmd)

    try:
        result = anyio.run(main)
    except BitrixBatchError as exc:
        result = getattr(exc, "bitrix_batch_result", None)
    if result is None:
        # Raised before any outcome existed: then nothing may have run.
        assert not server.runs
        return
    # Every command has exactly one outcome.
    assert set(result) == set(cmd)
    for key, outcome in result.items():
        ran = server.runs[key]
        if key.startswith(("add", "upd")):
            assert ran <= 1, f"{key} ran {ran} times"
            if ran:  # what ran is never reported as not run, nor as failed
                assert outcome.status in (Status.OK, Status.UNKNOWN), (key, outcome)
        if outcome.status is Status.OK and key.startswith("add"):
            assert ran == 1
            assert server.ids[int(outcome.result)] == key
    # A write by reference ran only on a confirmed result of the command it refers to.
    for key, ident in server.updated.items():
        producer = result[f"add{key[3:]}"]
        assert producer.status is Status.OK, (key, producer)
        assert int(producer.result) == ident
