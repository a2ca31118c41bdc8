"""PHP rules the emulator rebuilds: parse_str, parse_url, truthiness, array shapes, JSON."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, strategies as st

from bitrix_batch.emulator.php import (
    parse_str,
    parse_url_path_query,
    php_encode_json,
    php_index,
    php_key,
    php_shape,
    php_str,
    php_truthy,
    url_decode,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=2", {"a": "1", "b": "2"}),
        ("a=1&a=2", {"a": "2"}),
        ("a[]=1&a[]=2", {"a": {0: "1", 1: "2"}}),
        ("a[b][c]=v", {"a": {"b": {"c": "v"}}}),
        ("a[0]=x&a[5]=y&a[]=z", {"a": {0: "x", 5: "y", 6: "z"}}),
        ("a.b=1&c d=2", {"a_b": "1", "c_d": "2"}),
        ("a[b=1", {"a_b": "1"}),
        ("a[b][c=1", {"a": {"b": "1"}}),
        ("a[b]c=1", {"a": {"b": "1"}}),
        ("a[ x]=1", {"a": {" x": "1"}}),
        ("a[ ]=1", {"a": {0: "1"}}),
        ("x=%2B7+999&y=%zz", {"x": "+7 999", "y": "%zz"}),
        ("noval&=skip&&k=", {"noval": "", "k": ""}),
        ("a=1&a[x]=2", {"a": {"x": "2"}}),
        ("a[x]=2&a=1", {"a": "1"}),
        ("n[01]=a&n[1]=b&n[-1]=c", {"n": {"01": "a", 1: "b", -1: "c"}}),
        ("%24result%5Bx%5D=1", {"$result": {"x": "1"}}),
        ("  lead=1", {"lead": "1"}),
    ],
)
def test_parse_str_follows_php(query: str, expected: dict[object, object]) -> None:
    assert parse_str(query) == expected


def test_parse_str_drops_variables_past_max_input_vars() -> None:
    parsed = parse_str("&".join(f"v{i}=1" for i in range(10)), max_input_vars=3)
    assert list(parsed) == ["v0", "v1", "v2"]


def test_url_decode_is_byte_based() -> None:
    assert url_decode("%D0%9F%D1%80%D0%B8") == "При"
    assert url_decode("100%") == "100%"


@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True), st.text()))
def test_parse_str_inverts_urlencoding_of_flat_maps(data: dict[str, str]) -> None:
    query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in data.items())
    assert parse_str(query) == data


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("user.current", ("user.current", None)),
        ("user.current?", ("user.current", "")),
        ("crm.lead.get?id=1#frag&x=2", ("crm.lead.get", "id=1")),
        ("crm.lead.add?fields[TITLE]=a?b", ("crm.lead.add", "fields[TITLE]=a?b")),
    ],
)
def test_parse_url_path_query(command: str, expected: tuple[str, str | None]) -> None:
    assert parse_url_path_query(command) == expected


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ("0", False),
        ({}, False),
        ("false", True),
        ("0.0", True),
        (" ", True),
        (1, True),
        ({0: 0}, True),
        (True, True),
    ],
)
def test_php_truthiness(value: object, truthy: bool) -> None:
    assert php_truthy(value) is truthy


def test_php_shape_lists_objects_and_empty() -> None:
    assert php_shape({}) == []
    assert php_shape({0: "a", 1: "b"}) == ["a", "b"]
    assert php_shape({"0": "a", "1": "b"}) == ["a", "b"]
    assert php_shape({1: "a", 0: "b"}) == {"1": "a", "0": "b"}
    assert php_shape({0: "a", 2: "b"}) == {"0": "a", "2": "b"}
    assert php_shape({"x": {}}) == {"x": []}


def test_json_escaping_matches_bitrix_flags() -> None:
    text = php_encode_json({"t": "a<b>&'\"/ü\\"})
    assert text == '{"t":"a\\u003Cb\\u003E\\u0026\\u0027\\u0022\\/ü\\\\"}'
    assert json.loads(text) == {"t": "a<b>&'\"/ü\\"}
    # A string ending in a backslash keeps its closing quote structural.
    assert json.loads(php_encode_json(["x\\", "y"])) == ["x\\", "y"]


def test_php_index_walks_like_isset() -> None:
    assert php_index({"a": None}, "a") == (False, None)
    assert php_index({1: "x"}, "1") == (True, "x")
    assert php_index(["a", "b"], "1") == (True, "b")
    assert php_index("John", "0") == (True, "J")
    assert php_index("John", "NAME") == (False, None)
    assert php_index(5, "0") == (False, None)


def test_php_str_of_numbers() -> None:
    assert php_str(1.0) == "1"
    assert php_str(0.5) == "0.5"
    assert php_str(7) == "7"
    assert php_str(True) == "1"


def _shape_by_the_rules(value: Any) -> Any:
    """`php_shape` written plainly from the rules, to check the fast one against."""
    if isinstance(value, dict):
        if not value:
            return []
        keys = [php_key(k) for k in value]
        if keys == list(range(len(keys))):
            return [_shape_by_the_rules(v) for v in value.values()]
        return {str(k): _shape_by_the_rules(v) for k, v in zip(keys, value.values(), strict=True)}
    if isinstance(value, list | tuple):
        return [_shape_by_the_rules(v) for v in value]
    return value


_KEYS = st.one_of(
    st.sampled_from(["0", "1", "2", "01", "-0", "-1", "a", "", " 1", "1.5"]),
    st.integers(min_value=-2, max_value=3),
    st.text(max_size=3),
)
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@given(_VALUES)
def test_php_shape_follows_the_rules_on_any_value(value: Any) -> None:
    assert php_shape(value) == _shape_by_the_rules(value)
