"""A scriptable stand-in for Bitrix24 behind `httpx.MockTransport`, recording what was sent.

It is deliberately small: tests here assert *what the client sent*. Server behaviour in depth
(substitution quirks, limits, paging) is tested against `bitrix_batch.emulator`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bitrix_batch._encoding import parse_str

WEBHOOK = "https://portal.example/rest/1/s3cr3tc0de/"

# Whole-value server-side references only: enough for the read-after-write cases here.
_WHOLE = re.compile(r"^\$result((?:\[[^\]]+\])+)$")


class Fail(Exception):
    """Raised by a fake method to produce a per-command error."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.description = description


@dataclass
class FakeBitrix:
    """Runs batches with Python functions as methods and records every request."""

    methods: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    #: Scripted whole-response overrides: popped one per request while non-empty.
    script: list[httpx.Response | Exception] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        import anyio.lowlevel

        method = request.url.path.rsplit("/", 1)[-1]
        if request.headers.get("content-type", "").startswith("application/json"):
            payload = json.loads(request.content)
        else:
            payload = parse_str(request.content.decode())
        self.requests.append((method, payload))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()  # let concurrent requests overlap
            if self.script:
                scripted = self.script.pop(0)
                if isinstance(scripted, Exception):
                    raise scripted
                return scripted
            if method == "batch":
                return httpx.Response(200, json=self.run_batch(payload))
            try:
                return httpx.Response(200, json=self.envelope(self.methods[method](payload)))
            except Fail as exc:
                return httpx.Response(
                    400, json={"error": exc.code, "error_description": exc.description}
                )
        finally:
            self.in_flight -= 1

    @staticmethod
    def envelope(result: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"result": result, "time": {"start": 1.0, "operating": 0}}
        if isinstance(result, dict) and "total" in result:
            body = {"result": result["rows"], "total": result["total"], "time": {}}
        return body

    def run_batch(self, payload: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        halt = str(payload.get("halt", 0)) not in ("0", "", "False")
        for key, text in payload["cmd"].items():
            method, _, query = text.partition("?")
            params = parse_str(query)
            for name, value in list(params.items()):
                m = _WHOLE.match(value) if isinstance(value, str) else None
                if m:
                    path = re.findall(r"\[([^\]]+)\]", m.group(1))
                    params[name] = self.walk(results, path)
            try:
                results[key] = self.methods[method](params)
                times[key] = {"operating": 0}
            except Fail as exc:
                errors[key] = {"error": exc.code, "error_description": exc.description}
                if halt:
                    break
        return {
            "result": {
                "result": results or [],
                "result_error": errors or [],
                "result_total": [],
                "result_next": [],
                "result_time": times or [],
            },
            "time": {"start": 1.0},
        }

    @staticmethod
    def walk(results: dict[str, Any], path: list[str]) -> Any:
        """Like the server: a missing command gives the whole result map (garbage)."""
        if path[0] not in results:
            return results
        value = results[path[0]]
        for step in path[1:]:
            try:
                value = value[int(step)] if isinstance(value, list) else value[step]
            except (KeyError, IndexError, TypeError, ValueError):
                return value
        return value

    @property
    def batches(self) -> list[dict[str, str]]:
        """The `cmd` of every batch request, in the order they arrived."""
        return [p["cmd"] for m, p in self.requests if m == "batch"]

    def sent_keys(self) -> list[str]:
        return [k for cmd in self.batches for k in cmd]


def store() -> FakeBitrix:
    """A small fake portal: adds count up, gets echo their id, `fail.now` always fails."""
    ids = itertools.count(1)

    def fail(params: dict[str, Any]) -> Any:
        raise Fail("ERROR_CORE", "boom")

    return FakeBitrix(
        methods={
            "crm.lead.add": lambda p: next(ids),
            "crm.deal.add": lambda p: next(ids),
            "crm.lead.update": lambda p: True,
            "crm.lead.get": lambda p: {"ID": str(p.get("id")), "TITLE": "t"},
            "crm.lead.list": lambda p: [],
            "user.current": lambda p: {"ID": "1", "NAME": "John", "UF_DEPARTMENT": [1, 7]},
            "fail.now": fail,
        }
    )


def flaky(code: str, then: Any = True, *, times: int = 1) -> Callable[[dict[str, Any]], Any]:
    """A fake method failing with `code` the first `times` calls, then answering `then`
    (called with the parameters if it is callable)."""
    calls = {"n": 0}

    def method(params: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise Fail(code, "refused")
        return then(params) if callable(then) else then

    return method


async def pause(n: int = 200) -> None:
    """Let other tasks run for a while, without real time passing."""
    import anyio.lowlevel

    for _ in range(n):
        await anyio.lowlevel.checkpoint()
