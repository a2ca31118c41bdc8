"""REST errors as the server reports them: a code, a description, an HTTP status, extras."""

from __future__ import annotations

from typing import Any

__all__ = [
    "RestError",
    "batch_length_exceeded",
    "batch_method_not_allowed",
    "expired_token",
    "insufficient_scope",
    "internal_server_error",
    "invalid_credentials",
    "invalid_token",
    "method_not_found",
    "no_auth_found",
    "not_found",
    "operation_time_limit",
    "query_limit_exceeded",
]


class RestError(Exception):
    """A REST-level failure; ``body()`` is the JSON object the server sends."""

    def __init__(
        self,
        code: str,
        description: str,
        status: int = 400,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """``{"error": code, "error_description": text, ...extra}``."""
        return {"error": self.code, "error_description": self.description, **self.extra}


def method_not_found() -> RestError:
    """404 ``ERROR_METHOD_NOT_FOUND`` (checked before auth)."""
    return RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)


def no_auth_found() -> RestError:
    """401 ``NO_AUTH_FOUND``: no credential at all."""
    return RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)


def invalid_credentials() -> RestError:
    """401 ``INVALID_CREDENTIALS``: unknown, deleted or mistyped webhook."""
    return RestError("INVALID_CREDENTIALS", "Invalid request credentials", 401)


def expired_token() -> RestError:
    """401 ``expired_token``: the OAuth access token is past its lifetime."""
    return RestError("expired_token", "The access token provided has expired", 401)


def invalid_token() -> RestError:
    """401 ``invalid_token``: an unknown or revoked access token (text unverified)."""
    return RestError("invalid_token", "The access token provided is invalid", 401)


def insufficient_scope(kind: str | None) -> RestError:
    """``insufficient_scope``; inside a batch ``kind`` is None and the description empty."""
    if kind is None:
        return RestError("insufficient_scope", "", 401)
    token = "webhook token" if kind == "webhook" else "access token"
    return RestError(
        "insufficient_scope",
        f"The request requires higher privileges than provided by the {token}",
        401,
    )


def internal_server_error() -> RestError:
    """500 ``INTERNAL_SERVER_ERROR``: how a request cut off at the cloud's 60 s cap ends."""
    return RestError("INTERNAL_SERVER_ERROR", "Internal server error", 500)


def query_limit_exceeded() -> RestError:
    """503 ``QUERY_LIMIT_EXCEEDED`` from the leaky bucket in front of the portal."""
    return RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)


def operation_time_limit() -> RestError:
    """429 ``OPERATION_TIME_LIMIT`` from the per-method operating-time limiter."""
    return RestError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)


def batch_length_exceeded() -> RestError:
    """Per-command error for every command past the 50th."""
    return RestError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")


def batch_method_not_allowed() -> RestError:
    """Per-command error for ``batch``/``download``/``upload`` inside a batch."""
    return RestError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")


def not_found() -> RestError:
    """Legacy CRM methods: a missing record is an error with an empty code."""
    return RestError("", "Not found")
