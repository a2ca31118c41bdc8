"""Where requests go and how they are authorised, with secrets kept out of every text.

This module performs no I/O. An inbound webhook carries its secret in the URL
(``https://portal.bitrix24.com/rest/<user>/<code>/``); `Webhook` keeps the URL for sending and
offers a redacted form for reprs, logs and error messages. `Credentials` is the small interface
the client uses for both webhooks and OAuth (``bitrix_batch._oauth.OAuth``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import SplitResult, urlsplit

from ._errors import AuthError

if TYPE_CHECKING:
    import httpx

__all__ = ["REFRESH_UNAVAILABLE", "Credentials", "Webhook", "redact"]

#: The `AuthError.code` raised when a credential cannot be refreshed (a webhook, or OAuth with
#: neither a provider nor client credentials). Deliberately not ``expired_token``, so that a
#: client which refreshes on ``expired_token`` can never loop on it.
REFRESH_UNAVAILABLE = "REFRESH_UNAVAILABLE"


@runtime_checkable
class Credentials(Protocol):
    """What the client needs from a credential: where to send, what token, how to renew."""

    def endpoint(self, method: str) -> str:
        """The URL to POST `method` to."""
        ...

    async def current_token(self, http: httpx.AsyncClient | None = None) -> str | None:
        """The ``auth`` parameter to send now, or None if the URL itself carries the secret."""
        ...

    async def refresh(self, stale: str, http: httpx.AsyncClient) -> str:
        """Replace the expired token `stale` and return the one to use (AuthError if not)."""
        ...

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret that must be removed from any text shown to people."""
        ...

    @property
    def redacted(self) -> str:
        """A description safe for logs and reprs."""
        ...


_WEBHOOK_PATH = re.compile(r"^(?P<prefix>.*/rest/)(?P<user>[^/]+)/(?P<code>[^/]+)/?$")


@dataclass(frozen=True, slots=True)
class Webhook:
    """An inbound webhook base URL such as ``https://portal.bitrix24.com/rest/1/<code>/``."""

    url: str = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> Webhook:
        """Check a webhook URL; raise ValueError (without echoing the secret) if it is wrong."""
        parts = split_base_url(url, "the webhook URL")
        if _WEBHOOK_PATH.match(parts.path) is None:
            raise ValueError(
                "the webhook URL must look like https://<portal>/rest/<user id>/<code>/"
            )
        return cls(url if url.endswith("/") else url + "/")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The parts of the URL that must never be shown."""
        m = _WEBHOOK_PATH.match(urlsplit(self.url).path)
        return (m.group("code"),) if m else ()

    def endpoint(self, method: str) -> str:
        """The URL to POST `method` to."""
        return self.url + method

    @property
    def redacted(self) -> str:
        """The URL with the webhook code replaced by ``***``."""
        return redact(self.url, self.secrets)

    async def current_token(self, http: httpx.AsyncClient | None = None) -> str | None:
        """Always None: a webhook sends its secret in the URL, not as an ``auth`` parameter."""
        return None

    async def refresh(self, stale: str, http: httpx.AsyncClient) -> str:
        """Always raise: a webhook is permanent and has nothing to refresh.

        Raises:
            AuthError: Always, with code `REFRESH_UNAVAILABLE`.
        """
        raise AuthError(
            401,
            REFRESH_UNAVAILABLE,
            "a webhook has no token to refresh; check that the webhook still exists",
        )

    def __repr__(self) -> str:
        return f"Webhook({self.redacted!r})"


def split_base_url(url: str, what: str) -> SplitResult:
    """Split an http(s) base URL with no query or fragment; ValueError naming no value."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must start with https:// (or http:// for a local emulator)")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query or a fragment")
    return parts


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in `text` with ``***`` (the longest first, so that a secret
    containing another is masked whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
