"""The client against the emulator in-process (httpx.ASGITransport): real server semantics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bitrix_batch import AuthError, BitrixClient, OAuthTokens, Ref, RetryPolicy, SkipReason
from bitrix_batch.emulator import Emulator, EmulatorConfig, FaultConfig
from tests.emulator_support import oauth_for
from tests.fake_clock import FakeClock


def emulator(**options: Any) -> Emulator:
    options.setdefault("rate_limit", False)
    options.setdefault("operating_limit", False)
    return Emulator(EmulatorConfig(**options))


def client_for(emu: Emulator, **kwargs: Any) -> BitrixClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.testing())
    url = kwargs.pop("url", emu.webhook_url())
    return BitrixClient(url, transport=httpx.ASGITransport(app=emu.app), **kwargs)


async def test_seed_example_runs_in_one_request() -> None:
    """The seed's user.current -> department.get example is one batch call, resolved by the
    server."""
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(
            {
                "get_user": "user.current",
                "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
            }
        )
    assert emu.stats.requests == 1
    dept_id = result.result["get_user"]["UF_DEPARTMENT"][0]
    assert result.result["get_department"][0]["ID"] == str(dept_id)
    assert result.result_total["get_department"] == 1
    assert set(result.result_time) == {"get_user", "get_department"}


async def test_1234_adds_take_25_requests_and_write_each_lead_once() -> None:
    """1,234 independent adds: 25 requests, 1,234 leads, no duplicates."""
    emu = emulator()
    cmd = [("crm.lead.add", {"fields": {"TITLE": f"Lead {i}"}}) for i in range(1234)]
    async with client_for(emu) as client:
        result = await client.batch(cmd)
    result.raise_for_errors()
    assert emu.stats.requests == 25
    assert emu.count("lead") == 1234
    assert emu.stats.duplicate_adds("lead") == {}
    ids = list(result.result.values())
    assert len(set(ids)) == 1234


async def test_cross_chunk_chain_matches_what_the_server_would_do() -> None:
    """A 3-level chain across requests: each lead gets its user's ID, read back correctly."""
    emu = emulator(seed_users=3)
    cmd: dict[str, Any] = {}
    for i in range(120):
        cmd[f"u{i}"] = ("user.get", {"filter": {"ID": 1 + i % 3}})
        cmd[f"a{i}"] = (
            "crm.lead.add",
            {
                "fields": {
                    "TITLE": f"T{i} by {Ref(f'u{i}')[0]['NAME']}",
                    "ASSIGNED_BY_ID": Ref(f"u{i}")[0]["ID"],
                }
            },
        )
        cmd[f"g{i}"] = ("crm.lead.get", {"id": Ref(f"a{i}")})
    async with client_for(emu) as client:
        plan = client.plan(cmd)
        result = await client.batch(cmd)
        users = {u["ID"]: u for u in await client.call("user.get", {"filter": {"<=ID": 3}})}
    result.raise_for_errors()
    assert emu.stats.requests == len(plan.chunks) + 1
    assert plan.rounds == 2
    for i in range(120):
        lead = result.result[f"g{i}"]
        user = users[str(1 + i % 3)]
        assert lead["ASSIGNED_BY_ID"] == user["ID"]
        assert lead["TITLE"] == f"T{i} by {user['NAME']}"


async def test_failed_producer_never_sends_its_dependent_write() -> None:
    """Updating a lead found by a search that found nothing is never sent."""
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch(
            {
                "find": ("crm.lead.list", {"filter": {"TITLE": "nobody"}}),
                "upd": ("crm.lead.update", {"id": Ref("find")[0]["ID"], "fields": {"X": "x"}}),
            }
        )
    assert result.skipped["upd"].reason is SkipReason.UNRESOLVED_REFERENCE
    assert emu.stats.commands["crm.lead.update"] == 0


async def test_halt_matches_the_server_across_requests() -> None:
    """halt=True: a failure in the second request stops everything after it."""
    emu = emulator()
    cmd: list[Any] = [("crm.lead.add", {"fields": {"TITLE": str(i)}}) for i in range(70)]
    cmd.insert(60, ("crm.lead.get", {"id": 999999}))
    async with client_for(emu) as client:
        result = await client.batch(cmd, halt=True)
    assert list(result.result) == list(range(60))
    assert list(result.result_error) == [60]
    assert set(result.skipped) == set(range(61, 71))
    assert emu.count("lead") == 60


async def test_list_and_dict_keys_round_trip_through_php_shapes() -> None:
    """Numeric keys come back from PHP as a list; they map back to the caller's keys."""
    emu = emulator()
    async with client_for(emu) as client:
        result = await client.batch({"0": "user.current", "1": "user.current", "x": "nope.nope"})
    assert set(result.result) == {"0", "1"}
    assert result.result_error["x"].code == "ERROR_METHOD_NOT_FOUND"


async def test_form_encoding_gives_the_same_results() -> None:
    """body='form' (double encoding) gives the server the same parameters as JSON."""
    emu = emulator()
    title = "a&b=c +7 #1 [x] % ünï"
    async with client_for(emu, body="form") as client:
        result = await client.batch(
            {
                "a": ("crm.lead.add", {"fields": {"TITLE": title}}),
                "g": ("crm.lead.get", {"id": Ref("a")}),
            }
        )
    assert result.result["g"]["TITLE"] == title


async def test_html_fault_after_run_loses_and_duplicates_nothing() -> None:
    """An HTML 500 after a batch of adds ran: reported unknown, never re-sent, no duplicate."""
    emu = emulator(faults=FaultConfig(fail_after_run=1.0, methods=frozenset({"batch"})))
    async with client_for(emu) as client:
        result = await client.batch(
            [("crm.lead.add", {"fields": {"TITLE": f"x{i}"}}) for i in range(30)]
        )
    assert set(result.unknown) == set(range(30))
    assert emu.count("lead") == 30
    assert emu.stats.duplicate_adds("lead") == {}
    assert emu.stats.requests == 1


async def test_rate_limited_emulator_is_never_overrun() -> None:
    """With the standard bucket on both sides, 80 requests provoke no 503."""
    clock = FakeClock()
    emu = emulator(rate_limit=True, clock=clock.wall)
    client = BitrixClient(
        emu.webhook_url(),
        transport=httpx.ASGITransport(app=emu.app),
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy.testing(),
    )
    async with client:
        result = await client.batch([("user.current", {})] * (80 * 50))
    assert result.ok
    assert emu.stats.requests == 80
    assert emu.stats.status_503 == 0
    assert clock.now == pytest.approx(30 * 0.5 / 0.98)


async def test_oauth_token_expiring_mid_run_is_refreshed_once() -> None:
    """An access token expiring mid-run: one refresh, every command accounted for, no dupes."""
    emu = emulator()
    reply = emu.issue_oauth_token()
    saved: list[OAuthTokens] = []
    creds = oauth_for(emu, reply, on_refresh=saved.append)
    expired: list[int] = []

    def expire_after_first(done: int, total: int) -> None:
        if not expired:
            expired.append(done)
            emu.expire_access_tokens()

    cmd = [("crm.lead.add", {"fields": {"TITLE": f"o{i}"}}) for i in range(500)]
    async with client_for(emu, url=creds, max_concurrency=4) as client:
        result = await client.batch(cmd, progress=expire_after_first)
        assert reply["access_token"] not in repr(client)
    result.raise_for_errors()
    assert emu.stats.oauth_refreshes == 1
    assert len(saved) == 1
    assert saved[0].refresh_token != reply["refresh_token"]
    assert emu.count("lead") == 500
    assert emu.stats.duplicate_adds("lead") == {}


async def test_a_revoked_webhook_is_fatal() -> None:
    """401 INVALID_CREDENTIALS is not retried and stops the job with AuthError."""
    emu = emulator()
    client = BitrixClient(
        "http://testserver/rest/1/wrongcode/",
        transport=httpx.ASGITransport(app=emu.app),
        rate_limit=None,
    )
    async with client:
        with pytest.raises(AuthError) as info:
            await client.batch(["user.current"] * 120)
    assert info.value.code == "INVALID_CREDENTIALS"
    assert "wrongcode" not in str(info.value)
    assert emu.stats.requests <= 3
