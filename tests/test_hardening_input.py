"""Hostile and ambiguous input: deep or self-containing parameters, PHP's input limits, and
text that only looks like a reference (`Literal`). Every refusal is a `PlanError` subclass
naming the key and method, before anything is sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bitrix_batch import (
    InvalidCommandError,
    InvalidReferenceError,
    Literal,
    PlanError,
    Ref,
    ServerLimits,
    SkipReason,
    Status,
    UnknownReferenceError,
)
from bitrix_batch._commands import (
    CommandReader,
    Entry,
    ServerSide,
    Unresolved,
    parse_call,
    parse_commands,
    render_command,
    render_direct,
)
from bitrix_batch._encoding import InputLimitError, http_build_query, parse_str
from bitrix_batch._methods import MethodPolicy
from bitrix_batch._refs import Token
from tests.test_client_emulator import client_for, emulator

READS = MethodPolicy().reads_only




def nested(depth: int, leaf: Any = "x", *, as_list: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def self_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"TITLE": "x"}
    d["self"] = d
    return d


def self_list() -> list[Any]:
    items: list[Any] = ["x"]
    items.append(items)
    return items


HOSTILE = {
    "dict 10,000 deep": lambda: nested(10_000),
    "list 10,000 deep": lambda: nested(10_000, as_list=True),
    "Ref 10,000 deep": lambda: nested(10_000, Ref("me")["ID"]),
    "date 10,000 deep": lambda: nested(10_000, dt.date(2026, 1, 2)),
    "Literal 10,000 deep": lambda: nested(10_000, Literal("x")),
    "dict containing itself": self_dict,
    "list containing itself": self_list,
}


# --- 1. deep and self-containing parameters -------------------------------------------------


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_parameters_are_refused_in_a_list(make: Any) -> None:
    cmd = {"me": "user.current", "add": ("crm.lead.add", {"fields": make()})}
    with pytest.raises(InvalidCommandError) as info:
        parse_commands(cmd, READS)
    assert info.value.key == "add"
    assert info.value.method == "crm.lead.add"
    assert "'add' (crm.lead.add)" in str(info.value)


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_parameters_are_refused_in_a_stream_and_a_direct_call(make: Any) -> None:
    reader = CommandReader(READS, lookback=None)
    reader.read("me", "user.current")
    with pytest.raises(InvalidCommandError) as info:
        reader.read("add", ("crm.lead.add", {"fields": make()}))
    assert info.value.key == "add"
    with pytest.raises(InvalidCommandError) as call:
        parse_call("crm.lead.add", {"fields": make()})
    # A direct call has no key: the message names the method once, not twice.
    assert str(call.value).startswith("command 'crm.lead.add': ")


def test_a_structure_that_contains_itself_is_named_as_such() -> None:
    with pytest.raises(InvalidCommandError, match=r"parameter \[fields\] contains itself"):
        parse_commands({"a": ("crm.lead.add", {"fields": self_dict()})}, READS)
    top: dict[str, Any] = {}
    top["again"] = top
    with pytest.raises(InvalidCommandError, match="the parameters contain itself"):
        parse_commands({"a": ("crm.lead.add", top)}, READS)


def test_deep_nesting_message_names_the_limit() -> None:
    with pytest.raises(InvalidCommandError) as info:
        parse_commands({"a": ("crm.lead.add", {"fields": nested(70)})}, READS)
    message = str(info.value)
    assert "max_input_nesting_level=64" in message
    assert "'fields'" in message


async def test_hostile_parameters_end_to_end_plan_batch_stream_and_call() -> None:
    emu = emulator()
    async with client_for(emu) as client:
        for make in HOSTILE.values():
            cmd = {"me": "user.current", "add": ("crm.lead.add", {"fields": make()})}
            with pytest.raises(InvalidCommandError):
                client.plan(cmd)
            with pytest.raises(InvalidCommandError):
                await client.batch(cmd)
            result = await client.batch(iter(list(cmd.items())))
            skip = result.skipped["add"]
            assert skip.reason is SkipReason.INVALID_COMMAND
            assert isinstance(skip.cause, PlanError)
            assert result["me"].status is Status.OK
            with pytest.raises(InvalidCommandError):
                await client.call("crm.lead.add", {"fields": make()})
    assert emu.count("lead") == 0


def test_a_deep_command_string_is_refused_not_silently_dropped() -> None:
    """The string form is read with parse_str; a name PHP would drop is refused."""
    name = "fields" + "[a]" * 65
    with pytest.raises(InvalidCommandError, match="max_input_nesting_level=64") as info:
        parse_commands({"s": f"crm.lead.add?{name}=x&fields[TITLE]=t"}, READS)
    assert info.value.key == "s"
    assert info.value.method == "crm.lead.add"
    deep = "fields" + "[a]" * 10_000
    with pytest.raises(InvalidCommandError):
        parse_commands({"s": f"crm.lead.add?{deep}=x"}, READS)


def test_the_encoder_refuses_deep_structures_without_recursion_error() -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        http_build_query({"a": nested(10_000)})
    with pytest.raises(ValueError, match="circular"):
        http_build_query({"a": self_dict()})


def test_a_resolved_value_too_deep_for_the_server_is_not_sent() -> None:
    """A value substituted by the client that would nest past the limit: never sent."""
    [_, entry] = parse_commands(
        {"u": "user.current", "a": ("crm.lead.add", {"fields": {"UF": Ref("u")}})}, READS
    )

    def resolve(depth: int) -> Any:
        return lambda token: nested(depth)

    assert "fields%5BUF%5D" in render_command(entry, resolve(60))
    with pytest.raises(Unresolved, match="nested too deeply"):
        render_command(entry, resolve(64))
    with pytest.raises(Unresolved, match="nested too deeply"):
        render_command(entry, resolve(5_000))  # deeper than Python's recursion limit


# --- 2. PHP's input limits ------------------------------------------------------------------


def test_nesting_is_counted_as_php_counts_bracket_groups() -> None:
    """64 bracket groups pass, 65 are refused (PHP's parse_str drops them)."""
    # {"fields": nested(64)} is fields[a]...[a] with 64 groups.
    parse_commands({"a": ("crm.lead.add", {"fields": nested(64)})}, READS)
    with pytest.raises(InvalidCommandError):
        parse_commands({"a": ("crm.lead.add", {"fields": nested(65)})}, READS)
    # What the server reads agrees: 64 groups survive parse_str, 65 vanish.
    assert parse_str("f" + "[a]" * 64 + "=x") != {}
    assert parse_str("f" + "[a]" * 65 + "=x") == {}


def test_more_values_than_max_input_vars_are_refused() -> None:
    ok = {f"F{i}": "v" for i in range(1000)}
    parse_commands({"a": ("crm.lead.add", {"fields": ok})}, READS)
    over = {f"F{i}": "v" for i in range(1001)}
    with pytest.raises(InvalidCommandError) as info:
        parse_commands({"a": ("crm.lead.add", {"fields": over})}, READS)
    message = str(info.value)
    assert "'a' (crm.lead.add)" in message
    assert "1,001" in message
    assert "max_input_vars (1,000)" in message
    # In a stream too (encoded at once), and for a string command.
    with pytest.raises(InvalidCommandError, match="max_input_vars"):
        CommandReader(READS, None).read("a", ("crm.lead.add", {"fields": over}))
    query = "&".join(f"fields[F{i}]=v" for i in range(1001))
    with pytest.raises(InvalidCommandError, match="max_input_vars"):
        parse_commands({"a": f"crm.lead.add?{query}"}, READS)


def test_none_and_empty_values_do_not_count_towards_max_input_vars() -> None:
    fields: dict[str, Any] = {f"F{i}": "v" for i in range(1000)}
    fields |= {f"N{i}": None for i in range(500)} | {f"E{i}": [] for i in range(500)}
    parse_commands({"a": ("crm.lead.add", {"fields": fields})}, READS)


def test_limits_are_configurable() -> None:
    over = {f"F{i}": "v" for i in range(1500)}
    cmd = {"a": ("crm.lead.add", {"fields": over, "deep": nested(80)})}
    with pytest.raises(InvalidCommandError):
        parse_commands(cmd, READS)
    limits = ServerLimits(max_nesting=100, max_input_vars=5000)
    [entry] = parse_commands(cmd, READS, limits=limits)
    assert entry.limits is limits
    CommandReader(READS, None, limits=limits).read("a", cmd["a"])
    with pytest.raises(InvalidCommandError, match="max_input_vars \\(10\\)"):
        parse_commands({"a": ("x.add", {"f": list(range(11))})}, READS,
                       limits=ServerLimits(max_input_vars=10))
    parse_commands(cmd, READS, limits=ServerLimits(max_nesting=100, max_input_vars=None))
    with pytest.raises(ValueError, match="max_nesting"):
        ServerLimits(max_nesting=10_000)  # deeper than the walks can safely go
    with pytest.raises(ValueError, match="max_input_vars"):
        ServerLimits(max_input_vars=0)


def test_direct_calls_check_max_input_vars_only_for_a_form_body() -> None:
    big = {"filter": {"ID": list(range(5000))}}
    assert parse_call("crm.lead.list", big)["filter"]["ID"][4999] == 4999  # JSON: no limit
    with pytest.raises(InvalidCommandError, match="max_input_vars"):
        parse_call("crm.lead.list", big, form=True)


def test_substituted_values_past_max_input_vars_are_not_sent() -> None:
    [_, entry] = parse_commands(
        {"l": "crm.lead.list", "a": ("crm.lead.get", {"ids": Ref("l")})}, READS
    )
    assert render_command(entry, lambda token: list(range(1000)))
    with pytest.raises(Unresolved, match="max_input_vars"):
        render_command(entry, lambda token: list(range(1001)))
    # A reference the server resolves is one value, whatever it becomes there.
    kept = render_command(entry, lambda t: ServerSide("$result[l]"))
    assert kept == "crm.lead.get?ids=%24result%5Bl%5D"


def test_parse_str_strict_raises_instead_of_dropping() -> None:
    with pytest.raises(InputLimitError) as info:
        parse_str("a=1&b=2&c=3", max_input_vars=2, strict=True)
    assert info.value.setting == "max_input_vars"
    assert info.value.limit == 2
    assert parse_str("a=1&b=2&c=3", max_input_vars=2) == {"a": "1", "b": "2"}
    with pytest.raises(InputLimitError):
        parse_str("a[b][c]=1", max_nesting=1, strict=True)


async def test_the_server_would_have_cut_the_command_it_is_refused_instead() -> None:
    """End to end: 1,200 fields would reach the emulator's parse_str as 1,000."""
    emu = emulator()
    fields = {"TITLE": "t"} | {f"UF_{i}": "v" for i in range(1200)}
    async with client_for(emu) as client:
        with pytest.raises(InvalidCommandError, match="max_input_vars"):
            await client.batch({"a": ("crm.lead.add", {"fields": fields})})
    assert emu.stats.requests == 0


# --- 3. literal text ------------------------------------------------------------------------


def test_literal_without_token_text_goes_in_a_batch_unchanged() -> None:
    [entry] = parse_commands(
        {"a": ("crm.lead.add", {"fields": {"TITLE": Literal("50% off + $5 & more")}})}, READS
    )
    assert not entry.direct
    command = render_command(entry, lambda t: None)
    assert parse_str(command.partition("?")[2]) == {"fields": {"TITLE": "50% off + $5 & more"}}


@pytest.mark.parametrize(
    "text",
    ["Price $total[x] incl. VAT", "$result[a][ID]", "ID:$result[u][ID]!", "$RESULT[x]"],
)
def test_literal_with_token_text_is_marked_direct_and_kept_out_of_batches(text: str) -> None:
    cmd = {"x": "user.current", "a": ("crm.lead.add", {"fields": {"TITLE": Literal(text)}})}
    for entry in (parse_commands(cmd, READS)[1], CommandReader(READS, None).read("a", cmd["a"])):
        assert entry.direct
        assert entry.deps == ()  # a Literal refers to nothing
        with pytest.raises(Unresolved, match="direct call"):
            render_command(entry, lambda t: None)
        assert render_direct(entry, lambda t: None) == {"fields": {"TITLE": text}}


def test_render_direct_resolves_refs_on_the_client() -> None:
    cmd = {
        "u": "user.current",
        "a": (
            "crm.lead.add",
            {"fields": {"TITLE": Literal("$total[x]"), "ASSIGNED_BY_ID": Ref("u")["ID"]}},
        ),
    }
    entry: Entry = parse_commands(cmd, READS)[1]
    assert entry.direct
    assert entry.deps == (0,)
    params = render_direct(entry, lambda token: "7")
    assert params == {"fields": {"TITLE": "$total[x]", "ASSIGNED_BY_ID": "7"}}
    with pytest.raises(Unresolved):
        render_direct(entry, lambda token: ServerSide("$result[u][ID]"))


def test_literal_in_a_direct_call_is_plain_text() -> None:
    assert parse_call("crm.lead.add", {"fields": {"TITLE": Literal("$result[a]")}}) == {
        "fields": {"TITLE": "$result[a]"}
    }
    with pytest.raises(TypeError):
        Literal(5)  # type: ignore[arg-type]


async def test_literal_text_reaches_the_server_byte_identical() -> None:
    emu = emulator()
    plain = "Grand total: 100 + 20% VAT = 120 #1 & done"
    tricky = "Price $total[x] incl. VAT"
    async with client_for(emu) as client:
        # A direct call: no substitution outside a batch.
        lead_id = await client.call("crm.lead.add", {"fields": {"TITLE": Literal(tricky)}})
        got = await client.call("crm.lead.get", {"id": lead_id})
        assert got["TITLE"] == tricky
        result = await client.batch(
            {
                "x": ("crm.lead.list", {"select": ["ID"]}),
                "plain": ("crm.lead.add", {"fields": {"TITLE": Literal(plain)}}),
                "tricky": ("crm.lead.add", {"fields": {"TITLE": Literal(tricky)}}),
            }
        )
        assert result["plain"].ok
        assert result["tricky"].ok
        # Read back from the portal: both reached it byte for byte (the tricky one sent on
        # its own, as a direct call, where nothing is substituted).
        titles = [r["TITLE"] for r in emu.records("lead")]
        assert titles.count(plain) == 1
        assert titles.count(tricky) == 2
        got = await client.call("crm.lead.get", {"id": result["tricky"].result})
        assert got["TITLE"] == tricky


def test_reference_like_text_is_refused_with_a_hint_today_guessed() -> None:
    """Upper-case map names are no Ref rendering: refused rather than guessed."""
    for text in ("Total $TOTAL[x] due", "$Result[x][ID]"):
        with pytest.raises(InvalidReferenceError) as info:
            parse_commands(
                {"x": "user.current", "a": ("crm.lead.add", {"fields": {"TITLE": text}})}, READS
            )
        message = str(info.value)
        assert "'a' (crm.lead.add)" in message
        assert "Ref(...)" in message
        assert "Literal(...)" in message


def test_malformed_reference_text_suggests_ref_or_literal() -> None:
    for text in ("ID:$result[u][ID]!", "$result_next[u]", "a $result[] b"):
        with pytest.raises(InvalidReferenceError, match=r"Literal\(\.\.\.\)"):
            parse_commands({"u": "user.current", "a": ("x.add", {"t": text})}, READS)


def test_unknown_reference_inside_text_suggests_literal() -> None:
    with pytest.raises(UnknownReferenceError, match=r"Literal\(\.\.\.\)") as info:
        parse_commands({"a": ("crm.lead.add", {"fields": {"TITLE": "Price $total[x] incl."}})},
                       READS)
    assert info.value.key == "a"
    # A whole-value reference written on purpose keeps its plain message.
    with pytest.raises(UnknownReferenceError) as whole:
        parse_commands({"a": ("crm.lead.get", {"id": "$result[x]"})}, READS)
    assert "Literal" not in str(whole.value)


def test_documented_string_references_still_work() -> None:
    entries = parse_commands(
        {
            "get_user": "user.current",
            "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
            "lead": ("crm.lead.add", {"fields": {"TITLE": "Lead for $result[get_user][NAME]"}}),
        },
        READS,
    )
    assert entries[1].deps == (0,)
    assert entries[2].deps == (0,)
    assert not any(e.direct for e in entries)
    token = Token("result", "get_user", ("UF_DEPARTMENT", "0"))
    assert entries[1].sites[0].parts == (token,)


# --- 4. wording -----------------------------------------------------------------------------


def test_messages_without_a_command_read_well() -> None:
    with pytest.raises(InvalidCommandError) as info:
        parse_commands("crm.lead.add", READS)
    assert str(info.value).startswith("the command list must be")
    with pytest.raises(InvalidCommandError) as key:
        parse_commands({1.5: "user.current"}, READS)  # type: ignore[arg-type]
    assert str(key.value) == "command key 1.5 is a float: command keys are str or int"
    with pytest.raises(InvalidCommandError) as method:
        parse_call(5, None)  # type: ignore[arg-type]
    assert str(method.value) == "the method must be a string, not int"
    with pytest.raises(InvalidCommandError) as params:
        parse_commands({"a": ("crm.lead.add", 5)}, READS)
    assert str(params.value) == (
        "command 'a' (crm.lead.add): the parameters must be a mapping, not int"
    )
    with pytest.raises(InvalidCommandError) as pkey:
        parse_commands({"a": ("crm.lead.add", {"fields": {1.5: "x"}})}, READS)
    assert "parameter key 1.5 at [fields] is a float" in str(pkey.value)


def test_errors_before_any_request_report_no_attempt() -> None:
    with pytest.raises(PlanError) as info:
        parse_commands({"a": ("crm.lead.add", {"x": nested(100)})}, READS)
    assert info.value.attempts == 0
    assert not info.value.may_have_run
