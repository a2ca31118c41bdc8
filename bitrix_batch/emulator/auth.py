"""Credentials: inbound webhooks, OAuth authorisation codes, access/refresh tokens with expiry
and rotation.

A refresh issues a new access token and a new refresh token; the refresh token used stops
working, so concurrent refreshes break the chain just as on the real server. Whether the
access token issued with it dies too (old docs, D17) is ``oauth_refresh_revokes_access``
(off: the official SDK's live suite relies on it living on).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import EmulatorConfig
from .engine import Caller
from .php import PhpKey, php_str

__all__ = ["Auth", "OAuthError", "Webhook"]


@dataclass(frozen=True)
class Webhook:
    """An inbound webhook: ``/rest/<user_id>/<code>/``."""

    user_id: int
    code: str
    scopes: frozenset[str] | None = None


@dataclass
class _Access:
    user_id: int
    expires_at: float
    scopes: frozenset[str] | None
    refresh_token: str


@dataclass
class _Code:
    """A one-time authorisation code of the ``authorization_code`` grant."""

    user_id: int
    expires_at: float
    scopes: frozenset[str] | None
    client_id: str


@dataclass
class _Refresh:
    user_id: int
    expires_at: float
    scopes: frozenset[str] | None
    access_token: str


class OAuthError(Exception):
    """An error of the ``/oauth/token/`` endpoint (its own format and statuses)."""

    def __init__(self, code: str, description: str, status: int) -> None:
        super().__init__(code)
        self.code = code
        self.description = description
        self.status = status


class Auth:
    """Webhooks and OAuth tokens of one portal."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.webhooks: dict[str, Webhook] = {}
        self.access: dict[str, _Access] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.codes: dict[str, _Code] = {}
        #: Access tokens revoked by a refresh; they answer ``revoked_access_error``.
        self.revoked: set[str] = set()
        self.revoked_access_error: str = "expired_token"
        self._rng = random.Random(f"tokens:{config.seed}")
        self.add_webhook(config.webhook_user_id, config.webhook_code, config.webhook_scopes)

    def add_webhook(self, user_id: int, code: str, scopes: frozenset[str] | None = None) -> Webhook:
        """Register (or replace) a webhook."""
        hook = Webhook(user_id, code, scopes)
        self.webhooks[code] = hook
        return hook

    def remove_webhook(self, code: str) -> None:
        """Delete a webhook: its calls then fail with INVALID_CREDENTIALS."""
        self.webhooks.pop(code, None)

    def webhook_caller(self, user: str, code: str) -> Caller:
        """The caller behind ``/rest/<user>/<code>/``, or 401 INVALID_CREDENTIALS."""
        hook = self.webhooks.get(code)
        if hook is None or str(hook.user_id) != user:
            raise errors.invalid_credentials()
        return Caller(hook.user_id, "webhook", f"apauth:{hook.user_id}:{code}", hook.scopes)

    def oauth_caller(self, token: str | None) -> Caller:
        """The caller behind an access token, or a 401."""
        if not token:
            raise errors.no_auth_found()
        info = self.access.get(token)
        if info is None:
            if token in self.revoked:
                if self.revoked_access_error == "expired_token":
                    raise errors.expired_token()
                raise errors.invalid_token()
            raise errors.invalid_token()
        if self.clock() >= info.expires_at:
            raise errors.expired_token()
        return Caller(info.user_id, "oauth", f"oauth:{self.config.oauth_client_id}", info.scopes)

    @property
    def member_id(self) -> str:
        """The portal's stable ``member_id``."""
        return f"{random.Random(self.config.domain).getrandbits(128):032x}"

    def _token(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def issue(
        self,
        user_id: int = 1,
        scopes: frozenset[str] | None = None,
        client_endpoint: str = "",
    ) -> dict[str, Any]:
        """Issue a fresh access/refresh pair (as after installing the app)."""
        now = self.clock()
        scopes = scopes if scopes is not None else self.config.oauth_scopes
        access, refresh = self._token(), self._token()
        self.access[access] = _Access(user_id, now + self.config.access_token_ttl, scopes, refresh)
        self.refresh_tokens[refresh] = _Refresh(
            user_id, now + self.config.refresh_token_ttl, scopes, access
        )
        return {
            "access_token": access,
            "expires": int(now + self.config.access_token_ttl),
            "expires_in": int(self.config.access_token_ttl),
            "scope": ",".join(sorted(scopes)) if scopes is not None else "app",
            "domain": "oauth.bitrix.info",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "status": "L",
            "client_endpoint": client_endpoint or f"https://{self.config.domain}/rest/",
            "member_id": self.member_id,
            "user_id": user_id,
            "refresh_token": refresh,
        }

    def expire_all(self) -> None:
        """Make every current access token expired (refresh tokens stay valid)."""
        now = self.clock()
        for info in self.access.values():
            info.expires_at = min(info.expires_at, now)

    def issue_code(self, user_id: int = 1, scopes: frozenset[str] | None = None) -> str:
        """A one-time authorisation code for the configured application (lives 30 s, D11)."""
        code = self._token()
        scopes = scopes if scopes is not None else self.config.oauth_scopes
        self.codes[code] = _Code(
            user_id, self.clock() + self.config.oauth_code_ttl, scopes, self.config.oauth_client_id
        )
        return code

    def token(self, params: dict[PhpKey, Any], client_endpoint: str) -> dict[str, Any]:
        """``/oauth/token/``: the ``authorization_code`` and ``refresh_token`` grants."""
        grant = php_str(params.get("grant_type", ""))
        if grant not in ("authorization_code", "refresh_token"):
            raise OAuthError("invalid_request", "Unsupported grant_type", 400)
        # As the official SDK's live suite sees oauth.bitrix.info: an unknown application is
        # an HTTP 200 ``wrong_client``, a wrong secret a 400 ``invalid_client``.
        if php_str(params.get("client_id", "")) != self.config.oauth_client_id:
            raise OAuthError("wrong_client", "", 200)
        if php_str(params.get("client_secret", "")) != self.config.oauth_client_secret:
            raise OAuthError("invalid_client", "Invalid client credentials", 400)
        if grant == "authorization_code":
            return self._exchange_code(params, client_endpoint)
        return self._refresh(params, client_endpoint)

    def _exchange_code(self, params: dict[PhpKey, Any], client_endpoint: str) -> dict[str, Any]:
        # One-time: the code is gone whether or not it was still valid.
        info = self.codes.pop(php_str(params.get("code", "")), None)
        if (
            info is None
            or self.clock() >= info.expires_at
            or info.client_id != php_str(params.get("client_id", ""))
        ):
            raise OAuthError("invalid_grant", "Invalid authorization code", 400)
        return self.issue(info.user_id, info.scopes, client_endpoint)

    def _refresh(self, params: dict[PhpKey, Any], client_endpoint: str) -> dict[str, Any]:
        """The ``refresh_token`` grant (client already checked by :meth:`token`)."""
        token = php_str(params.get("refresh_token", ""))
        if not token:
            raise OAuthError("invalid_request", 'No "refresh_token" parameter found', 400)
        info = self.refresh_tokens.pop(token, None)
        if info is None or self.clock() >= info.expires_at:
            raise OAuthError("invalid_grant", "Invalid refresh token", 400)
        # The refresh token used is spent (popped above); its access token too if configured.
        if self.config.oauth_refresh_revokes_access and (
            self.access.pop(info.access_token, None) is not None
        ):
            self.revoked.add(info.access_token)
        return self.issue(info.user_id, info.scopes, client_endpoint)
