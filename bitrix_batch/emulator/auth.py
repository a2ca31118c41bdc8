"""Credentials: inbound webhooks and OAuth access/refresh tokens with expiry and rotation.

A refresh issues a new access token and a new refresh token; the refresh token used and the
access token issued with it stop working (old docs, D17), so concurrent refreshes break the
chain just as on the real server.
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
            "member_id": f"{random.Random(self.config.domain).getrandbits(128):032x}",
            "user_id": user_id,
            "refresh_token": refresh,
        }

    def expire_all(self) -> None:
        """Make every current access token expired (refresh tokens stay valid)."""
        now = self.clock()
        for info in self.access.values():
            info.expires_at = min(info.expires_at, now)

    def refresh(self, params: dict[PhpKey, Any], client_endpoint: str) -> dict[str, Any]:
        """``/oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token``."""
        grant = php_str(params.get("grant_type", ""))
        if grant != "refresh_token":
            raise OAuthError("invalid_request", "Unsupported grant_type", 400)
        if (
            php_str(params.get("client_id", "")) != self.config.oauth_client_id
            or php_str(params.get("client_secret", "")) != self.config.oauth_client_secret
        ):
            raise OAuthError("invalid_client", "Invalid client credentials", 401)
        token = php_str(params.get("refresh_token", ""))
        info = self.refresh_tokens.pop(token, None)
        if info is None or self.clock() >= info.expires_at:
            raise OAuthError("invalid_grant", "Invalid refresh token", 400)
        # The old pair dies: the refresh token (popped above) and its access token.
        if self.access.pop(info.access_token, None) is not None:
            self.revoked.add(info.access_token)
        return self.issue(info.user_id, info.scopes, client_endpoint)
