"""The command model: every input shape users write, and clear errors for bad input."""

from __future__ import annotations

from typing import Any

import pytest

from bitrix_batch import (
    Command,
    DuplicateKeyError,
    InvalidCommandError,
    InvalidReferenceError,
    MethodPolicy,
    PlanError,
    Ref,
    UnknownReferenceError,
)
from bitrix_batch._commands import parse_commands
from bitrix_batch._refs import Token

READS = MethodPolicy().reads_only


def parse(cmd: Any) -> list[Any]:
    return parse_commands(cmd, READS)


def test_all_input_shapes_give_the_same_entry() -> None:
    """String, tuple, list, BX24 mapping and Command forms are equivalent."""
    shapes = [
        "crm.lead.get?id=5",
        ("crm.lead.get", {"id": "5"}),
        ["crm.lead.get", {"id": "5"}],
        {"method": "crm.lead.get", "params": {"id": "5"}},
        Command("crm.lead.get", {"id": "5"}),
    ]
    entries = parse({f"k{i}": s for i, s in enumerate(shapes)})
    assert {(e.method, str(e.params)) for e in entries} == {("crm.lead.get", "{'id': '5'}")}
    assert all(e.read for e in entries)


def test_seed_string_form_is_parsed_with_php_rules() -> None:
    """The seed's department.get string yields a whole-value reference to get_user."""
    entries = parse(
        {
            "get_user": "user.current",
            "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
        }
    )
    dep = entries[1]
    assert dep.deps == (0,)
    [site] = dep.sites
    assert site.location == ("ID",)
    assert site.whole
    assert site.parts == (Token("result", "get_user", ("UF_DEPARTMENT", "0")),)


def test_sequence_keys_are_positions() -> None:
    """A list of commands is keyed 0..n-1 and may refer to positions."""
    entries = parse(["user.current", ("department.get", {"ID": Ref(0)["UF_DEPARTMENT"]})])
    assert [e.key for e in entries] == [0, 1]
    assert entries[1].deps == (0,)


def test_embedded_reference_keeps_the_text_around_it() -> None:
    """A token inside a longer string is an embedded reference."""
    title = f"Lead for {Ref('u')['NAME']}"
    [_, e] = parse({"u": "user.current", "l": ("crm.lead.add", {"fields": {"TITLE": title}})})
    [site] = e.sites
    assert site.location == ("fields", "TITLE")
    assert site.parts == ("Lead for ", Token("result", "u", ("NAME",)))
    assert not site.whole
    assert not e.read


def test_references_deep_inside_lists() -> None:
    """References are found at any depth, in lists too."""
    params = {"filter": {"ID": [1, Ref("a")["ID"]]}}
    [_, e] = parse({"a": "user.current", "b": ("user.get", params)})
    assert e.sites[0].location == ("filter", "ID", 1)


@pytest.mark.parametrize(
    ("cmd", "error", "text"),
    [
        ({"a": "user.current", 5: "x.y", "5": "x.z"}, DuplicateKeyError, "'5'"),
        ({"a": "department.get?ID=$result[nobody][ID]"}, UnknownReferenceError, "'nobody'"),
        ({"a": "batch?cmd[x]=user.current"}, InvalidCommandError, "not allowed"),
        ({"a": "Download"}, InvalidCommandError, "not allowed"),
        ({"a": ("upload", {})}, InvalidCommandError, "not allowed"),
        ({"a": "crm.lead.add?fields[TITLE]=a#b"}, InvalidCommandError, "%23"),
        ({"a": "crm lead?x=1"}, InvalidCommandError, "not a REST method"),
        ({"a": ""}, InvalidCommandError, "not a REST method"),
        ({"a": ("crm.lead.add", ["x"])}, InvalidCommandError, "mapping"),
        ({"a": ("crm.lead.add", {"f": object()})}, InvalidCommandError, "object"),
        ({"a": {"params": {}}}, InvalidCommandError, "'method'"),
        ({"a": 42}, InvalidCommandError, "int"),
        ({"": "user.current"}, InvalidCommandError, "empty"),
        ({"a": "user.current", "b": "x.y?v=ID:$result[a][ID]!"}, InvalidReferenceError, "swallow"),
        ({"a": "x.y", "b": ("x.y", {"v": Ref("a")["a b"]})}, InvalidReferenceError, "'a b'"),
    ],
)
def test_bad_input_is_refused_with_a_specific_error(cmd: Any, error: type, text: str) -> None:
    """Each kind of bad input raises its own PlanError naming the problem."""
    with pytest.raises(error, match=text) as info:
        parse(cmd)
    assert isinstance(info.value, PlanError)
    assert isinstance(info.value, ValueError)


def test_errors_name_the_key_and_method() -> None:
    """A message names the command key and its method."""
    with pytest.raises(UnknownReferenceError) as info:
        parse({"get_dept": "department.get?ID=$result[get_usr][ID]"})
    assert str(info.value) == (
        "command 'get_dept' (department.get) refers to unknown command 'get_usr'"
    )


def test_cmd_must_be_a_mapping_or_sequence() -> None:
    """A bare string is not a command list."""
    with pytest.raises(InvalidCommandError):
        parse("user.current")


def test_method_policy_classifies_reads() -> None:
    """Reads by name; writes by default; callers can extend either way."""
    assert all(map(READS, ["crm.lead.list", "USER.CURRENT", "tasks.task.getFields"]))
    assert not any(map(READS, ["crm.lead.add", "crm.lead.update", "im.notify"]))
    policy = MethodPolicy.of(reads=["im.counters"], writes=["crm.lead.get"])
    assert policy.reads_only("IM.COUNTERS")
    assert not policy.reads_only("crm.lead.get")


def test_command_parse_reads_the_seed_string_form() -> None:
    """Command.parse splits method and query with PHP's parse_str rules."""
    cmd = Command.parse("crm.lead.add?fields[TITLE]=a+b&fields[PHONE][0][VALUE]=%2B7")
    fields = {"TITLE": "a b", "PHONE": {0: {"VALUE": "+7"}}}
    assert cmd == Command("crm.lead.add", {"fields": fields})
    with pytest.raises(InvalidCommandError, match="%23"):
        Command.parse("crm.lead.add?fields[TITLE]=#1")


def test_an_integer_too_long_to_write_is_refused_before_sending() -> None:
    """Python cannot write an int of more than its digit limit as text: refused at plan time,
    naming the key and the parameter, not discovered while the job runs."""
    import sys

    digits = sys.get_int_max_str_digits() or 4300
    with pytest.raises(InvalidCommandError, match=r"'a'.*\[n\] is an integer too long"):
        parse_commands({"a": ("crm.lead.add", {"n": 10 ** (digits + 1)})}, READS)


def test_dates_and_datetimes_travel_as_iso_8601() -> None:
    """date -> 2026-12-02; datetime -> to the second, with its offset when it has one."""
    import datetime as dt

    from bitrix_batch._commands import parse_call

    tz = dt.timezone(dt.timedelta(hours=3))
    params = {"filter": {
        ">=DATE_CREATE": dt.datetime(2026, 12, 2, 14, 5, 10, 999, tzinfo=tz),
        "<BIRTHDATE": dt.date(2000, 1, 31),
        "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
    }}
    [entry] = parse_commands({"a": ("crm.contact.list", params)}, READS)
    assert entry.params == {"filter": {
        ">=DATE_CREATE": "2026-12-02T14:05:10+03:00",
        "<BIRTHDATE": "2000-01-31",
        "naive": "2026-01-02T03:04:05",
    }}
    assert parse_call("crm.contact.list", params)["filter"]["<BIRTHDATE"] == "2000-01-31"
