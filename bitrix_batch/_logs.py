"""Keeping secrets out of log lines that other libraries write.

httpx logs every request's URL at INFO level (``HTTP Request: POST https://…/rest/1/<code>/…``),
and a webhook's code is part of that URL. `protect_logs` attaches one filter to the ``httpx``
and ``httpcore`` loggers that replaces every registered secret with ``***`` before a record is
formatted, so turning on INFO logging never prints a webhook code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["protect_logs"]

_LOGGERS = ("httpx", "httpcore", "bitrix_batch")


class _RedactSecrets(logging.Filter):
    """Rewrites a record's message with the registered secrets masked (strictly private)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        # Longest first: a secret that contains another (two webhooks' codes, say) must be
        # masked whole, not turned into its own prefix plus ***.
        self.ordered: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        """Register more secrets."""
        self.secrets.update(s for s in secrets if s)
        self.ordered = tuple(sorted(self.secrets, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.ordered:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.ordered:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = _RedactSecrets()


def protect_logs(secrets: Iterable[str]) -> None:
    """Mask `secrets` in everything httpx and httpcore log, from now on, process-wide."""
    _FILTER.add(secrets)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
