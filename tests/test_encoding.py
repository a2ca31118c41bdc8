"""PHP-faithful query encoding: golden strings, parse_str quirks, round-trip properties.

The golden strings are what PHP 8 produces; they were derived from the php-src code
(ext/standard/http.c, main/php_variables.c, Zend's zend_gcvt), not from a running PHP.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from bitrix_batch._encoding import (
    encode_command,
    encode_form,
    http_build_query,
    normalize,
    parse_str,
    php_strval,
    urlencode,
)

# ---------------------------------------------------------------- helpers


def ordered(value: Any) -> Any:
    """Nested pairs, so comparisons also check PHP's key order."""
    if isinstance(value, dict):
        return [(key, ordered(item)) for key, item in value.items()]
    return value


class Token:
    """A stand-in for a reference object: it renders itself through __bitrix_token__."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __bitrix_token__(self) -> str:
        return self.text


# ---------------------------------------------------------------- urlencode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abcXYZ019-_.", "abcXYZ019-_."),
        ("a b", "a+b"),
        ("~", "%7E"),
        ("& = + # % [ ]", "%26+%3D+%2B+%23+%25+%5B+%5D"),
        ("+7 999", "%2B7+999"),
        ("$result[x]", "%24result%5Bx%5D"),
        ("a/b?c:d@e!*'();,", "a%2Fb%3Fc%3Ad%40e%21%2A%27%28%29%3B%2C"),
        ("Привет", "%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82"),
        ("😀", "%F0%9F%98%80"),
        ("\x00\n\x7f", "%00%0A%7F"),
        ("", ""),
    ],
)
def test_urlencode_matches_php(text: str, expected: str) -> None:
    assert urlencode(text) == expected


# ---------------------------------------------------------------- http_build_query


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"fields": {"TITLE": "Test Lead", "ASSIGNED_BY_ID": 5}},
            "fields%5BTITLE%5D=Test+Lead&fields%5BASSIGNED_BY_ID%5D=5",
        ),
        ({"filter": {">=PRICE": 15}}, "filter%5B%3E%3DPRICE%5D=15"),
        ({"filter": {"!STATUS_ID": "NEW"}}, "filter%5B%21STATUS_ID%5D=NEW"),
        ({"ids": [1, 2, 3]}, "ids%5B0%5D=1&ids%5B1%5D=2&ids%5B2%5D=3"),
        ({"ids": (7,)}, "ids%5B0%5D=7"),
        ({"a": {"b": {"c": "v"}}}, "a%5Bb%5D%5Bc%5D=v"),
        ({"a": [{"x": 1}, {"x": 2}]}, "a%5B0%5D%5Bx%5D=1&a%5B1%5D%5Bx%5D=2"),
        ({"yes": True, "no": False}, "yes=1&no=0"),
        ({"a": None, "b": "x", "c": None}, "b=x"),
        ({"a": [], "b": {}, "c": "x", "d": {"e": None, "f": []}}, "c=x"),
        ({"a": ""}, "a="),
        ({"n": -42, "z": 0}, "n=-42&z=0"),
        ({"select": ["ID", "UF_*"]}, "select%5B0%5D=ID&select%5B1%5D=UF_%2A"),
        (
            {"PHONE": [{"VALUE": "+7 999", "VALUE_TYPE": "WORK"}]},
            "PHONE%5B0%5D%5BVALUE%5D=%2B7+999&PHONE%5B0%5D%5BVALUE_TYPE%5D=WORK",
        ),
        ({"q": "& = + # % [ ]"}, "q=%26+%3D+%2B+%23+%25+%5B+%5D"),
        (
            {"имя": "Привет 😀"},
            "%D0%B8%D0%BC%D1%8F=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82+%F0%9F%98%80",
        ),
        ({"a b.c": 1}, "a+b.c=1"),
        ({0: "a", 15: "b", -3: "c"}, "0=a&15=b&-3=c"),
        ({"m": {5: "x", True: "y"}}, "m%5B5%5D=x&m%5B1%5D=y"),
        ({}, ""),
        ({"a": None}, ""),
    ],
)
def test_http_build_query_golden(data: dict[Any, Any], expected: str) -> None:
    assert http_build_query(data) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, "0.1"),
        (1.0, "1"),
        (0.1 + 0.2, "0.3"),  # precision 14, not serialize_precision
        (1e25, "1.0E%2B25"),  # the exponent's "+" is urlencoded like any other text
        (1e-7, "1.0E-7"),
        (-0.0, "-0"),
        (1.5, "1.5"),
        (math.inf, "INF"),
        (-math.inf, "-INF"),
        (math.nan, "NAN"),
    ],
)
def test_http_build_query_floats(value: float, expected: str) -> None:
    assert http_build_query({"f": value}) == f"f={expected}"


def test_token_objects_are_written_as_their_string() -> None:
    ref = Token("$result[get_user][ID]")
    assert http_build_query({"ID": ref}) == "ID=%24result%5Bget_user%5D%5BID%5D"
    assert http_build_query({"f": {"x": [ref]}}) == (
        "f%5Bx%5D%5B0%5D=%24result%5Bget_user%5D%5BID%5D"
    )


@pytest.mark.parametrize(
    "value", [Decimal("1.5"), object(), b"bytes", {1, 2}, 1j, frozenset()]
)
def test_unsupported_values_raise_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"fields\[X\]"):
        http_build_query({"fields": {"X": value}})


def test_bad_token_and_bad_key_raise_type_error() -> None:
    class BadToken:
        def __bitrix_token__(self) -> int:
            return 1

    with pytest.raises(TypeError, match="__bitrix_token__"):
        http_build_query({"a": BadToken()})
    with pytest.raises(TypeError, match="key"):
        http_build_query({"a": {1.5: "x"}})
    with pytest.raises(TypeError, match="mapping"):
        http_build_query("a=1")  # type: ignore[arg-type]


def test_circular_structure_raises_value_error() -> None:
    data: dict[str, Any] = {"a": {}}
    data["a"]["self"] = data
    with pytest.raises(ValueError, match="circular"):
        http_build_query(data)
    shared = {"x": 1}  # the same object twice is not a cycle
    assert http_build_query({"a": shared, "b": shared}) == "a%5Bx%5D=1&b%5Bx%5D=1"


# ---------------------------------------------------------------- commands and forms


def test_encode_command() -> None:
    assert encode_command("user.current", None) == "user.current"
    assert encode_command("user.current", {}) == "user.current"
    assert encode_command("user.get", {"FILTER": {"X": None}, "S": []}) == "user.get"
    assert encode_command("crm.lead.add", {"fields": {"TITLE": "A & B"}}) == (
        "crm.lead.add?fields%5BTITLE%5D=A+%26+B"
    )


def test_form_double_encoding_matches_the_docs_get_example() -> None:
    # The docs' GET example (batch.md) ends with "cmd[get_department]=" + docs_value.
    # PHP also encodes the key's brackets; the value part must match byte for byte.
    docs_value = (
        "department.get%3FID%3D%2524result%255Bget_user%255D%255BUF_DEPARTMENT%255D"
    )
    cmd = encode_command("department.get", {"ID": "$result[get_user][UF_DEPARTMENT]"})
    assert cmd == "department.get?ID=%24result%5Bget_user%5D%5BUF_DEPARTMENT%5D"
    cmds = {"get_user": "user.current", "get_department": cmd}
    body = encode_form({"halt": 0, "cmd": cmds})
    assert body == (
        b"halt=0&cmd%5Bget_user%5D=user.current&cmd%5Bget_department%5D="
        + docs_value.encode()
    )
    # The server reads the docs' hand-written URL and ours to the same commands (the
    # docs write "user.current?" with an empty query, which names the same method).
    docs_query = (
        "auth=d161f25928c3184678924ec127edd29a&halt=0&cmd[get_user]=user.current%3F"
        "&cmd[get_department]=" + docs_value
    )
    theirs = parse_str(docs_query)
    ours = parse_str(body.decode("ascii"))
    assert theirs["cmd"]["get_department"] == ours["cmd"]["get_department"] == cmd
    assert theirs["cmd"]["get_user"] == "user.current?"
    method, _, query = ours["cmd"]["get_department"].partition("?")
    assert method == "department.get"
    assert parse_str(query) == {"ID": "$result[get_user][UF_DEPARTMENT]"}


def test_percent_26_becomes_2526_in_a_form() -> None:
    cmd = encode_command("crm.lead.add", {"fields": {"TITLE": "R&D"}})
    assert "R%26D" in cmd
    assert b"R%2526D" in encode_form({"cmd": {"a": cmd}})


# ---------------------------------------------------------------- parse_str


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=2", {"a": "1", "b": "2"}),
        ("a.b=1&c d=2", {"a_b": "1", "c_d": "2"}),
        ("a.b[c.d]=1", {"a_b": {"c.d": "1"}}),  # only the top-level name is mangled
        ("  x=1", {"x": "1"}),
        ("+x=1", {"x": "1"}),  # "+" decodes to a space, and leading spaces are dropped
        ("a[]=1&a[]=2", {"a": {0: "1", 1: "2"}}),
        ("a[5]=x&a[]=y", {"a": {5: "x", 6: "y"}}),
        ("a[-5]=x&a[]=y", {"a": {-5: "x", -4: "y"}}),  # PHP >= 8.3
        ("a[x]=1&a[]=2", {"a": {"x": "1", 0: "2"}}),
        # One whitespace byte after "[" is skipped when looking for "]".
        ("a[ ]=1&a[\t]=2", {"a": {0: "1", 1: "2"}}),
        ("a[ x]=1", {"a": {" x": "1"}}),
        ("a[][]=1&a[][]=2", {"a": {0: {0: "1"}, 1: {0: "2"}}}),
        ("a=1&a=2", {"a": "2"}),
        ("a=1&b=2&a=3", {"a": "3", "b": "2"}),  # later value, first position
        ("a[b]=1&a=2", {"a": "2"}),
        ("a=2&a[b]=1", {"a": {"b": "1"}}),
        ("a[b]=1&a[b][c]=2", {"a": {"b": {"c": "2"}}}),
        ("a[x][y]=1&a[x][z]=2", {"a": {"x": {"y": "1", "z": "2"}}}),
        ("0=a&15=b&-3=c", {0: "a", 15: "b", -3: "c"}),
        ("01=a&-0=b&1.0=c& 1=d&+1=e", {"01": "a", "-0": "b", "1_0": "c", 1: "e"}),
        ("a[01]=x&a[1.0]=y&a[ 1]=z", {"a": {"01": "x", "1.0": "y", " 1": "z"}}),
        ("a[9223372036854775807]=x", {"a": {9223372036854775807: "x"}}),
        ("a[9223372036854775808]=x", {"a": {"9223372036854775808": "x"}}),
        ("a[-9223372036854775808]=x", {"a": {-9223372036854775808: "x"}}),
        ("a[b=1", {"a_b": "1"}),
        ("a[b.c d[e=1", {"a_b_c_d_e": "1"}),
        ("a.b[c=1", {"a_b_c": "1"}),
        ("a[b]c=1", {"a": {"b": "1"}}),
        ("a[b][c=1", {"a": {"b": "1"}}),
        ("a[][c=1", {"a": {0: "1"}}),
        ("a[b[c]=1", {"a": {"b[c": "1"}}),
        ("[a]=1&=2&%5Bb%5D=3", {}),
        ("&&a=1&&", {"a": "1"}),
        ("a", {"a": ""}),
        ("a=", {"a": ""}),
        ("a=b=c", {"a": "b=c"}),
        ("%41=%zz%4&b=100%", {"A": "%zz%4", "b": "100%"}),
        ("a=%2B7+999", {"a": "+7 999"}),
        ("a%00b=1&c=x%00y", {"a": "1", "c": "x\x00y"}),
        ("a=%D0%9F%F0%9F%98%80", {"a": "П😀"}),
        ("a=%FF", {"a": "\udcff"}),  # not UTF-8: kept as a surrogate escape
        ("._Host-x=1&__Host-y=2", {"__Host-y": "2"}),
        ("", {}),
    ],
)
def test_parse_str_golden(query: str, expected: dict[Any, Any]) -> None:
    assert ordered(parse_str(query)) == ordered(expected)


def test_parse_str_hand_written_docs_command() -> None:
    # The docs' user_lead command, unencoded as they show it.
    query = (
        "fields[TITLE]=Test Assigned"
        "&fields[ASSIGNED_BY_ID]=$result[user_by_name][0][ID]"
    )
    assert parse_str(query) == {
        "fields": {
            "TITLE": "Test Assigned",
            "ASSIGNED_BY_ID": "$result[user_by_name][0][ID]",
        }
    }


def test_parse_str_nesting_limit_drops_the_variable() -> None:
    deep_ok = "a" + "[x]" * 63 + "[y]=1"  # 64 groups: allowed
    parsed = parse_str(deep_ok)
    node = parsed["a"]
    for _ in range(63):
        node = node["x"]
    assert node == {"y": "1"}
    too_deep = "a" + "[x]" * 65 + "=1"
    assert parse_str("a[k]=keep&b=2&" + too_deep) == {"b": "2"}


def test_parse_str_max_input_vars() -> None:
    assert parse_str("a=1&&b=2&c=3", max_input_vars=2) == {"a": "1", "b": "2"}
    assert parse_str("a=1&b=2", max_input_vars=None) == {"a": "1", "b": "2"}


def test_non_utf8_bytes_round_trip() -> None:
    parsed = parse_str("k%FF=%FE%00")
    assert http_build_query(parsed) == "k%FF=%FE%00"


# ---------------------------------------------------------------- php_strval


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (0, "0"),
        (-17, "-17"),
        (2**63 - 1, "9223372036854775807"),
        (0.1 + 0.2, "0.3"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (100.0, "100"),
        (1e15, "1.0E+15"),
        (1e14, "1.0E+14"),
        (99999999999999.0, "99999999999999"),
        (1e13, "10000000000000"),
        (-0.0, "-0"),
        (0.0, "0"),
        (1e-5, "1.0E-5"),
        (0.0001, "0.0001"),
        (1.5e-10, "1.5E-10"),
        (1 / 3, "0.33333333333333"),
        (2 / 3, "0.66666666666667"),
        (math.pi, "3.1415926535898"),
        (2.0**63, "9.2233720368548E+18"),
        (1e100, "1.0E+100"),
        (5e-324, "4.9406564584125E-324"),
        (math.inf, "INF"),
        (-math.inf, "-INF"),
        (math.nan, "NAN"),
        (True, None),
        (False, None),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
    ],
)
def test_php_strval_golden(value: Any, expected: str | None) -> None:
    assert php_strval(value) == expected


def test_php_strval_rejects_non_json() -> None:
    with pytest.raises(TypeError):
        php_strval(Decimal(1))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_php_strval_int_is_decimal(number: int) -> None:
    assert php_strval(number) == str(number)


@given(st.integers(min_value=-(10**14) + 1, max_value=10**14 - 1))
def test_php_strval_whole_floats_print_as_integers(number: int) -> None:
    # Up to 14 digits a whole double prints without fraction or exponent.
    assert php_strval(float(number)) == str(number)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_php_strval_float_keeps_14_significant_digits(value: float) -> None:
    text = php_strval(value)
    assert text is not None
    assert re.fullmatch(r"-?(\d+(\.\d+)?|\d\.\d+E[+-]\d+)", text)
    digits = re.sub(r"E.*|[-.]", "", text).lstrip("0") or "0"
    assert len(digits.rstrip("0") or "0") <= 14
    assert float(text) == float(f"{value:.13e}")


# ---------------------------------------------------------------- round trip

_AWKWARD = st.text(
    alphabet=st.one_of(
        st.sampled_from("&=+#%[]. ~$-_\x00\t"),
        st.characters(codec="utf-8"),
    ),
    max_size=8,
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    _AWKWARD,
)


def _data(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[Any, Any]]:
    values = st.recursive(
        _SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=12,
    )
    return st.dictionaries(keys, values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(_data(_AWKWARD))
def test_round_trip_matches_normalize(data: dict[Any, Any]) -> None:
    assert ordered(parse_str(http_build_query(data))) == ordered(normalize(data))


_CANONICAL_INT = re.compile(r"-?[1-9][0-9]*|0")


def _model_key(key: str | int) -> str | int:
    if isinstance(key, str) and _CANONICAL_INT.fullmatch(key):
        number = int(key)
        if -(2**63) <= number < 2**63:
            return number
    return key


def _model(value: Any) -> Any:
    """An independent model of the PHP view, for keys free of bracket or name quirks."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return php_strval(value)
    if isinstance(value, str):
        return value
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    out = {}
    for key, item in pairs:
        converted = _model(item)
        if converted is not None and converted != {}:
            out[_model_key(key)] = converted
    return out


_PLAIN_NAME = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(_data(_PLAIN_NAME))
def test_round_trip_against_independent_model(data: dict[Any, Any]) -> None:
    expected = _model(data)
    assert ordered(normalize(data)) == ordered(expected)
    assert ordered(parse_str(http_build_query(data))) == ordered(expected)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_PLAIN_NAME, _AWKWARD, max_size=4))
def test_double_encoding_round_trip(params: dict[str, str]) -> None:
    # A command string sent through a form body arrives intact, and its own query
    # decodes back to the parameters.
    cmd = encode_command("crm.item.list", params)
    received = parse_str(encode_form({"cmd": {"k": cmd}}).decode("ascii"))["cmd"]["k"]
    assert received == cmd
    _, _, query = received.partition("?")
    assert ordered(parse_str(query)) == ordered(normalize(params))
