"""The emulator over real loopback sockets, and other people's clients driven against it."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from bitrix_batch.emulator import Emulator, EmulatorConfig, serve_in_thread

pytestmark = pytest.mark.integration


def test_serve_in_thread_answers_and_stops() -> None:
    emu = Emulator(EmulatorConfig(seed_leads=3))
    with serve_in_thread(emu) as base:
        assert base.startswith("http://127.0.0.1:")
        with httpx.Client() as client:
            body = client.post(emu.webhook_url(base) + "crm.lead.list.json", json={}).json()
            stats = client.get(base + "/_emulator/stats").json()
    assert body["total"] == 3
    assert stats["requests"] == 1
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(base + "/_emulator/stats")


def test_dropped_connection_over_a_real_socket() -> None:
    emu = Emulator(EmulatorConfig())
    emu.faults.script("drop_after_run", "fail_after_run")
    with serve_in_thread(emu) as base, httpx.Client() as client:
        url = emu.webhook_url(base) + "crm.lead.add"
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(url, json={"fields": {"TITLE": "x"}})
        ambiguous = client.post(url, json={"fields": {"TITLE": "y"}})
        assert ambiguous.status_code == 500
        assert ambiguous.headers["content-type"].startswith("text/html")
    assert emu.count("lead") == 2


def test_command_line_prints_the_webhook_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bitrix_batch.emulator", "--port", "0", "--seed-leads", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        webhook = process.stdout.readline().split()[-1]
        assert webhook.startswith("http://127.0.0.1:")
        assert webhook.endswith("/")
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(webhook + "crm.lead.list")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.json()["total"] == 2
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


# -- peers -----------------------------------------------------------------------------------


@pytest.mark.peers
def test_fast_bitrix24_call_get_all_and_call_batch() -> None:
    fast_bitrix24 = pytest.importorskip("fast_bitrix24")
    emu = Emulator(EmulatorConfig(seed_leads=130))

    async def scenario(webhook: str) -> tuple[Any, Any, Any]:
        b = fast_bitrix24.BitrixAsync(webhook, verbose=False)
        ids = await b.call("crm.lead.add", [{"fields": {"TITLE": f"F{i}"}} for i in range(120)])
        leads = await b.get_all("crm.lead.list", {"select": ["ID", "TITLE"]})
        raw = await b.call_batch(
            {
                "halt": 0,
                "cmd": {"a": "crm.lead.add?fields[TITLE]=p", "b": "crm.lead.get?id=$result[a]"},
            }
        )
        return ids, leads, raw

    with serve_in_thread(emu) as base:
        ids, leads, raw = asyncio.run(scenario(emu.webhook_url(base)))
    assert list(ids) == list(range(131, 251))
    assert sorted(int(row["ID"]) for row in leads) == list(range(1, 251))
    assert raw["b"]["TITLE"] == "p"
    assert raw["a"] == 251
    assert emu.stats.duplicate_adds("lead") == {}
    assert emu.count("lead") == 251


@pytest.mark.peers
def test_b24pysdk_batches_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    b24pysdk = pytest.importorskip("b24pysdk")
    caller = importlib.import_module("b24pysdk.api.callers.call_method")
    # The documented one-line patch: the SDK hard-codes https.
    monkeypatch.setattr(
        caller._MethodCaller,
        "_base_url",
        property(lambda self: f"http://{self._domain}/rest"),
    )
    emu = Emulator(EmulatorConfig(seed_leads=130))
    with serve_in_thread(emu) as base:
        token = b24pysdk.BitrixWebhook(
            domain=base.removeprefix("http://"), webhook_token=f"1/{emu.config.webhook_code}"
        )
        client = b24pysdk.Client(token)
        added = client.call_batches(
            [client.crm.lead.add(fields={"TITLE": f"S{i}"}) for i in range(60)]
        ).result
        fast = list(client.crm.lead.list(select=["ID"]).as_list_fast().result)
        slow = list(client.crm.lead.list(select=["ID"]).as_list().result)
        one = client.crm.lead.get(bitrix_id=131).result
    assert sorted(added.result.values()) == list(range(131, 191))
    assert [int(r["ID"]) for r in fast] == list(range(1, 191))
    assert len(slow) == 190
    assert one["TITLE"] == "S0"
