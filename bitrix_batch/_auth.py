"""Where requests go and how they are authorised, with secrets kept out of every text.

This module performs no I/O. An inbound webhook carries its secret in the URL
(``https://portal.bitrix24.com/rest/<user>/<code>/``); `Webhook` keeps the URL for sending and
offers a redacted form for reprs, logs and error messages. `Credentials` is the small interface
the client uses for both webhooks and OAuth (``bitrix_batch._oauth.OAuth``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, urlsplit

from ._errors import AuthError
from ._logs import mask

if TYPE_CHECKING:
    import httpx

__all__ = [
    "REFRESH_UNAVAILABLE",
    "Credentials",
    "Webhook",
    "check_plain_http",
    "is_loopback_host",
    "redact",
]

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
    #: Send over plain ``http://`` to a host that is not this machine (the code then travels
    #: unencrypted). Off by default: `BitrixClient` refuses such a URL.
    allow_insecure_http: bool = field(default=False, repr=False)

    @classmethod
    def parse(cls, url: str, *, allow_insecure_http: bool = False) -> Webhook:
        """Check a webhook URL; raise ValueError (without echoing the secret) if it is wrong.

        A bad port, a control character, a missing host, a query or a fragment, or a path
        that is not ``/rest/<user id>/<code>/`` is refused here; plain ``http://`` to a host
        other than this machine is refused by `BitrixClient` unless `allow_insecure_http`.
        """
        parts = split_base_url(url, "the webhook URL")
        if _WEBHOOK_PATH.match(parts.path) is None:
            raise ValueError(
                "the webhook URL must look like https://<portal>/rest/<user id>/<code>/"
            )
        return cls(url if url.endswith("/") else url + "/", allow_insecure_http)

    @property
    def plain_http_hosts(self) -> tuple[tuple[str, str], ...]:
        """``(what, host)`` of each URL that would go unencrypted to another machine."""
        if self.allow_insecure_http:
            return ()
        return _plain_http("the webhook URL", self.url)

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


_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def split_base_url(url: str, what: str) -> SplitResult:
    """Split an http(s) base URL with no query or fragment; ValueError naming no value.

    The messages name what is wrong (a bad port, a control character, no host) and never
    echo the URL, which may hold a secret.
    """
    if not isinstance(url, str):
        raise TypeError(f"{what} must be a str")
    if _CONTROL.search(url):
        raise ValueError(f"{what} must not contain a control character or a space")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{what} must start with https:// (or http:// for a local emulator)")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query or a fragment")
    if not parts.hostname:
        raise ValueError(f"{what} has no host (https://<portal>/...)")
    try:
        port = parts.port  # ValueError: not a number, or out of range
    except ValueError as exc:
        # The exception names only the port text, never the path.
        raise ValueError(f"{exc} ({what} has a bad port)") from None
    if port == 0:
        raise ValueError(f"{what} has a bad port: 0 cannot be connected to")
    return parts


#: Host names that are this machine (RFC 6761 ``localhost``).
_LOCAL_NAMES = ("localhost",)
_LOCAL_SUFFIXES = (".localhost",)


def is_loopback_host(host: str) -> bool:
    """Whether plain http to `host` stays on this machine."""
    host = host.lower().rstrip(".")
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain_http(what: str, url: str) -> tuple[tuple[str, str], ...]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme.lower() == "http" and not is_loopback_host(host):
        return ((what, host),)
    return ()


def check_plain_http(creds: Any, *, in_process: bool, allow: bool = False) -> None:
    """Refuse credentials whose URLs would send a secret unencrypted to another machine.

    Args:
        creds: A `Credentials`; one without ``plain_http_hosts`` (the caller's own kind) is
            not checked.
        in_process: The client's transport is the caller's own (ASGI, mock, a wrapper): no
            network of ours is involved, so nothing is checked.
        allow: The caller opted in (``BitrixClient(..., allow_insecure_http=True)``).

    Raises:
        ValueError: Naming the URL's role and its host, never the secret.
    """
    if in_process or allow:
        return
    hosts: Iterable[tuple[str, str]] = getattr(creds, "plain_http_hosts", ())
    for what, host in hosts:
        raise ValueError(
            f"{what} uses plain http:// to {host}, which would send the secret unencrypted:"
            " use https://, or pass allow_insecure_http=True if you mean it"
        )


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text` with ``***``, in every encoding it may take (raw,
    percent-encoded, form-encoded, JSON-escaped; see `bitrix_batch._logs.mask`), the longest
    first, so that a secret containing another is masked whole."""
    return mask(text, secrets)
