"""Redis key names for one portal's shared limits, never holding a secret in clear.

The request bucket belongs to a portal and the source IP its requests come from (§4.1 of the
server notes): workers behind one address share it whatever credential they use. The
operating-time budget belongs to a portal, a credential (a webhook, or an application's
client id) and a method (§4.2). So a `PortalKey` names the portal, a digest of the credential
and, optionally, the egress address; the webhook code itself never reaches Redis.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bitrix_batch._auth import Webhook

__all__ = ["PortalKey"]

_WEBHOOK_PATH = re.compile(r"/rest/(?P<user>[^/]+)/(?P<code>[^/]+)/?$")
_SAFE = re.compile(r"[^A-Za-z0-9.:_-]")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _digest(text: str) -> str:
    """A short, stable digest: enough to tell credentials apart, useless to recover one."""
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _portal_of(url: str) -> str:
    """The portal a URL names: IDNA host, a port only if not the scheme's, a path prefix."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("the portal URL has no host")
    # Two international names are two portals: keep them apart as their xn--... forms (a
    # name IDNA does not take stays as it is, and _safe() digests it).
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    port = parts.port
    if port is not None and _DEFAULT_PORTS.get(parts.scheme.lower()) != port:
        host = f"{host}:{port}"
    # A portal installed under a path (https://host/crm/rest/...) is not the one at the root.
    path = parts.path.rstrip("/")
    prefix = (path + "/").split("/rest/", 1)[0] if "/rest/" in path + "/" else path
    return host + prefix


def _safe(text: str) -> str:
    """`text` as a key part: as is if it is made of safe characters, else with a digest.

    Replacing the unsafe characters alone would make different names one (``a/b`` and
    ``a_b``); the digest of the original keeps them apart.
    """
    if not _SAFE.search(text):
        return text
    return f"{_SAFE.sub('_', text)}~{_digest(text)[:12]}"


@dataclass(frozen=True, slots=True)
class PortalKey:
    """Whose limits these are: a portal, a credential digest, and the egress address.

    Attributes:
        portal: The portal's host, lowercased and IDNA-encoded, with its port unless it is
            the scheme's default and its path prefix if it is installed under one.
        credential: A digest of the webhook (user and code) or of the application's client
            id; never the secret itself.
        egress: A name for the source address the workers send from; workers behind
            different addresses have separate buckets on the server. Empty: one address.
        prefix: The first part of every key, to keep several deployments apart.
    """

    portal: str
    credential: str
    egress: str = ""
    prefix: str = "bitrix_batch"

    @classmethod
    def for_webhook(cls, url: str, *, egress: str = "", prefix: str = "bitrix_batch") -> PortalKey:
        """The key of an inbound webhook URL ``https://<portal>/rest/<user>/<code>/``."""
        match = _WEBHOOK_PATH.search(urlsplit(url).path)
        if match is None:
            raise ValueError("the webhook URL must look like https://<portal>/rest/<user>/<code>/")
        credential = _digest(f"webhook:{match['user']}:{match['code']}")
        return cls(_portal_of(url), credential, egress, prefix)

    @classmethod
    def for_application(
        cls, portal_url: str, client_id: str, *, egress: str = "", prefix: str = "bitrix_batch"
    ) -> PortalKey:
        """The key of an OAuth application (by its client id) on the portal of `portal_url`."""
        if not client_id:
            raise ValueError("an application's key needs its client id")
        return cls(_portal_of(portal_url), _digest(f"oauth:{client_id}"), egress, prefix)

    @classmethod
    def of(
        cls,
        credentials: Any,
        *,
        application: str | None = None,
        egress: str = "",
        prefix: str = "bitrix_batch",
    ) -> PortalKey:
        """The key of what a `BitrixClient` is given: a webhook URL, `Webhook` or `OAuth`.

        Args:
            credentials: A webhook URL or `Webhook`, or an `OAuth` credential.
            application: The application's client id; needed for an `OAuth` that renews its
                tokens through a ``token_provider`` (it then does not know its client id).
            egress: See the attribute.
            prefix: See the attribute.
        """
        if isinstance(credentials, str):
            return cls.for_webhook(credentials, egress=egress, prefix=prefix)
        if isinstance(credentials, Webhook):
            return cls.for_webhook(credentials.url, egress=egress, prefix=prefix)
        client_id = application or getattr(credentials, "_client_id", None)
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("give application= (the app's client id) for these credentials")
        return cls.for_application(
            credentials.endpoint(""), client_id, egress=egress, prefix=prefix
        )

    @property
    def rate_key(self) -> str:
        """The key of the portal's request bucket (per egress address)."""
        parts = [self.prefix, "rate", _safe(self.portal)]
        if self.egress:
            parts.append(_safe(self.egress))
        return ":".join(parts)

    @property
    def holds_key(self) -> str:
        """The key of the operating-time holds of this portal and credential (a hash)."""
        return ":".join([self.prefix, "holds", _safe(self.portal), self.credential])
