"""OAuth credentials: single-flight refresh, token hand-over, error texts without secrets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from bitrix_batch import AuthError, TransportError
from bitrix_batch._auth import REFRESH_UNAVAILABLE, Credentials, Webhook
from bitrix_batch._oauth import OAuth, OAuthTokens

from .emulator_support import api, make_emulator
from .fake_clock import WALL_EPOCH

PORTAL = "https://example.bitrix24.com/rest/"
OAUTH_URL = "https://oauth.example.test/oauth/token/"
CLIENT_ID = "local.app.1234"
CLIENT_SECRET = "client-secret-XYZ-0123456789"
ACCESS_0 = "access-token-0000-aaaaaaaaaaaaaaaa"
REFRESH_0 = "refresh-token-0000-bbbbbbbbbbbbbbbb"


def _reply(n: int) -> dict[str, Any]:
    """The documented refresh reply (§7), generation `n`."""
    return {
        "access_token": f"access-token-{n:04d}-aaaaaaaaaaaaaaaa",
        "refresh_token": f"refresh-token-{n:04d}-bbbbbbbbbbbbbbbb",
        "expires_in": 3600,
        "expires": int(WALL_EPOCH) + 3600,
        "client_endpoint": PORTAL,
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "domain": "oauth.bitrix.info",
        "member_id": "member-42",
        "scope": "crm,user",
        "status": "L",
    }


class OAuthServer:
    """A MockTransport OAuth server that rotates tokens and records every query it got."""

    def __init__(self, answer: Callable[[int], httpx.Response] | None = None) -> None:
        self.queries: list[dict[str, str]] = []
        self._answer = answer or (lambda n: httpx.Response(200, json=_reply(n)))

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert str(request.url.copy_with(query=None)) == OAUTH_URL
        self.queries.append(dict(request.url.params))
        return self._answer(len(self.queries))

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


@pytest.fixture
def server() -> OAuthServer:
    return OAuthServer()


@pytest.fixture
async def http(server: OAuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with server.http() as client:
        yield client


def _built_in(**kwargs: Any) -> OAuth:
    args: dict[str, Any] = {
        "access_token": ACCESS_0,
        "refresh_token": REFRESH_0,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "oauth_url": OAUTH_URL,
        "clock": lambda: WALL_EPOCH,
    }
    args.update(kwargs)
    return OAuth(PORTAL, **args)


# --- OAuthTokens --------------------------------------------------------------------------------


def test_tokens_from_reply_parses_documented_fields() -> None:
    tokens = OAuthTokens.from_reply(_reply(1), now=1000.0)
    assert tokens.access_token == "access-token-0001-aaaaaaaaaaaaaaaa"
    assert tokens.refresh_token == "refresh-token-0001-bbbbbbbbbbbbbbbb"
    assert tokens.expires_at == 4600.0  # expires_in counts from our clock, not the server's
    assert tokens.client_endpoint == PORTAL
    assert tokens.member_id == "member-42"
    assert tokens.scope == "crm,user"


def test_tokens_from_reply_falls_back_to_absolute_expiry_and_numeric_strings() -> None:
    reply = {"access_token": "a" * 20, "expires": "1700003600"}
    tokens = OAuthTokens.from_reply(reply, now=0.0)
    assert tokens.expires_at == 1_700_003_600.0
    assert tokens.refresh_token is None
    assert OAuthTokens.from_reply({"access_token": "a", "expires_in": "60"}, 5.0).expires_at == 65


def test_tokens_from_reply_without_access_token_is_rejected() -> None:
    with pytest.raises(ValueError, match="no access_token"):
        OAuthTokens.from_reply({"refresh_token": REFRESH_0}, now=0.0)


def test_tokens_repr_hides_both_tokens() -> None:
    tokens = OAuthTokens.from_reply(_reply(1), now=0.0)
    text = repr(tokens)
    assert tokens.access_token not in text
    assert tokens.refresh_token is not None
    assert tokens.refresh_token not in text
    assert "…aaaa" in text
    assert "member-42" in text
    assert "'***'" in repr(OAuthTokens("short"))
    assert "short" not in repr(OAuthTokens("short"))


# --- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://example.bitrix24.com/rest", PORTAL])
def test_portal_url_with_or_without_slash(url: str) -> None:
    oauth = OAuth(url, access_token=ACCESS_0)
    assert oauth.endpoint("crm.lead.add") == PORTAL + "crm.lead.add"
    assert oauth.redacted == PORTAL


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.bitrix24.com/rest/",
        "example.bitrix24.com/rest/",
        "https://example.bitrix24.com/",
        "https://example.bitrix24.com/rest/1/webhook-secret-code/",
        "https://example.bitrix24.com/rest/?auth=webhook-secret-code",
    ],
)
def test_bad_portal_url_is_rejected_without_echo(url: str) -> None:
    with pytest.raises(ValueError, match="portal URL") as info:
        OAuth(url, access_token=ACCESS_0)
    assert "webhook-secret-code" not in str(info.value)
    assert ACCESS_0 not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tokens": OAuthTokens(ACCESS_0), "access_token": ACCESS_0}, "not both"),
        ({"access_token": ACCESS_0, "client_id": CLIENT_ID}, "both client_id and client_secret"),
        (
            {"access_token": ACCESS_0, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            "needs a refresh_token",
        ),
        ({"access_token": ACCESS_0, "refresh_token": REFRESH_0}, "of no use"),
        ({}, "give an access token"),
        ({"access_token": ACCESS_0, "oauth_url": "oauth.bitrix.info/oauth/token/"}, "oauth_url"),
    ],
)
def test_inconsistent_arguments_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        OAuth(PORTAL, **kwargs)
    for secret in (ACCESS_0, REFRESH_0, CLIENT_SECRET):
        assert secret not in str(info.value)


def test_provider_and_client_credentials_are_exclusive() -> None:
    async def provider(stale: str | None) -> str:
        return "x"

    with pytest.raises(ValueError, match="not both"):
        _built_in(token_provider=provider)


def test_repr_and_redacted_contain_no_secret() -> None:
    oauth = _built_in()
    for text in (repr(oauth), oauth.redacted):
        for secret in (ACCESS_0, REFRESH_0, CLIENT_SECRET):
            assert secret not in text
    assert "built-in" in repr(oauth)
    assert set(oauth.secrets) == {ACCESS_0, REFRESH_0, CLIENT_SECRET}


def test_both_credentials_satisfy_the_protocol() -> None:
    creds: list[Credentials] = [_built_in(), Webhook.parse(PORTAL + "1/webhookcode/")]
    assert all(isinstance(c, Credentials) for c in creds)


# --- tokens and refresh -------------------------------------------------------------------------


async def test_current_token_is_the_given_one_without_any_request(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    oauth = _built_in()
    assert await oauth.current_token() == ACCESS_0
    assert await oauth.current_token(http) == ACCESS_0
    assert server.queries == []


async def test_refresh_sends_documented_query_and_stores_new_refresh_token(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    seen: list[OAuthTokens] = []
    oauth = _built_in(on_refresh=seen.append)  # a sync callback

    new = await oauth.refresh(ACCESS_0, http)

    assert new == _reply(1)["access_token"]
    assert server.queries == [
        {
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_0,
        }
    ]
    assert await oauth.current_token() == new
    assert seen == [oauth.tokens]
    assert seen[0].refresh_token == _reply(1)["refresh_token"]
    assert seen[0].expires_at == WALL_EPOCH + 3600

    # The next refresh must use the new refresh token: the old one is dead on the server.
    await oauth.refresh(new, http)
    assert server.queries[1]["refresh_token"] == _reply(1)["refresh_token"]
    # Old tokens are still redacted: texts from earlier requests may carry them.
    assert {ACCESS_0, REFRESH_0, new, CLIENT_SECRET} <= set(oauth.secrets)


async def test_async_on_refresh_is_awaited(http: httpx.AsyncClient) -> None:
    seen: list[str] = []

    async def store(tokens: OAuthTokens) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(tokens.access_token)

    oauth = _built_in(on_refresh=store)
    assert await oauth.refresh(ACCESS_0, http) == seen[0]


async def test_concurrent_refreshes_with_same_stale_token_make_one_request(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    oauth = _built_in()
    results: list[str] = []

    async def one() -> None:
        results.append(await oauth.refresh(ACCESS_0, http))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)

    assert len(server.queries) == 1
    assert results == [_reply(1)["access_token"]] * 20


async def test_refresh_with_already_replaced_token_makes_no_request(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    oauth = _built_in()
    new = await oauth.refresh(ACCESS_0, http)
    assert await oauth.refresh(ACCESS_0, http) == new
    assert len(server.queries) == 1


async def test_only_a_refresh_token_fetches_the_first_access_token(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    oauth = _built_in(access_token=None)
    assert oauth.tokens is None
    assert await oauth.current_token(http) == _reply(1)["access_token"]
    assert await oauth.current_token(http) == _reply(1)["access_token"]
    assert len(server.queries) == 1


async def test_token_provider_is_used_instead_of_http(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    calls: list[str | None] = []
    seen: list[OAuthTokens] = []

    async def provider(stale: str | None) -> str | OAuthTokens:
        calls.append(stale)
        if len(calls) == 1:
            return "provided-token-1-cccccccccccc"
        return OAuthTokens("provided-token-2-dddddddddddd", expires_at=5.0)

    oauth = OAuth(PORTAL, token_provider=provider, on_refresh=seen.append)
    assert "token_provider" in repr(oauth)
    first = await oauth.current_token()
    assert first == "provided-token-1-cccccccccccc"
    second = await oauth.refresh(first, http)
    assert second == "provided-token-2-dddddddddddd"
    assert calls == [None, first]
    assert [t.access_token for t in seen] == [first, second]
    assert server.queries == []
    assert {first, second} <= set(oauth.secrets)


async def test_empty_token_from_provider_is_an_auth_error(http: httpx.AsyncClient) -> None:
    async def provider(stale: str | None) -> str:
        return ""

    oauth = OAuth(PORTAL, token_provider=provider)
    with pytest.raises(AuthError):
        await oauth.current_token()


async def test_static_token_cannot_be_refreshed(
    server: OAuthServer, http: httpx.AsyncClient
) -> None:
    oauth = OAuth(PORTAL, access_token=ACCESS_0)
    with pytest.raises(AuthError) as info:
        await oauth.refresh(ACCESS_0, http)
    assert info.value.code == REFRESH_UNAVAILABLE
    assert not OAuth.is_expired_error(info.value)  # a client must not loop on it
    assert ACCESS_0 not in str(info.value)
    assert server.queries == []


# --- OAuth server errors ------------------------------------------------------------------------


def _echoing_error(code: str, status: int) -> Callable[[int], httpx.Response]:
    # A hostile or chatty server that echoes the secrets back in its description.
    text = f"bad {REFRESH_0} for {CLIENT_SECRET}"
    return lambda n: httpx.Response(status, json={"error": code, "error_description": text})


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        ("invalid_grant", 400, "authorised again"),
        ("invalid_client", 401, "client_id or client_secret"),
        ("invalid_grant", 200, "authorised again"),
    ],
)
async def test_oauth_server_error_is_auth_error_without_secrets(
    code: str, status: int, hint: str
) -> None:
    seen: list[OAuthTokens] = []
    server = OAuthServer(_echoing_error(code, status))
    oauth = _built_in(on_refresh=seen.append)
    async with server.http() as http:
        with pytest.raises(AuthError) as info:
            await oauth.refresh(ACCESS_0, http)
    exc = info.value
    assert exc.code == code
    assert exc.status_code == status
    assert hint in str(exc)
    for text in (str(exc), repr(exc), exc.description):
        for secret in (ACCESS_0, REFRESH_0, CLIENT_SECRET):
            assert secret not in text
    assert seen == []
    assert await oauth.current_token() == ACCESS_0  # nothing was replaced


async def test_non_json_reply_is_auth_error() -> None:
    server = OAuthServer(lambda n: httpx.Response(502, text="<html>Bad gateway</html>"))
    async with server.http() as http:
        with pytest.raises(AuthError, match="not JSON") as info:
            await _built_in().refresh(ACCESS_0, http)
    assert info.value.status_code == 502


async def test_reply_without_access_token_is_auth_error() -> None:
    server = OAuthServer(lambda n: httpx.Response(200, content=json.dumps({"status": "L"})))
    async with server.http() as http:
        with pytest.raises(AuthError, match="no access token"):
            await _built_in().refresh(ACCESS_0, http)


async def test_unreachable_oauth_server_is_transport_error_without_secrets() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        with pytest.raises(TransportError) as info:
            await _built_in().refresh(ACCESS_0, http)
    assert info.value.__cause__ is None
    for secret in (REFRESH_0, CLIENT_SECRET):
        assert secret not in str(info.value)


# --- error classification and webhooks ----------------------------------------------------------


def test_only_expired_token_is_curable() -> None:
    assert OAuth.is_expired_error(AuthError(401, "expired_token", "The access token..."))
    assert OAuth.is_expired_error(AuthError(401, "EXPIRED_TOKEN"))
    assert not OAuth.is_expired_error(AuthError(401, "invalid_token"))
    assert not OAuth.is_expired_error(AuthError(401, "NO_AUTH_FOUND"))
    assert not OAuth.is_expired_error(ValueError("expired_token"))


async def test_webhook_has_no_token_and_cannot_refresh(http: httpx.AsyncClient) -> None:
    hook = Webhook.parse(PORTAL + "1/webhookcode/")
    assert await hook.current_token() is None
    with pytest.raises(AuthError) as info:
        await hook.refresh("anything", http)
    assert info.value.code == REFRESH_UNAVAILABLE
    assert "webhookcode" not in str(info.value)


# --- against the emulator's OAuth server --------------------------------------------------------


async def test_refresh_chain_against_the_emulator() -> None:
    emu = make_emulator()
    cfg = emu.config
    first = OAuthTokens.from_reply(emu.issue_oauth_token(), now=0.0)
    stored: list[OAuthTokens] = []
    oauth = OAuth(
        emu.oauth_url(),
        tokens=first,
        client_id=cfg.oauth_client_id,
        client_secret=cfg.oauth_client_secret,
        oauth_url="http://testserver/oauth/token/",
        on_refresh=stored.append,
    )
    async with api(emu) as client:
        http = client.client

        async def who_am_i() -> httpx.Response:
            token = await oauth.current_token()
            return await http.post(oauth.endpoint("user.current"), json={"auth": token})

        assert (await who_am_i()).status_code == 200
        for _ in range(2):  # the second refresh works only with the rotated refresh token
            emu.expire_access_tokens()
            expired = await who_am_i()
            assert expired.status_code == 401
            assert OAuth.is_expired_error(AuthError(401, expired.json()["error"]))
            await oauth.refresh(await oauth.current_token(), http)
            assert (await who_am_i()).status_code == 200
    assert len(stored) == 2
    refresh_tokens = {first.refresh_token, *(t.refresh_token for t in stored)}
    assert len(refresh_tokens) == 3
