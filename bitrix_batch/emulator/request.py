"""Collecting a request's parameters as ``CRestUtil::getRequestData`` does.

Query string and body are both parsed; body keys replace query keys of the same top-level
name (``array_replace``). A form body (urlencoded or multipart) is parsed by PHP itself; a
POST with no form fields has its raw body parsed instead: as JSON when the content type is
``application/json`` (invalid JSON silently gives no parameters), else with ``parse_str``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .php import PhpKey, json_to_php, parse_str, register_variable

__all__ = ["collect_params", "content_type"]


def content_type(headers: dict[str, str]) -> str:
    """The media type without parameters, lowercased."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _multipart(body: bytes, header: str, max_vars: int) -> dict[PhpKey, Any]:
    """Form fields of a multipart body (files are ignored)."""
    match = re.search(r'boundary="?([^";]+)"?', header, re.IGNORECASE)
    out: dict[PhpKey, Any] = {}
    if not match:
        return out
    delimiter = b"--" + match.group(1).encode("latin-1")
    count = 0
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode("utf-8", "replace")
        name = re.search(r'name="([^"]*)"', disposition)
        if name is None or "filename=" in disposition:
            continue
        count += 1
        if count > max_vars:
            break
        text = value[:-2] if value.endswith(b"\r\n") else value
        register_variable(out, name.group(1), text.decode("utf-8", "replace"))
    return out


def collect_params(
    http_method: str,
    query_string: bytes,
    headers: dict[str, str],
    body: bytes,
    max_vars: int = 1000,
) -> dict[PhpKey, Any]:
    """All parameters of one HTTP request, as nested PHP arrays."""
    params = parse_str(query_string.decode("utf-8", "surrogateescape"), max_vars)
    kind = content_type(headers)
    form: dict[PhpKey, Any] = {}
    if http_method == "POST":
        if kind == "application/x-www-form-urlencoded":
            form = parse_str(body.decode("utf-8", "surrogateescape"), max_vars)
        elif kind == "multipart/form-data":
            form = _multipart(body, headers.get("content-type", ""), max_vars)
        if not form and body:
            if kind == "application/json":
                decoded = _php_json_decode(body)
                form = json_to_php(decoded) if isinstance(decoded, dict | list) else {}
            else:
                form = parse_str(body.decode("utf-8", "surrogateescape"), max_vars)
    params.update(form)
    return params


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _php_json_decode(body: bytes) -> Any:
    """PHP ``json_decode``: None for anything PHP rejects (NaN/Infinity, lone surrogates)."""
    try:
        decoded = json.loads(body.decode("utf-8", "replace"), parse_constant=_reject_constant)
        # PHP refuses an unpaired UTF-16 surrogate escape such as "\ud800".
        json.dumps(decoded, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None
    return decoded
