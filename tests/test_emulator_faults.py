"""Injected faults: HTML 5xx, 503 before running, failures and drops after running, delays."""

from __future__ import annotations

import time

import httpx
import pytest

from bitrix_batch.emulator import FaultConfig
from tests.emulator_support import api, make_emulator


async def test_scripted_html_page_runs_nothing() -> None:
    emu = make_emulator()
    emu.faults.script("html_5xx")
    async with api(emu) as a:
        response = await a.raw("crm.lead.add", json={"fields": {"TITLE": "x"}})
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert "<html>" in response.text
        assert emu.count("lead") == 0
        # The script is used up: the next request is normal.
        assert (await a.call("crm.lead.add", {"fields": {"TITLE": "x"}}))[0] == 200
    assert emu.stats.faults["html_5xx"] == 1


async def test_503_before_running() -> None:
    emu = make_emulator()
    emu.faults.script("unavailable_503")
    async with api(emu) as a:
        status, body = await a.call("batch", {"cmd": ["crm.lead.add?fields[TITLE]=x"]})
    assert (status, body["error"]) == (503, "QUERY_LIMIT_EXCEEDED")
    assert emu.count("lead") == 0


async def test_failure_after_running_is_the_ambiguous_case() -> None:
    emu = make_emulator()
    emu.faults.script("fail_after_run")
    async with api(emu) as a:
        response = await a.raw(
            "batch", json={"cmd": ["crm.lead.add?fields[TITLE]=x", "crm.lead.add?fields[TITLE]=y"]}
        )
    assert response.status_code == 500
    assert "<html>" in response.text
    assert emu.count("lead") == 2  # the batch ran
    assert emu.stats.statuses[500] == 1


async def test_drop_after_running_raises_a_transport_error_in_process() -> None:
    emu = make_emulator()
    emu.faults.script("drop_after_run", "drop_before_run")
    async with api(emu) as a:
        with pytest.raises(httpx.RemoteProtocolError):
            await a.raw("crm.lead.add", json={"fields": {"TITLE": "x"}})
        assert emu.count("lead") == 1
        with pytest.raises(httpx.TransportError):
            await a.raw("crm.lead.add", json={"fields": {"TITLE": "y"}})
        assert emu.count("lead") == 1


async def test_slow_response_waits_for_real() -> None:
    emu = make_emulator(faults=FaultConfig(slow_seconds=0.05))
    emu.faults.script("slow")
    async with api(emu) as a:
        began = time.monotonic()
        status, _ = await a.call("user.current")
        assert status == 200
        assert time.monotonic() - began >= 0.05


async def test_time_scale_sleeps_the_modelled_time() -> None:
    emu = make_emulator(time_scale=0.5)
    async with api(emu) as a:
        began = time.monotonic()
        await a.call("crm.lead.add", {"fields": {"TITLE": "x"}})  # 0.05 s modelled
        assert time.monotonic() - began >= 0.025


async def test_random_faults_are_reproducible_with_a_seed() -> None:
    async def outcomes(seed: int) -> list[str]:
        emu = make_emulator(
            faults=FaultConfig(seed=seed, html_5xx=0.2, unavailable_503=0.2, drop_after_run=0.2)
        )
        seen = []
        async with api(emu) as a:
            for _ in range(40):
                try:
                    response = await a.raw("user.current")
                    seen.append(str(response.status_code))
                except httpx.TransportError:
                    seen.append("drop")
        return seen

    first, second = await outcomes(3), await outcomes(3)
    assert first == second
    assert {"200", "502", "503", "drop"} <= set(first)
    assert first != await outcomes(4)


async def test_faults_restricted_to_methods() -> None:
    emu = make_emulator(faults=FaultConfig(html_5xx=1.0, methods=frozenset({"batch"})))
    async with api(emu) as a:
        assert (await a.call("user.current"))[0] == 200
        assert (await a.raw("batch", json={"cmd": []})).status_code == 502


def test_unknown_fault_kind_is_refused() -> None:
    emu = make_emulator()
    with pytest.raises(ValueError, match="unknown fault"):
        emu.faults.script("explode")  # type: ignore[arg-type]
