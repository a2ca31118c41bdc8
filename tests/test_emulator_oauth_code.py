"""The OAuth ``authorization_code`` grant: one-time codes, client checks, the real error shapes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bitrix_batch import BitrixClient, RetryPolicy
from tests.emulator_support import FakeClock, api, make_emulator, oauth_for

TOKEN_URL = "/oauth/token/"


def grant(emu: Any, code: str, **overrides: str) -> dict[str, str]:
    """The query of an ``authorization_code`` exchange for ``emu``'s application."""
    params = {
        "grant_type": "authorization_code",
        "client_id": emu.config.oauth_client_id,
        "client_secret": emu.config.oauth_client_secret,
        "code": code,
    }
    params.update(overrides)
    return params


async def test_a_code_buys_a_working_token_pair_once() -> None:
    async with api() as a:
        emu = a.emulator
        code = emu.issue_oauth_code()
        first = await a.client.get(TOKEN_URL, params=grant(emu, code))
        again = await a.client.get(TOKEN_URL, params=grant(emu, code))
        tokens = first.json()
        call = await a.client.post("/rest/user.current", json={"auth": tokens["access_token"]})
    assert first.status_code == 200
    assert {"access_token", "refresh_token", "expires_in", "member_id", "client_endpoint"} <= set(
        tokens
    )
    assert tokens["expires_in"] == 3600
    assert tokens["client_endpoint"] == "http://testserver/rest/"
    assert call.status_code == 200
    assert call.json()["result"]["ID"] == "1"
    # One-time: the second exchange of the same code is refused.
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid authorization code",
    }
    assert emu.stats.oauth_codes_exchanged == 1
    assert emu.stats.oauth_refreshes == 0


async def test_wrong_client_is_refused_and_keeps_the_code() -> None:
    """Shapes as the official SDK's live suite expects them from oauth.bitrix.info."""
    async with api() as a:
        emu = a.emulator
        code = emu.issue_oauth_code()
        secret = await a.client.get(TOKEN_URL, params=grant(emu, code, client_secret="nope"))
        app = await a.client.get(TOKEN_URL, params=grant(emu, code, client_id="someone.else"))
        right = await a.client.get(TOKEN_URL, params=grant(emu, code))
    assert secret.status_code == 400
    assert secret.json()["error"] == "invalid_client"
    assert "nope" not in secret.text
    assert (app.status_code, app.json()) == (200, {"error": "wrong_client"})
    assert right.status_code == 200


async def test_codes_live_thirty_seconds() -> None:
    clock = FakeClock()
    async with api(make_emulator(clock=clock)) as a:
        emu = a.emulator
        fresh, stale = emu.issue_oauth_code(), emu.issue_oauth_code()
        clock.advance(29.9)
        ok = await a.client.get(TOKEN_URL, params=grant(emu, fresh))
        clock.advance(0.1)
        late = await a.client.get(TOKEN_URL, params=grant(emu, stale))
    assert ok.status_code == 200
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")


async def test_unknown_code_and_unknown_grant() -> None:
    async with api() as a:
        emu = a.emulator
        unknown = await a.client.post(TOKEN_URL, data=grant(emu, "made-up"))
        odd = await a.client.get(TOKEN_URL, params=grant(emu, "x", grant_type="password"))
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")
    assert (odd.status_code, odd.json()["error"]) == (400, "invalid_request")


async def test_authorize_endpoint_redirects_with_a_code_and_the_state() -> None:
    async with api(oauth_redirect_uris=frozenset({"https://app.invalid/callback"})) as a:
        emu = a.emulator
        response = await a.client.get(
            "/oauth/authorize/",
            params={
                "client_id": emu.config.oauth_client_id,
                "state": "s-42",
                "redirect_uri": "https://app.invalid/callback",
            },
        )
        assert response.status_code == 302
        location = urlsplit(response.headers["location"])
        values = {k: v[0] for k, v in parse_qs(location.query).items()}
        exchanged = await a.client.get(TOKEN_URL, params=grant(emu, values["code"]))
        plain = await a.client.get(
            "/oauth/authorize/", params={"client_id": emu.config.oauth_client_id}
        )
        refused = await a.client.get("/oauth/authorize/", params={"client_id": "someone.else"})
    assert (location.netloc, location.path) == ("app.invalid", "/callback")
    assert values["state"] == "s-42"
    assert values["server_domain"] == "oauth.bitrix.info"
    assert values["member_id"] == exchanged.json()["member_id"]
    assert exchanged.status_code == 200
    assert plain.status_code == 200
    assert "code" in plain.json()
    assert (refused.status_code, refused.json()) == (200, {"error": "wrong_client"})


async def test_control_endpoint_issues_codes_too() -> None:
    async with api() as a:
        emu = a.emulator
        code = json.loads((await a.client.post("/_emulator/oauth/code")).text)["code"]
        exchanged = await a.client.get(TOKEN_URL, params=grant(emu, code))
    assert exchanged.status_code == 200


async def test_the_client_runs_on_tokens_from_a_code() -> None:
    """The whole install flow: code -> tokens -> the client, which later refreshes them."""
    import httpx

    emu = make_emulator()
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        code = emu.issue_oauth_code()
        tokens = (await http.get(TOKEN_URL, params=grant(emu, code))).json()
    oauth = oauth_for(emu, tokens)
    async with BitrixClient(
        oauth, transport=transport, rate_limit=None, retry=RetryPolicy.testing()
    ) as client:
        assert (await client.call("user.current"))["ID"] == "1"
        emu.expire_access_tokens()
        assert (await client.call("user.current"))["ID"] == "1"
    assert emu.stats.oauth_codes_exchanged == 1
    assert emu.stats.oauth_refreshes == 1


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/steal",
        "javascript:alert(1)",
        "http://127.0.0.1/\r\nSet-Cookie: pwned=1",
        "http://127.0.0.1.evil.example/",
    ],
)
async def test_authorize_never_sends_a_code_to_an_address_nobody_registered(uri: str) -> None:
    async with api() as a:
        emu = a.emulator
        response = await a.client.get(
            "/oauth/authorize/",
            params={"client_id": emu.config.oauth_client_id, "redirect_uri": uri},
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "location" not in response.headers
    assert "code" not in response.text


async def test_authorize_redirects_to_this_machine_keeping_query_and_fragment_apart() -> None:
    async with api() as a:
        emu = a.emulator
        response = await a.client.get(
            "/oauth/authorize/",
            params={
                "client_id": emu.config.oauth_client_id,
                "redirect_uri": "http://127.0.0.1:8080/cb?app=1#done",
            },
        )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.fragment == "done"
    values = parse_qs(location.query)
    assert values["app"] == ["1"]
    assert "code" in values
