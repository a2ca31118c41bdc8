"""Decoding Bitrix24 answers: the JSON envelope, top-level errors, and batch sections.

This module performs no I/O. PHP decides the JSON shape of each batch map by its keys: an empty
map is ``[]``, keys exactly ``0..n-1`` make a list, anything else an object with string keys.
`php_map` undoes that, so a caller sees ``{key: value}`` whatever the server sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from ._errors import (
    APIError,
    AuthError,
    InvalidResponseError,
    OperationTimeLimitError,
    RateLimitError,
    RedirectError,
)
from ._logs import mask, mask_value

__all__ = [
    "BatchSections",
    "as_float",
    "as_int",
    "decode_batch",
    "decode_body",
    "error_from_body",
    "php_map",
    "redirect_error",
]

#: Redirects that ran nothing: the web server or a proxy answered before the portal's code.
#: (303 See Other is left out: it is what a server answers *after* handling a POST.)
REDIRECT_STATUSES = frozenset({301, 302, 307, 308})

#: Error codes that mean "who you are is not accepted" (401 on the server).
AUTH_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "INVALID_CREDENTIALS",
        "INVALID_REQUEST",
        "EXPIRED_TOKEN",
        "INVALID_TOKEN",
        "INSUFFICIENT_SCOPE",
        "USER_ACCESS_ERROR",
        "AUTHORIZATION_ERROR",
        "APPLICATION_NOT_FOUND",
        "OVERLOAD_LIMIT",
    }
)


def php_map(value: Any, *, strict: bool = True) -> dict[str, Any]:
    """A batch map as ``{str key: value}``: ``[]`` is empty, a list maps index to value.

    Anything else raises `InvalidResponseError`, or with ``strict=False`` (the side maps:
    totals, cursors, times) reads as empty, so that the outcomes of the commands that ran are
    kept.
    """
    if isinstance(value, dict):
        return value  # JSON object keys are strings already
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if value is None or not strict:
        return {}
    raise InvalidResponseError(200, f"a batch section is a {type(value).__name__}", method="batch")


def decode_body(
    status_code: int,
    content_type: str,
    content: bytes,
    *,
    method: str,
    secrets: Iterable[str] = (),
    location: str | None = None,
    url: str = "",
) -> dict[str, Any]:
    """Parse a response body; raise the matching error for a top-level error or non-JSON.

    Returns the JSON object of a successful call (with ``result`` and usually ``time``).
    Every text of the server's that goes into an exception has `secrets` masked (the server
    may echo the request path or a token). A 301/302/307/308 raises `RedirectError` naming
    `location` (resolved against the request's `url`), scheme and host only. JSON nested too
    deep to decode is an `InvalidResponseError`, not a `RecursionError`.
    """
    secrets = frozenset(secrets)
    if status_code in REDIRECT_STATUSES:
        raise redirect_error(status_code, location, url, secrets, method=method)
    text = content.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        kind = content_type.split(";")[0].strip() or "no content type"
        why = "nested too deep" if isinstance(exc, RecursionError) else f"not JSON ({kind})"
        raise InvalidResponseError(
            status_code, f"the body is {why}", method=method, body=mask(text[:8000], secrets)
        ) from None
    if not isinstance(body, dict):
        raise InvalidResponseError(
            status_code,
            "the body is not a JSON object",
            method=method,
            body=mask(text[:8000], secrets),
        )
    if "error" in body:
        raise error_from_body(status_code, body, method=method, secrets=secrets)
    if status_code >= 400 or "result" not in body:
        raise InvalidResponseError(
            status_code,
            "the body has neither 'result' nor 'error'",
            method=method,
            body=mask(text[:8000], secrets),
        )
    return body


def redirect_error(
    status_code: int,
    location: str | None,
    url: str,
    secrets: Iterable[str] = (),
    *,
    method: str,
) -> RedirectError:
    """The error for a redirect: where it points, as ``scheme://host[:port]``, masked."""
    target = ""
    if location:
        try:
            parts = urlsplit(urljoin(url, location.strip()))
            if parts.scheme and parts.netloc:
                host = parts.netloc.rpartition("@")[2]  # never a user:password part
                target = f"{parts.scheme}://{host}"
        except ValueError:
            target = ""
    return RedirectError(status_code, mask(target, secrets), method=method)


def error_from_body(
    status_code: int, body: Mapping[str, Any], *, method: str, secrets: Iterable[str] = ()
) -> APIError:
    """The exception for a top-level ``{"error": ..., "error_description": ...}`` answer,
    with `secrets` masked in its code, description and extra fields."""
    secrets = frozenset(secrets)
    code = mask(str(body.get("error") or ""), secrets)
    description = mask(str(body.get("error_description") or ""), secrets)
    extra = {
        k: mask_value(v, secrets)
        for k, v in body.items()
        if k not in ("error", "error_description")
    }
    upper = code.upper()
    cls: type[APIError] = APIError
    if upper == "QUERY_LIMIT_EXCEEDED":
        cls = RateLimitError
    elif upper == "OPERATION_TIME_LIMIT":
        cls = OperationTimeLimitError
    elif upper in AUTH_CODES or status_code == 401:
        cls = AuthError
    return cls(status_code, code, description, method=method, extra=extra)


@dataclass(frozen=True, slots=True)
class BatchSections:
    """The five maps of a batch answer, keyed by the wire keys as strings, plus ``time``."""

    result: dict[str, Any]
    result_error: dict[str, Any]
    result_total: dict[str, Any]
    result_next: dict[str, Any]
    result_time: dict[str, Any]
    time: Mapping[str, Any]
    #: Equal strings of this answer shared between its commands' outcomes (dates, mostly).
    strings: dict[str, str] = field(default_factory=dict)


def decode_batch(body: Mapping[str, Any], *, secrets: Iterable[str] = ()) -> BatchSections:
    """Split a successful ``batch`` answer into its maps, normalising PHP's shapes.

    Each command's error has `secrets` masked (a description may quote a token). A side map
    (totals, cursors, times) of an odd type reads as empty rather than losing the results.
    """
    inner = body.get("result")
    if isinstance(inner, list) and not inner:
        inner = {}
    if not isinstance(inner, dict):
        raise InvalidResponseError(200, "the batch result is not an object", method="batch")
    time = body.get("time")
    errors = php_map(inner.get("result_error"))
    secrets = frozenset(secrets)
    if errors and secrets:
        errors = {key: mask_value(err, secrets) for key, err in errors.items()}
    return BatchSections(
        result=php_map(inner.get("result")),
        result_error=errors,
        result_total=php_map(inner.get("result_total"), strict=False),
        result_next=php_map(inner.get("result_next"), strict=False),
        result_time=php_map(inner.get("result_time"), strict=False),
        time=time if isinstance(time, dict) else {},
    )


#: The longest numeric string read (Python refuses longer ints anyway; this keeps it cheap).
_MAX_NUMBER_TEXT = 400


def as_float(value: Any) -> float | None:
    """A finite number from loosely typed JSON: an int, a float or (PHP) a numeric string.

    None for anything else, and for NaN, infinities and numbers too large for a float.
    """
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT:
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    """`total`/`next` as an int (PHP may send them as strings); None when absent or odd.

    An int is kept as it is (however large); a float only when it is finite and whole; a
    string only when it is an integer's digits. NaN, infinities, fractions, ``"1e5"``, text
    and other types read as None: never a raw OverflowError or ValueError.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT:
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
