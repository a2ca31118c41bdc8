"""OAuth credentials for Bitrix24 apps: the access token to send and its single-flight refresh.

This module's one concern is keeping a valid OAuth access token (§7 of
``bitrix-server-semantics.md``). Requests go to ``https://<portal>/rest/<method>`` with the token
as the ``auth`` parameter. The token is renewed only when the server answers 401
``expired_token``, never on a timer: Bitrix24 warns against that, and each refresh kills the
refresh token it used, so concurrent refreshes would break the chain. The built-in refresh is
the only I/O here (one ``GET`` to the OAuth server, on the caller's ``httpx.AsyncClient``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import httpx

from ._auth import REFRESH_UNAVAILABLE, _plain_http, redact, split_base_url
from ._errors import AuthError, TransportError
from ._loops import LoopLock
from ._response import as_float

__all__ = ["OAuth", "OAuthTokens", "OnRefresh", "TokenProvider"]

#: A user-supplied async source of tokens. It gets the access token that stopped working (None
#: for the first token) and returns a fresh access token, or a whole `OAuthTokens`.
TokenProvider: TypeAlias = Callable[[str | None], Awaitable["str | OAuthTokens"]]

#: Called (sync or async) with the new tokens after each refresh, so the caller can store them.
OnRefresh: TypeAlias = Callable[["OAuthTokens"], Awaitable[None] | None]

#: The documented public OAuth server of Bitrix24 (§7).
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"

#: What to tell the user for the OAuth server's own error codes (§5, last table).
_OAUTH_HINTS = {
    "invalid_grant": "the refresh token is invalid, expired or already used; "
    "the app must be authorised again",
    "invalid_client": "client_id or client_secret is wrong, or the app is not installed",
    "invalid_scope": "the requested scope is larger than the app allows",
    "payment_required": "the portal's trial or paid period has expired",
}


def _mask(token: str | None) -> str:
    """A token for reprs: its last 4 characters if it is long enough to keep the rest hidden."""
    if token is None:
        return "None"
    return f"'…{token[-4:]}'" if len(token) >= 16 else "'***'"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True, repr=False)
class OAuthTokens:
    """An OAuth access token with what the OAuth server said about it.

    Attributes:
        access_token: The token sent as ``auth``.
        refresh_token: The token that buys the next access token; None if the caller refreshes
            by other means (a token provider).
        expires_at: Unix time the access token expires, if known. Informational only: the token
            is renewed when the server says ``expired_token``, not by this clock.
        client_endpoint: The portal's REST base URL from the refresh reply.
        member_id: The portal's stable identifier.
        scope: The scopes granted, as the server wrote them (comma-separated).
    """

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    client_endpoint: str | None = None
    member_id: str | None = None
    scope: str | None = None

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], now: float) -> OAuthTokens:
        """Parse the OAuth server's JSON reply to a token request.

        Args:
            reply: The decoded JSON (``access_token``, ``refresh_token``, ``expires_in``,
                ``expires``, ``client_endpoint``, ``member_id``, ``scope``, ...).
            now: The Unix time the reply arrived; ``expires_in`` counts from it.

        Returns:
            The tokens. ``expires_in`` is preferred over the absolute ``expires`` because it
            does not depend on the server's clock agreeing with ours.

        Raises:
            ValueError: If the reply has no access token (the message names no value).
        """
        access = _text(reply.get("access_token"))
        if access is None:
            raise ValueError("the OAuth reply has no access_token")
        expires_in = as_float(reply.get("expires_in"))
        expires_at = now + expires_in if expires_in is not None else as_float(reply.get("expires"))
        return cls(
            access_token=access,
            refresh_token=_text(reply.get("refresh_token")),
            expires_at=expires_at,
            client_endpoint=_text(reply.get("client_endpoint")),
            member_id=_text(reply.get("member_id")),
            scope=_text(reply.get("scope")),
        )

    def __repr__(self) -> str:
        return (
            f"OAuthTokens(access_token={_mask(self.access_token)}, "
            f"refresh_token={_mask(self.refresh_token)}, expires_at={self.expires_at!r}, "
            f"client_endpoint={self.client_endpoint!r}, member_id={self.member_id!r}, "
            f"scope={self.scope!r})"
        )


class OAuth:
    """OAuth credentials for a portal, refreshed once per ``expired_token``, never on a timer.

    Give an access token (``tokens=`` or ``access_token=``) and one way to renew it: a
    ``token_provider`` of your own, or ``client_id``, ``client_secret`` and ``refresh_token``
    for the built-in refresh against ``oauth_url``. With neither, the token is used until it
    expires and the refresh then raises `AuthError`. Without an access token, a
    ``token_provider`` or the built-in refresh supplies the first one.

    After each refresh ``on_refresh`` gets the new `OAuthTokens`. Store them: the server
    invalidates the refresh token it was given, so only the new one works next time. If
    ``on_refresh`` raises, its exception propagates, but the new tokens are already in use.

    Args:
        portal_url: The portal's REST base, ``https://<portal>/rest/`` (the trailing ``/`` may
            be left out).
        tokens: Tokens from an earlier run (what ``on_refresh`` got).
        access_token: The access token, if ``tokens`` is not given.
        refresh_token: The refresh token, if ``tokens`` is not given.
        client_id: The app's client id, for the built-in refresh.
        client_secret: The app's client secret, for the built-in refresh.
        token_provider: An async callable returning a fresh token, instead of the built-in
            refresh.
        on_refresh: Called (sync or async) with the new tokens after each refresh.
        oauth_url: The OAuth server's token endpoint.
        clock: Wall-clock Unix time, for ``expires_at``.
        allow_insecure_http: Let `portal_url` and `oauth_url` be plain ``http://`` to a host
            other than this machine (tokens and the client secret then travel unencrypted).
            Off by default: `BitrixClient` refuses such URLs.

    Raises:
        ValueError: If a URL is malformed or the arguments do not make one consistent setup.
            No message contains a token or the client secret.
    """

    __slots__ = (
        "_allow_insecure_http",
        "_client_id",
        "_client_secret",
        "_clock",
        "_lock",
        "_oauth_url",
        "_on_refresh",
        "_portal_url",
        "_provider",
        "_refresh_token",
        "_seen",
        "_tokens",
    )

    def __init__(
        self,
        portal_url: str,
        *,
        tokens: OAuthTokens | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_provider: TokenProvider | None = None,
        on_refresh: OnRefresh | None = None,
        oauth_url: str = DEFAULT_OAUTH_URL,
        clock: Callable[[], float] = time.time,
        allow_insecure_http: bool = False,
    ) -> None:
        self._portal_url = _check_portal_url(portal_url)
        _check_oauth_url(oauth_url)
        self._allow_insecure_http = allow_insecure_http
        if tokens is not None:
            if access_token is not None or refresh_token is not None:
                raise ValueError("pass either tokens or access_token/refresh_token, not both")
            if not isinstance(tokens, OAuthTokens):
                raise TypeError("tokens must be an OAuthTokens")
            access_token, refresh_token = tokens.access_token, tokens.refresh_token
        elif access_token is not None:
            tokens = OAuthTokens(access_token, refresh_token)
        built_in = client_id is not None or client_secret is not None
        if built_in and (client_id is None or client_secret is None):
            raise ValueError("the built-in refresh needs both client_id and client_secret")
        if built_in and token_provider is not None:
            raise ValueError("pass either token_provider or client_id/client_secret, not both")
        if built_in and not refresh_token:
            raise ValueError("the built-in refresh needs a refresh_token")
        if refresh_token and not built_in and token_provider is None:
            raise ValueError("a refresh_token is of no use without client_id and client_secret")
        if not access_token and not built_in and token_provider is None:
            raise ValueError("give an access token, a token_provider, or client credentials")
        # None until the first access token: with only a refresh token, the first request
        # fetches one (the only refresh that does not follow an expired_token).
        self._tokens = tokens if access_token else None
        self._refresh_token = refresh_token or None
        self._client_id = client_id
        self._client_secret = client_secret
        self._provider = token_provider
        self._on_refresh = on_refresh
        self._oauth_url = oauth_url
        self._clock = clock
        # Every token ever held, so that text from an earlier request is still redacted.
        self._seen: dict[str, None] = {}
        for secret in (access_token, refresh_token):
            if secret:
                self._seen[secret] = None
        self._lock = LoopLock()

    # --- what the client calls ----------------------------------------------------------------

    def endpoint(self, method: str) -> str:
        """The URL to POST `method` to (the token goes in the ``auth`` parameter)."""
        return self._portal_url + method

    @property
    def tokens(self) -> OAuthTokens | None:
        """The tokens in use now, or None before the first one is obtained."""
        return self._tokens

    async def current_token(self, http: httpx.AsyncClient | None = None) -> str:
        """The access token to send now, obtaining the first one if there is none yet.

        Args:
            http: The client for the built-in refresh, if a first token must be fetched; a
                short-lived one is made if it is not given.

        Raises:
            AuthError: If the first token cannot be obtained.
            TransportError: If the OAuth server cannot be reached.
        """
        if self._tokens is not None:
            return self._tokens.access_token
        async with self._lock.get():
            if self._tokens is not None:
                return self._tokens.access_token  # another task fetched it while we waited
            if http is not None or self._provider is not None:
                return await self._renew(None, http)
            async with httpx.AsyncClient() as own:
                return await self._renew(None, own)

    async def refresh(self, stale: str, http: httpx.AsyncClient) -> str:
        """Replace the token `stale` after a 401 ``expired_token``; return the token to use.

        Single-flight: concurrent callers with the same stale token wait for one refresh. A
        caller whose token was already replaced gets the current one at once.

        Args:
            stale: The access token the server rejected.
            http: The client to reach the OAuth server with (built-in refresh only).

        Raises:
            AuthError: If the token cannot be refreshed (code `REFRESH_UNAVAILABLE`), or the
                OAuth server refused (its code, e.g. ``invalid_grant``). Never contains a secret.
            TransportError: If the OAuth server cannot be reached.
        """
        async with self._lock.get():
            if self._tokens is not None and self._tokens.access_token != stale:
                return self._tokens.access_token
            return await self._renew(stale or None, http)

    @staticmethod
    def is_expired_error(exc: BaseException) -> bool:
        """True if `exc` is the 401 ``expired_token`` that a refresh cures; other 401s are fatal."""
        return isinstance(exc, AuthError) and exc.code.lower() == "expired_token"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every token this object has held, and the client secret."""
        found = tuple(self._seen)
        return (*found, self._client_secret) if self._client_secret else found

    @property
    def plain_http_hosts(self) -> tuple[tuple[str, str], ...]:
        """``(what, host)`` of each URL that would go unencrypted to another machine."""
        if self._allow_insecure_http:
            return ()
        return (
            *_plain_http("the OAuth portal URL", self._portal_url),
            *_plain_http("oauth_url", self._oauth_url),
        )

    @property
    def redacted(self) -> str:
        """The portal URL (it holds no secret: the token travels as a parameter)."""
        return self._portal_url

    def __repr__(self) -> str:
        if self._provider is not None:
            renew = "token_provider"
        elif self._client_id is not None:
            renew = "built-in"
        else:
            renew = "none"
        token = self._tokens.access_token if self._tokens is not None else None
        return f"OAuth({self._portal_url!r}, access_token={_mask(token)}, refresh={renew!r})"

    # --- internals ----------------------------------------------------------------------------

    async def _renew(self, stale: str | None, http: httpx.AsyncClient | None) -> str:
        """Get new tokens (caller holds the lock), install them, then tell ``on_refresh``."""
        if self._provider is not None:
            new = await self._from_provider(self._provider, stale)
        elif self._client_id and self._client_secret and self._refresh_token and http is not None:
            new = await self._from_server(
                http, self._client_id, self._client_secret, self._refresh_token
            )
        else:
            raise AuthError(
                401,
                REFRESH_UNAVAILABLE,
                "the access token expired and cannot be refreshed: pass token_provider, or "
                "client_id, client_secret and refresh_token",
            )
        self._tokens = new
        if new.refresh_token is not None:
            self._refresh_token = new.refresh_token
        for secret in (new.access_token, new.refresh_token):
            if secret:
                self._seen[secret] = None
        if self._on_refresh is not None:
            result = self._on_refresh(new)
            if inspect.isawaitable(result):
                await result
        return new.access_token

    @staticmethod
    async def _from_provider(provider: TokenProvider, stale: str | None) -> OAuthTokens:
        got = await provider(stale)
        if isinstance(got, str):
            new = OAuthTokens(got)
        elif isinstance(got, OAuthTokens):
            new = got
        else:
            raise TypeError(f"token_provider returned {type(got).__name__}, not str/OAuthTokens")
        if not new.access_token:
            raise AuthError(401, "invalid_token", "token_provider returned an empty token")
        return new

    async def _from_server(
        self, http: httpx.AsyncClient, client_id: str, client_secret: str, refresh_token: str
    ) -> OAuthTokens:
        """One ``GET`` of the documented refresh request (§7)."""
        params = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        try:
            response = await http.get(self._oauth_url, params=params)
        except httpx.HTTPError as exc:
            # Not chained: the httpx error holds the request URL, whose query has the secrets.
            reason = redact(f"{type(exc).__name__}: {exc}", self.secrets)
            raise TransportError(f"OAuth token refresh failed: {reason}") from None
        try:
            reply = response.json()
        except ValueError:
            reply = None
        status = response.status_code
        if not isinstance(reply, Mapping):
            raise AuthError(status, "", "OAuth token refresh failed: the reply is not JSON")
        if status != 200 or "error" in reply or not _text(reply.get("access_token")):
            code = redact(str(reply.get("error") or ""), self.secrets)
            said = redact(str(reply.get("error_description") or ""), self.secrets)
            hint = _OAUTH_HINTS.get(code.lower(), "")
            text = "; ".join(part for part in (said, hint) if part) or "no access token in reply"
            raise AuthError(status, code, f"OAuth token refresh failed: {text}")
        new = OAuthTokens.from_reply(reply, self._clock())
        if new.refresh_token is None:
            # The server is documented to send a new refresh token; if it did not, the old one
            # is the only one there is.
            new = replace(new, refresh_token=refresh_token)
        return new


def _check_portal_url(url: str) -> str:
    """Return ``https://<portal>/rest/`` with the trailing slash; ValueError naming no value."""
    parts = split_base_url(url, "the portal URL")
    if not (parts.path.endswith("/rest") or parts.path.endswith("/rest/")):
        raise ValueError(
            "the OAuth portal URL must look like https://<portal>/rest/ "
            "(a webhook URL goes to Webhook, not OAuth)"
        )
    return url if url.endswith("/") else url + "/"


def _check_oauth_url(url: str) -> None:
    """A bad scheme, port or host, or a control character: ValueError naming no value."""
    if not isinstance(url, str):
        raise TypeError("oauth_url must be a str")
    split_base_url(url.split("?", 1)[0], "oauth_url")
