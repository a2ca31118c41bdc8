"""Shared helpers for the emulator's tests: a fake clock and an in-process client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bitrix_batch import OAuth
from bitrix_batch.emulator import Emulator, EmulatorConfig

__all__ = ["Api", "FakeClock", "api", "make_emulator", "oauth_for"]


class FakeClock:
    """A clock tests move by hand, so limits need no real sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def make_emulator(**options: Any) -> Emulator:
    """An emulator on a fake clock; limits off unless asked for."""
    options.setdefault("clock", FakeClock())
    options.setdefault("rate_limit", False)
    options.setdefault("operating_limit", False)
    return Emulator(EmulatorConfig(**options))


def oauth_for(emu: Emulator, tokens: dict[str, Any] | None = None, **options: Any) -> OAuth:
    """An OAuth credential with `tokens` (a token answer; default: a fresh pair from `emu`),
    refreshed by the emulator's OAuth server (through the in-process transport, host
    ``testserver``)."""
    reply = tokens if tokens is not None else emu.issue_oauth_token()
    return OAuth(
        emu.oauth_url(),
        access_token=reply["access_token"],
        refresh_token=reply["refresh_token"],
        client_id=emu.config.oauth_client_id,
        client_secret=emu.config.oauth_client_secret,
        oauth_url="http://testserver/oauth/token/",
        **options,
    )


class Api:
    """Calls the emulator through ``httpx.ASGITransport`` with the default webhook."""

    def __init__(self, emulator: Emulator, client: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.client = client
        self.base = emulator.webhook_url()

    async def raw(self, method: str, **kwargs: Any) -> httpx.Response:
        """POST (or GET with ``http="GET"``) to ``<webhook>/<method>``."""
        verb = kwargs.pop("http", "POST")
        return await self.client.request(verb, self.base + method, **kwargs)

    async def call(self, method: str, params: Any = None) -> tuple[int, Any]:
        """POST JSON params; returns (status, decoded body)."""
        response = await self.raw(method, json=params if params is not None else {})
        return response.status_code, json.loads(response.text)

    async def batch(self, cmd: Any, halt: Any = 0) -> dict[str, Any]:
        """A batch that must answer 200; returns the inner ``result`` section."""
        status, body = await self.call("batch", {"halt": halt, "cmd": cmd})
        assert status == 200, body
        assert "time" in body
        section: dict[str, Any] = body["result"]
        return section


@asynccontextmanager
async def api(emulator: Emulator | None = None, **options: Any) -> AsyncIterator[Api]:
    """An :class:`Api` for ``emulator`` (or a new one made with ``options``)."""
    emu = emulator if emulator is not None else make_emulator(**options)
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(emu, client)
