"""Keeping secrets out of texts: log lines that other libraries write, and our own messages.

`mask` replaces every secret in a text with ``***``, in each form a secret can take on the wire
or in an echo: as it is, percent-encoded (``quote``, with or without ``/`` kept;
``quote_plus``; PHP's ``urlencode``, which also encodes ``~``; hex digits in either case) and
JSON-escaped (``\\/``). `bitrix_batch._auth.redact` is this function.

httpx logs every request's URL at INFO level (``HTTP Request: POST https://…/rest/1/<code>/…``)
and httpcore logs headers at DEBUG (a redirect's ``Location`` repeats the webhook code).
`protect_logs` registers secrets process-wide and masks them in every record of the
``httpx``, ``httpcore``, ``h2``, ``hpack`` and ``bitrix_batch`` loggers **and their children**
(``httpcore.http11``, ``httpcore.connection``, ``httpx._client``, ...).

Why a log-record factory: a `logging.Filter` on a logger only sees records logged on that very
logger, not those of its children that propagate through it, and filters on handlers would
have to be put on every handler the application ever configures. The record factory
(`logging.setLogRecordFactory`) is called for every record of every logger once its level is
enabled, before any filter or handler sees it, whenever the logger was created. We wrap the
factory in place (chaining to the one that was there, so other libraries' factories keep
working), and as a second line of defence also put a filter on each of those loggers and
children known at the time (in case an application later installs a factory that does not
chain to ours).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from ._errors import exception_chain

__all__ = ["mask", "mask_exception_chain", "protect_logs", "secret_variants"]

#: The loggers whose records (and whose children's records) are masked.
_LOGGERS = ("httpx", "httpcore", "h2", "hpack", "bitrix_batch")

_PERCENT = re.compile(r"(%[0-9A-Fa-f]{2})")


def secret_variants(secret: str) -> set[str]:
    """Every form of `secret` that may appear in a URL, a form body, JSON text or an echo."""
    forms = {
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        quote_plus(secret, safe=""),
        quote_plus(secret, safe="").replace("~", "%7E"),  # PHP urlencode / http_build_query
        quote(secret, safe="").replace("~", "%7E"),  # PHP rawurlencode before 5.3
        secret.replace("/", "\\/"),  # PHP json_encode
    }
    return {form for form in forms if form}


def _form_pattern(form: str) -> str:
    """A regex for `form` whose percent-escapes match in upper or lower case."""
    out = []
    for part in _PERCENT.split(form):
        if _PERCENT.fullmatch(part):
            out.append("%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c
                                      for c in part[1:]))
        elif part:
            out.append(re.escape(part))
    return "".join(out)


@functools.lru_cache(maxsize=128)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets if secret for form in secret_variants(secret)}
    if not forms:
        return None
    # Longest first: a secret that contains another (two webhooks' codes, say) is masked
    # whole, not turned into its own prefix plus ***.
    ordered = sorted(forms, key=lambda f: (-len(f), f))
    return re.compile("|".join(_form_pattern(form) for form in ordered))


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret replaced by ``***``."""
    if not text:
        return text
    key = secrets if isinstance(secrets, frozenset) else frozenset(s for s in secrets if s)
    pattern = _pattern(key)
    return text if pattern is None else pattern.sub("***", text)


def mask_exception_chain(exc: BaseException, secrets: Iterable[str]) -> None:
    """Mask every secret in the text of `exc` and of every exception a printed traceback of
    it shows (``__cause__``, ``__context__``, the members of exception groups), in place: a
    transport's error may quote the URL it could not reach."""
    secrets = frozenset(secrets)
    for node in exception_chain(exc):
        _mask_exception(node, secrets)


def _mask_exception(exc: BaseException, secrets: frozenset[str]) -> None:
    if any(isinstance(a, str) for a in exc.args):
        masked = tuple(mask(a, secrets) if isinstance(a, str) else a for a in exc.args)
        if masked != exc.args:
            exc.args = masked
    if isinstance(exc, OSError):  # its text comes from these, not from args
        for name in ("strerror", "filename", "filename2"):
            value = getattr(exc, name, None)
            if isinstance(value, str) and (masked_text := mask(value, secrets)) != value:
                setattr(exc, name, masked_text)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [mask(n, secrets) if isinstance(n, str) else n for n in notes]


def mask_value(value: Any, secrets: Iterable[str], depth: int = 0) -> Any:
    """`value` (decoded JSON) with every string in it masked; containers are copied only
    when something in them changed. Beyond 64 levels a value is left as it is."""
    if isinstance(value, str):
        return mask(value, secrets)
    if depth >= 64:
        return value
    if isinstance(value, dict):
        items = {
            (mask(k, secrets) if isinstance(k, str) else k): mask_value(v, secrets, depth + 1)
            for k, v in value.items()
        }
        same = len(items) == len(value) and all(
            k in value and items[k] is value[k] for k in items
        )
        return value if same else items
    if isinstance(value, list):
        masked = [mask_value(v, secrets, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(masked, value, strict=True)) else masked
    return value


class _Registry:
    """The secrets registered process-wide (strictly private)."""

    def __init__(self) -> None:
        self.secrets: frozenset[str] = frozenset()

    def add(self, secrets: Iterable[str]) -> None:
        new = self.secrets | {s for s in secrets if s}
        if new != self.secrets:
            self.secrets = new

    def mask(self, text: str) -> str:
        return mask(text, self.secrets) if self.secrets else text

    def mask_record(self, record: logging.LogRecord) -> None:
        """Mask the record's message, its exception text and its stack text, in place."""
        if not self.secrets:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it when it is formatted
            return
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            masked = self.mask(text)
            if masked != text:
                record.exc_text = masked
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)


_REGISTRY = _Registry()


def _ours(name: str | None) -> bool:
    return name is not None and any(
        name == base or name.startswith(base + ".") for base in _LOGGERS
    )


class _RedactSecrets(logging.Filter):
    """Masks the registered secrets in a record (strictly private; the second line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _REGISTRY.mask_record(record)
        return True


_FILTER = _RedactSecrets()


class _MaskingFactory:
    """Wraps the log-record factory that was installed before it (strictly private)."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        if _ours(record.name):
            _REGISTRY.mask_record(record)
        return record


def _factory_installed() -> bool:
    """Whether our factory is in the chain of the current one (ours, or wrapped by another
    `_MaskingFactory`-like wrapper that keeps ours as ``inner``)."""
    factory: Any = logging.getLogRecordFactory()
    for _ in range(16):
        if isinstance(factory, _MaskingFactory):
            return True
        factory = getattr(factory, "inner", None)
        if factory is None:
            return False
    return False


_known_loggers = -1  # the size of the logger table when filters were last attached


def protect_logs(secrets: Iterable[str]) -> None:
    """Mask `secrets` in everything httpx, httpcore and bitrix_batch log (child loggers
    included), from now on, process-wide."""
    global _known_loggers
    _REGISTRY.add(secrets)
    if not _factory_installed():
        logging.setLogRecordFactory(_MaskingFactory(logging.getLogRecordFactory()))
    table = logging.Logger.manager.loggerDict
    if len(table) == _known_loggers:
        return
    _known_loggers = len(table)
    names = {*_LOGGERS, *(name for name in list(table) if _ours(name))}
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
