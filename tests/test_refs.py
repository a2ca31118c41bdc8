"""References: the token syntax and the server's path-walking rules."""

from __future__ import annotations

import pytest

from bitrix_batch import Ref
from bitrix_batch._refs import MISSING, Token, find_tokens, resolve_path


def test_ref_renders_the_documented_token() -> None:
    """A typed Ref renders exactly the token the docs show."""
    assert str(Ref("get_user")["UF_DEPARTMENT"][0]) == "$result[get_user][UF_DEPARTMENT][0]"
    assert str(Ref.next("list")) == "$next[list]"
    assert str(Ref.total(3)) == "$total[3]"
    assert str(Ref.time("a")["duration"]) == "$time[a][duration]"
    assert str(Ref.error("a")["error"]) == "$error[a][error]"


def test_ref_rejects_bad_parts() -> None:
    """A Ref takes only str/int keys and path items."""
    with pytest.raises(TypeError):
        Ref(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Ref("a")[True]
    with pytest.raises(ValueError, match="kind"):
        Ref("a", (), "result_next")


def test_tokens_are_found_case_insensitively() -> None:
    """Map names match in any case, as on the server."""
    [(start, end, token)] = find_tokens("x $RESULT[a][b] y")
    assert token == Token("result", "a", ("b",))
    assert (start, end) == (2, 15)


def test_a_run_without_groups_is_no_reference() -> None:
    """`$total` with no [...] is left alone by the server, and by us."""
    assert find_tokens("costs $total or $results") == []


@pytest.mark.parametrize(
    "text",
    [
        "ID:$result[u][ID]!",  # the server swallows the '!'
        "$result[a][ID],$result[b][ID]",  # one token for the server: b is lost
        "$result_next[x]",  # resolves as $result[x] on the server
        "$result[a][]",
    ],
)
def test_runs_the_server_would_mangle_are_flagged(text: str) -> None:
    """A token the server would read differently from how it looks is reported."""
    [(_, _, token)] = find_tokens(text)
    assert isinstance(token, str)


def test_path_walk_follows_php_isset() -> None:
    """Walking stops at missing and null keys; lists take canonical indexes only."""
    value = {"A": [10, 20], "B": None, "C": {"1": "x", "01": "y"}}
    assert resolve_path(value, ("A", "1")) == 20
    assert resolve_path(value, ("A", "01")) is MISSING
    assert resolve_path(value, ("A", "-0")) is MISSING
    assert resolve_path(value, ("A", "2")) is MISSING
    assert resolve_path(value, ("B",)) is MISSING
    assert resolve_path(value, ("C", "1")) == "x"
    assert resolve_path(value, ("C", "01")) == "y"
    assert resolve_path(value, ()) is value


def test_string_offsets_give_one_byte() -> None:
    """A numeric step into a string yields one character, as PHP's string offsets do."""
    assert resolve_path({"NAME": "John"}, ("NAME", "0")) == "J"
    assert resolve_path({"NAME": "John"}, ("NAME", "-1")) == "n"
    assert resolve_path({"NAME": "John"}, ("NAME", "9")) is MISSING
    assert resolve_path({"NAME": "John"}, ("NAME", "x")) is MISSING
    # Half of a multi-byte character is garbage: unresolved.
    assert resolve_path({"NAME": "Иван"}, ("NAME", "0")) is MISSING


def test_scalars_cannot_be_walked_into() -> None:
    """isset() on an offset of a number or bool is false."""
    assert resolve_path({"ID": 5}, ("ID", "0")) is MISSING
    assert resolve_path({"OK": True}, ("OK", "0")) is MISSING
