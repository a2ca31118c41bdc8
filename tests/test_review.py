"""Regression tests for bugs found in a code review of the client (all fixed)."""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import httpx
import pytest

from bitrix_batch import (
    BitrixBatchError,
    BitrixClient,
    InvalidReferenceError,
    PlanError,
    Ref,
    RetryPolicy,
    SkipReason,
    Status,
)
from bitrix_batch._encoding import parse_str
from bitrix_batch._oauth import OAuth
from bitrix_batch._throttle import OperatingBudget, RateLimit
from bitrix_batch.emulator import Emulator, EmulatorConfig
from tests.fake_bitrix import WEBHOOK, FakeBitrix, flaky, pause, store
from tests.fake_clock import FakeClock


def client_for(fake: FakeBitrix, transport: Any = None, **kwargs: Any) -> BitrixClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.testing())
    return BitrixClient(WEBHOOK, transport=transport or fake.transport(), **kwargs)


def emulator_client(emu: Emulator, **kwargs: Any) -> BitrixClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.testing())
    return BitrixClient(
        emu.webhook_url(), transport=httpx.ASGITransport(app=emu.app), **kwargs
    )


def quiet_emulator() -> Emulator:
    return Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))


# --- the scheduler: parked commands, halt, fatal errors --------------------------------------


async def test_parked_read_waits_for_its_in_flight_producer() -> None:
    """A read parked for a held method is not built before its same-chunk producer is final."""
    fake = store()
    clock = FakeClock()
    budget = OperatingBudget(clock=clock, sleep=clock.sleep, wall_clock=clock.wall)
    budget.observe_blocked("crm.lead.get")  # held for 300 s
    inner = fake.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        cmd = json.loads(request.content)["cmd"]
        if "p" in cmd:
            await pause()  # the producer's request is slow ...
        if "z0" in cmd:
            clock.now += 400  # ... and the hold ends while it is in flight
        return await inner(request)

    cmd: dict[str, Any] = {f"z{i}": "user.current" for i in range(50)}
    cmd["p"] = "crm.lead.add"
    cmd["r"] = ("crm.lead.get", {"id": Ref("p")})
    client = client_for(
        fake,
        httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        operating_budget=budget,
    )
    async with client:
        result = await client.batch(cmd)
    assert result.ok


async def test_halt_tail_parked_for_a_hold_is_not_sent_beside_a_retry() -> None:
    """halt=True: the commands after a refused one never run at the same time as its retry."""
    fake = store()
    fake.methods["crm.lead.add"] = flaky("QUERY_LIMIT_EXCEEDED", fake.methods["fail.now"])
    clock = FakeClock()
    budget = OperatingBudget(clock=clock, sleep=clock.sleep, wall_clock=clock.wall)
    budget.observe_blocked("crm.deal.add")  # held for 300 s
    inner = fake.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 400  # the hold on crm.deal.add ends while the first request is out
        return await inner(request)

    client = client_for(
        fake,
        httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        operating_budget=budget,
    )
    async with client:
        result = await client.batch(
            {"a": "crm.lead.add", "b": "crm.deal.add", "c": "crm.lead.add"}, halt=True
        )
    # a was refused, then failed for real: b and c must never have been sent.
    assert result.result_error["a"].code == "ERROR_CORE"
    assert "b" not in fake.sent_keys()
    assert result.skipped["b"].reason is SkipReason.HALTED


async def test_a_refused_command_is_not_resent_after_a_fatal_error() -> None:
    """After a fatal 403 nothing more is sent, not even the retry of a refused command."""
    fake = store()
    fake.methods["crm.deal.add"] = flaky("QUERY_LIMIT_EXCEEDED", lambda p: 5)
    inner = fake.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        cmd = json.loads(request.content)["cmd"]
        if "a0" in cmd:
            await pause(50)  # both requests are on the wire before the fatal answer
            return httpx.Response(
                403, json={"error": "ACCESS_DENIED", "error_description": "Access denied!"}
            )
        await pause()  # this one answers after the fatal error was recorded
        return await inner(request)

    cmd: dict[str, Any] = {f"a{i}": "crm.lead.add" for i in range(50)}
    cmd["d"] = "crm.deal.add"
    async with client_for(fake, httpx.MockTransport(handler)) as client:
        await client.batch(cmd)
    assert fake.sent_keys().count("d") == 1


async def test_requests_waiting_for_the_rate_limit_are_not_sent_after_a_fatal_error() -> None:
    """A fatal 401 stops the job: a request still waiting in the rate limiter is not sent."""
    fake = store()
    fake.script = [
        httpx.Response(
            401, json={"error": "INVALID_CREDENTIALS", "error_description": "Invalid"}
        )
    ] * 2
    clock = FakeClock()

    async def slow_sleep(seconds: float) -> None:
        clock.now += max(seconds, 0.0)
        await pause()

    client = client_for(
        fake, clock=clock, sleep=slow_sleep, rate_limit=RateLimit(burst=1, per_second=1.0)
    )
    async with client:
        with pytest.raises(BitrixBatchError):
            await client.batch([("crm.lead.add", {})] * 100)
    assert len(fake.requests) == 1


# --- client-side substitution ------------------------------------------------------------------


async def test_whole_reference_to_a_null_result_is_not_sent() -> None:
    """A whole-value reference to a null result does not resolve (PHP isset): never sent."""
    fake = store()
    fake.methods["app.option.get"] = lambda p: None  # an option that is not set
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "opt": "app.option.get?option=parent",
                "upd": ("crm.lead.update", {"id": 1, "fields": {"PARENT_ID": Ref("opt")}}),
            }
        )
    assert "upd" not in fake.sent_keys()
    assert result.skipped["upd"].reason is SkipReason.UNRESOLVED_REFERENCE


async def test_whole_reference_to_an_empty_array_is_not_silently_dropped() -> None:
    """A whole-value reference to [] is not dropped from the command (the server passes [])."""
    fake = store()
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "none": "crm.lead.list?filter[TITLE]=nobody",
                "upd": ("crm.lead.update", {"id": 1, "fields": {"UF_TAGS": Ref("none")}}),
            }
        )
    sent = [cmd["upd"] for cmd in fake.batches if "upd" in cmd]
    if sent:
        params = parse_str(sent[0].split("?", 1)[1])
        assert "UF_TAGS" in params.get("fields", {})
    else:
        assert result.skipped["upd"].reason is SkipReason.UNRESOLVED_REFERENCE


async def test_substituted_text_that_looks_like_a_reference_is_not_resubstituted() -> None:
    """A value copied client-side arrives as the server would have passed it: literally."""
    emu = quiet_emulator()
    async with emulator_client(emu) as client:
        lead = await client.call("crm.lead.add", {"fields": {"TITLE": "$result[x]"}})
        result = await client.batch(
            {
                "get": ("crm.lead.get", {"id": lead}),
                "copy": ("crm.lead.add", {"fields": {"TITLE": Ref("get")["TITLE"]}}),
            }
        )
        if result["copy"].ok:
            copy = await client.call("crm.lead.get", {"id": result.result["copy"]})
            assert copy["TITLE"] == "$result[x]"
        else:
            assert result["copy"].status is Status.SKIPPED


def test_a_token_glued_to_text_by_a_no_break_space_is_refused() -> None:
    """The server's token runs up to ASCII whitespace only, so text after U+00A0 is swallowed."""
    client = BitrixClient(WEBHOOK, rate_limit=None)
    title = f"Bonjour {Ref('u')['NAME']}\u00a0!"
    with pytest.raises(InvalidReferenceError):
        client.plan({"u": "user.current", "w": ("crm.lead.add", {"fields": {"TITLE": title}})})


async def test_client_side_splice_matches_the_servers_str_replace() -> None:
    """Two tokens where one is a prefix of the other: the client splices like str_replace."""
    text = "$result[me][NAME] $result[me][NAME][0]"
    emu = quiet_emulator()
    async with emulator_client(emu) as client:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app)) as raw:
            body = {"halt": 0, "cmd": {"me": "user.current", "t": "crm.lead.add?" + (
                "fields%5BTITLE%5D=" + text.replace("$", "%24").replace(" ", "+")
                .replace("[", "%5B").replace("]", "%5D")
            )}}
            answer = (await raw.post(emu.webhook_url() + "batch", json=body)).json()
        server_id = answer["result"]["result"]["t"]
        server_title = (await client.call("crm.lead.get", {"id": server_id}))["TITLE"]
        try:
            result = await client.batch(
                {"me": "user.current", "t": ("crm.lead.add", {"fields": {"TITLE": text}})}
            )
        except PlanError:
            return  # refusing the ambiguous text is fine too
        client_title = (await client.call("crm.lead.get", {"id": result.result["t"]}))["TITLE"]
    assert client_title == server_title


# --- errors that reach the caller ----------------------------------------------------------


async def test_text_that_cannot_be_encoded_is_refused_before_anything_is_sent() -> None:
    """A lone surrogate (a cut emoji) is a PlanError up front, not a crash mid-run."""
    fake = store()
    cmd: dict[str, Any] = {"a": "crm.lead.add"}
    cmd["w"] = ("crm.lead.update", {"id": Ref("a"), "fields": {"TITLE": "cut \ud83d"}})
    async with client_for(fake) as client:
        with pytest.raises(PlanError):
            await client.batch(cmd)
    assert fake.requests == []


async def test_a_non_finite_float_never_becomes_invalid_json() -> None:
    """NaN is refused, or sent as valid JSON: invalid JSON makes PHP run with no parameters."""
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, json={"result": 1, "time": {}})

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    client = BitrixClient(WEBHOOK, transport=httpx.MockTransport(handler), rate_limit=None)
    async with client:
        try:
            await client.call("crm.deal.add", {"fields": {"OPPORTUNITY": float("nan")}})
        except PlanError:
            assert sent == []
            return
    json.loads(sent[0], parse_constant=no_constants)


async def test_a_top_level_error_with_http_200_is_not_reported_as_never_sent() -> None:
    """WRONG_ENCODING (HTTP 200) comes after the batch ran: its writes are unknown, not skipped."""
    fake = store()
    fake.script = [
        httpx.Response(
            200, json={"error": "WRONG_ENCODING", "error_description": "Wrong request encoding"}
        )
    ]
    async with client_for(fake) as client:
        result = await client.batch(["crm.lead.add", "crm.lead.add"])
    assert set(result.unknown) == {0, 1}


async def test_an_internal_error_of_one_write_is_reported_as_unknown() -> None:
    """README: an internal error of one write command is reported in result.unknown."""
    fake = store()
    fake.methods["crm.deal.add"] = flaky("INTERNAL_SERVER_ERROR", lambda p: 5)
    async with client_for(fake) as client:
        result = await client.batch({"w": "crm.deal.add"})
    assert "w" in result.unknown
    assert result["w"].status is Status.UNKNOWN


async def test_an_exception_from_on_refresh_is_not_wrapped_in_an_exception_group() -> None:
    """batch() raises the on_refresh error itself, as call() does, never an ExceptionGroup."""

    async def provider(stale: str | None) -> str:
        return "fresh-token-0123456789abcdef"

    def on_refresh(tokens: Any) -> None:
        raise RuntimeError("could not store the tokens")

    fake = store()
    fake.script = [
        httpx.Response(401, json={"error": "expired_token", "error_description": "expired"})
    ]
    creds = OAuth(
        "https://example.bitrix24.com/rest/",
        access_token="stale-token-0123456789abcdef",
        token_provider=provider,
        on_refresh=on_refresh,
    )
    client = BitrixClient(creds, transport=fake.transport(), rate_limit=None)
    async with client:
        with pytest.raises(RuntimeError, match="could not store"):
            await client.batch(["user.current"])


async def test_an_exception_inside_a_stream_block_is_not_wrapped() -> None:
    """An error raised by the reader inside `client.stream()` reaches it unchanged."""
    fake = store()

    async def read(client: BitrixClient) -> None:
        async with client.stream(["user.current"] * 3) as results:
            async for _ in results:
                raise KeyError("the reader's own error")

    async with client_for(fake) as client:
        with pytest.raises(KeyError):
            await read(client)


async def test_an_unreachable_oauth_server_does_not_make_unsent_commands_unknown() -> None:
    """If the token refresh cannot reach the OAuth server, the batch was never sent."""
    oauth_url = "https://oauth.example.test/oauth/token/"

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth.example.test":
            raise httpx.ConnectError("unreachable")
        return httpx.Response(
            401, json={"error": "expired_token", "error_description": "expired"}
        )

    creds = OAuth(
        "https://example.bitrix24.com/rest/",
        access_token="stale-token-0123456789abcdef",
        refresh_token="refresh-token-0123456789abcdef",
        client_id="local.app.1",
        client_secret="client-secret-0123456789",
        oauth_url=oauth_url,
    )
    client = BitrixClient(
        creds, transport=httpx.MockTransport(handler), rate_limit=None,
        retry=RetryPolicy.testing(),
    )
    async with client:
        try:
            result = await client.batch(["crm.lead.add"])
        except BitrixBatchError:
            return  # "no command could run at all": raising is what the README promises
    assert result[0].status is Status.SKIPPED


# --- secrets -----------------------------------------------------------------------------------


async def test_a_rotated_refresh_token_never_appears_in_httpx_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The refresh token the OAuth server hands out later is masked in httpx's log lines."""
    oauth_url = "https://oauth.example.test/oauth/token/"
    generation = itertools.count(1)
    portal_calls = itertools.count(1)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth.example.test":
            n = next(generation)
            return httpx.Response(
                200,
                json={
                    "access_token": f"access-token-{n:04d}-aaaaaaaaaaaaaaaa",
                    "refresh_token": f"refresh-token-{n:04d}-bbbbbbbbbbbbbbbb",
                    "expires_in": 3600,
                },
            )
        if next(portal_calls) in (1, 3):  # the first call of each batch: the token expired
            return httpx.Response(
                401, json={"error": "expired_token", "error_description": "expired"}
            )
        return httpx.Response(200, json={"result": {"result": [{"ID": "1"}]}, "time": {}})

    creds = OAuth(
        "https://example.bitrix24.com/rest/",
        access_token="access-token-0000-aaaaaaaaaaaaaaaa",
        refresh_token="refresh-token-0000-bbbbbbbbbbbbbbbb",
        client_id="local.app.1",
        client_secret="client-secret-0123456789",
        oauth_url=oauth_url,
    )
    client = BitrixClient(creds, transport=httpx.MockTransport(handler), rate_limit=None)
    with caplog.at_level(logging.INFO, logger="httpx"):
        async with client:
            await client.batch(["user.current"])
            await client.batch(["user.current"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "oauth.example.test" in text
    assert "refresh-token-0001" not in text
