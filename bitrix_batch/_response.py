"""Decoding Bitrix24 answers: the JSON envelope, top-level errors, and batch sections.

This module performs no I/O. PHP decides the JSON shape of each batch map by its keys: an empty
map is ``[]``, keys exactly ``0..n-1`` make a list, anything else an object with string keys.
`php_map` undoes that, so a caller sees ``{key: value}`` whatever the server sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import (
    APIError,
    AuthError,
    InvalidResponseError,
    OperationTimeLimitError,
    RateLimitError,
)

__all__ = [
    "BatchSections",
    "as_float",
    "as_int",
    "decode_batch",
    "decode_body",
    "error_from_body",
    "php_map",
]

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


def php_map(value: Any) -> dict[str, Any]:
    """A batch map as ``{str key: value}``: ``[]`` is empty, a list maps index to value."""
    if isinstance(value, dict):
        return value  # JSON object keys are strings already
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if value is None:
        return {}
    raise InvalidResponseError(200, f"a batch section is a {type(value).__name__}", method="batch")


def decode_body(
    status_code: int, content_type: str, content: bytes, *, method: str
) -> dict[str, Any]:
    """Parse a response body; raise the matching error for a top-level error or non-JSON.

    Returns the JSON object of a successful call (with ``result`` and usually ``time``).
    """
    text = content.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        kind = content_type.split(";")[0].strip() or "no content type"
        raise InvalidResponseError(
            status_code, f"the body is not JSON ({kind})", method=method, body=text
        ) from None
    if not isinstance(body, dict):
        raise InvalidResponseError(
            status_code, "the body is not a JSON object", method=method, body=text
        )
    if "error" in body:
        raise error_from_body(status_code, body, method=method)
    if status_code >= 400 or "result" not in body:
        raise InvalidResponseError(
            status_code, "the body has neither 'result' nor 'error'", method=method, body=text
        )
    return body


def error_from_body(status_code: int, body: Mapping[str, Any], *, method: str) -> APIError:
    """The exception for a top-level ``{"error": ..., "error_description": ...}`` answer."""
    code = str(body.get("error") or "")
    description = str(body.get("error_description") or "")
    extra = {k: v for k, v in body.items() if k not in ("error", "error_description")}
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


def decode_batch(body: Mapping[str, Any]) -> BatchSections:
    """Split a successful ``batch`` answer into its maps, normalising PHP's shapes."""
    inner = body.get("result")
    if isinstance(inner, list) and not inner:
        inner = {}
    if not isinstance(inner, dict):
        raise InvalidResponseError(200, "the batch result is not an object", method="batch")
    time = body.get("time")
    return BatchSections(
        result=php_map(inner.get("result")),
        result_error=php_map(inner.get("result_error")),
        result_total=php_map(inner.get("result_total")),
        result_next=php_map(inner.get("result_next")),
        result_time=php_map(inner.get("result_time")),
        time=time if isinstance(time, dict) else {},
    )


def as_float(value: Any) -> float | None:
    """A finite number from loosely typed JSON: an int, a float or (PHP) a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    """`total`/`next` as an int (PHP may send them as strings); None when absent or odd."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
