"""Decoding Bitrix24 answers, whatever shape PHP gave them."""

from __future__ import annotations

import json

import pytest

from bitrix_batch import (
    APIError,
    AuthError,
    InvalidResponseError,
    OperationTimeLimitError,
    RateLimitError,
)
from bitrix_batch._response import as_int, decode_batch, decode_body, php_map

# The seed's all-failed example: `result` is PHP's empty array, `result_error` an object.
ALL_FAILED = {
    "result": {
        "result": [],
        "result_error": {
            "get_user": {"error": "insufficient_scope", "error_description": ""},
            "get_department": {"error": "insufficient_scope", "error_description": ""},
        },
        "result_total": [],
        "result_next": [],
        "result_time": [],
    },
    "time": {"start": 1724916638.077564},
}


def test_php_maps_become_dicts() -> None:
    """[] is empty, a list maps index to value, an object keeps its (string) keys."""
    assert php_map([]) == {}
    assert php_map(None) == {}
    assert php_map(["a", "b"]) == {"0": "a", "1": "b"}
    assert php_map({"35943": 1, "x": 2}) == {"35943": 1, "x": 2}
    with pytest.raises(InvalidResponseError):
        php_map("oops")


def test_the_all_failed_example_decodes() -> None:
    """The documented all-failed batch gives two errors and nothing else."""
    sections = decode_batch(decode_body(200, "application/json", json.dumps(ALL_FAILED).encode(),
                                        method="batch"))
    assert sections.result == {}
    assert set(sections.result_error) == {"get_user", "get_department"}
    assert sections.result_time == {}


def test_a_mixed_batch_with_list_shapes_decodes() -> None:
    """A list-form cmd where command 1 failed: result is an object, result_error a list."""
    body = {
        "result": {
            "result": {"0": {"ID": "1"}, "2": {"ID": "3"}},
            "result_error": {"1": {"error": "", "error_description": "Not found"}},
            "result_total": [],
            "result_next": [],
            "result_time": {"0": {}, "2": {}},
        },
        "time": {},
    }
    sections = decode_batch(body)
    assert sections.result == {"0": {"ID": "1"}, "2": {"ID": "3"}}
    assert sections.result_error == {"1": {"error": "", "error_description": "Not found"}}


def test_an_empty_batch_result_may_be_an_empty_list() -> None:
    """An empty map anywhere, even the whole result, is PHP's []."""
    sections = decode_batch({"result": [], "time": {}})
    assert sections.result == {} and sections.result_error == {}  # noqa: PT018


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
         RateLimitError, "QUERY_LIMIT_EXCEEDED"),
        (429, {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"},
         OperationTimeLimitError, "OPERATION_TIME_LIMIT"),
        (401, {"error": "expired_token", "error_description": "The access token expired"},
         AuthError, "expired_token"),
        (401, {"error": "INVALID_CREDENTIALS", "error_description": "Invalid"},
         AuthError, "INVALID_CREDENTIALS"),
        (404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
         APIError, "ERROR_METHOD_NOT_FOUND"),
        (400, {"error": "", "error_description": "Not found"}, APIError, ""),
    ],
)
def test_top_level_errors_map_to_one_class_each(
    status: int, body: dict[str, str], cls: type[APIError], code: str
) -> None:
    """Top-level errors become typed exceptions keeping the server's code."""
    with pytest.raises(cls) as info:
        decode_body(status, "application/json", json.dumps(body).encode(), method="x.y")
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.status_code == status
    assert "x.y" in str(info.value)


def test_extra_error_keys_are_kept() -> None:
    """ERROR_ARGUMENT's extra `argument` key survives."""
    body = {"error": "ERROR_ARGUMENT", "error_description": "bad", "argument": "id"}
    with pytest.raises(APIError) as info:
        decode_body(400, "application/json", json.dumps(body).encode(), method="m")
    assert info.value.extra == {"argument": "id"}


def test_html_pages_are_typed_errors() -> None:
    """A gateway's HTML page becomes InvalidResponseError with its status."""
    with pytest.raises(InvalidResponseError, match="502") as info:
        decode_body(502, "text/html", b"<html><body>Bad Gateway</body></html>", method="batch")
    assert info.value.status_code == 502
    assert "Bad Gateway" in info.value.body


def test_a_json_body_without_result_or_error_is_refused() -> None:
    """JSON that is neither a result nor an error is not silently accepted."""
    with pytest.raises(InvalidResponseError):
        decode_body(200, "application/json", b'{"foo": 1}', method="m")
    with pytest.raises(InvalidResponseError):
        decode_body(200, "application/json", b"[1, 2]", method="m")


def test_total_and_next_accept_php_strings() -> None:
    """PHP may send numbers as strings."""
    assert as_int("50") == 50
    assert as_int(7) == 7
    assert as_int(None) is None
    assert as_int(True) is None
    assert as_int("x") is None
