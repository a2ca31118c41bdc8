"""``batch`` as the server runs it, including the documented examples replayed."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator_support import api, make_emulator

TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating",
    "operating_reset_at",
}
SECTIONS = ["result", "result_error", "result_total", "result_next", "result_time"]

# -- the documented examples ----------------------------------------------------------------


async def test_docs_user_department_example() -> None:
    async with api() as a:
        status, body = await a.call(
            "batch",
            {
                "halt": 0,
                "cmd": {
                    "get_user": "user.current",
                    "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
                },
            },
        )
    assert status == 200
    assert list(body) == ["result", "time"]
    assert set(body["time"]) == TIME_KEYS
    section = body["result"]
    assert list(section) == SECTIONS
    user = section["result"]["get_user"]
    assert user["ID"] == "1"
    assert user["ACTIVE"] is True
    assert user["UF_DEPARTMENT"] == [1]
    assert section["result"]["get_department"] == [{"ID": "1", "NAME": "DEMO", "SORT": 500}]
    assert section["result_error"] == []
    assert section["result_total"] == {"get_department": 1}
    assert section["result_next"] == []
    assert set(section["result_time"]) == {"get_user", "get_department"}
    for entry in section["result_time"].values():
        assert set(entry) == TIME_KEYS


async def test_docs_all_failed_insufficient_scope() -> None:
    async with api(webhook_scopes=frozenset({"crm"})) as a:
        body = await a.batch(
            {
                "get_user": "user.current",
                "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
            }
        )
    scope_error = {"error": "insufficient_scope", "error_description": ""}
    assert body == {
        "result": [],
        "result_error": {"get_user": scope_error, "get_department": scope_error},
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }


async def test_docs_halted_insufficient_scope() -> None:
    async with api(webhook_scopes=frozenset({"crm"})) as a:
        body = await a.batch(
            {"get_user": "user.current", "get_department": "department.get?ID=1"}, halt=1
        )
    assert body["result_error"] == {
        "get_user": {"error": "insufficient_scope", "error_description": ""}
    }
    assert body["result"] == []
    assert body["result_time"] == []


async def test_top_level_insufficient_scope_is_401() -> None:
    async with api(webhook_scopes=frozenset({"crm"})) as a:
        status, body = await a.call("user.current")
    assert status == 401
    assert body["error"] == "insufficient_scope"
    assert "webhook token" in body["error_description"]


async def test_empty_list_batch() -> None:
    async with api() as a:
        response = await a.raw(
            "batch", json={"halt": 0, "cmd": {"leads": "crm.lead.list?filter[TITLE]=none"}}
        )
    text = response.text
    assert '"result":{"leads":[]}' in text
    body = json.loads(text)["result"]
    assert body["result_total"] == {"leads": 0}
    assert body["result_next"] == []


async def test_mixed_success_and_error_batch_shapes() -> None:
    emu = make_emulator(seed_leads=3)
    async with api(emu) as a:
        body = await a.batch(
            {"0": "crm.lead.get?ID=900", "1": "crm.lead.get?ID=901", "3": "crm.lead.get?ID=3"}
        )
    not_found = {"error": "", "error_description": "Not found"}
    # Failures at keys 0 and 1 make a list; the success at key 3 an object.
    assert body["result_error"] == [not_found, not_found]
    assert list(body["result"]) == ["3"]
    assert body["result"]["3"]["ID"] == "3"
    assert list(body["result_time"]) == ["3"]


async def test_list_cmd_all_succeeding_is_a_list() -> None:
    async with api() as a:
        body = await a.batch(["user.current", "user.current"])
    assert isinstance(body["result"], list)
    assert len(body["result"]) == 2
    assert isinstance(body["result_time"], list)


async def test_list_cmd_with_failure_in_the_middle() -> None:
    async with api() as a:
        body = await a.batch(["user.current", "crm.lead.get?id=77", "user.current"])
    assert set(body["result"]) == {"0", "2"}
    assert body["result_error"] == {"1": {"error": "", "error_description": "Not found"}}


# -- top-level parameters -------------------------------------------------------------------


async def test_cmd_and_halt_are_case_insensitive_and_halt_false_string_halts() -> None:
    async with api() as a:
        status, body = await a.call(
            "batch",
            {"HALT": "false", "Cmd": {"a": "crm.lead.get?id=5", "b": "user.current"}},
        )
    assert status == 200
    assert body["result"]["result"] == []
    assert list(body["result"]["result_error"]) == ["a"]


async def test_halt_zero_string_runs_everything() -> None:
    async with api() as a:
        body = await a.batch({"a": "crm.lead.get?id=5", "b": "user.current"}, halt="0")
    assert list(body["result"]) == ["b"]


async def test_empty_code_error_still_halts_and_skipped_commands_leave_no_trace() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        body = await a.batch(
            {"a": "crm.lead.add?fields[TITLE]=x", "b": "crm.lead.get?id=999", "c": "crm.lead.add"},
            halt=1,
        )
    assert list(body["result"]) == ["a"]
    assert list(body["result_error"]) == ["b"]
    assert list(body["result_time"]) == ["a"]
    assert emu.count("lead") == 1  # "c" never ran


async def test_more_than_50_commands_each_get_length_error() -> None:
    emu = make_emulator()
    cmd = {f"k{i}": f"crm.lead.add?fields[TITLE]=t{i}" for i in range(53)}
    async with api(emu) as a:
        body = await a.batch(cmd)
    assert len(body["result"]) == 50
    assert set(body["result_error"]) == {"k50", "k51", "k52"}
    assert body["result_error"]["k51"] == {
        "error": "ERROR_BATCH_LENGTH_EXCEEDED",
        "error_description": "Max batch length exceeded",
    }
    assert emu.count("lead") == 50


async def test_more_than_50_with_halt_stops_at_the_51st() -> None:
    cmd = [f"crm.lead.add?fields[TITLE]=t{i}" for i in range(55)]
    async with api() as a:
        body = await a.batch(cmd, halt=1)
    assert isinstance(body["result"], list)
    assert len(body["result"]) == 50
    assert body["result_error"] == {
        "50": {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        }
    }


async def test_non_string_entries_are_skipped_but_use_a_slot() -> None:
    cmd: list[Any] = [123, *(["user.current"] * 50)]
    async with api() as a:
        body = await a.batch(cmd)
    assert len(body["result"]) == 49  # keys 1..49; key 50 is past the limit
    assert "0" not in body["result"]
    assert list(body["result_error"]) == ["50"]


async def test_forbidden_methods_are_refused_per_command_exact_case() -> None:
    async with api() as a:
        body = await a.batch(
            {
                "b": "batch?cmd[x]=user.current",
                "d": "download",
                "u": "upload",
                "ok": "user.current",
                "B": "BATCH?cmd[x]=user.current",
            }
        )
    refused = {
        "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "error_description": "Method is not allowed for batch usage",
    }
    assert body["result_error"] == {"b": refused, "d": refused, "u": refused}
    # The check is case-sensitive; the lookup is not: "BATCH" runs a nested batch.
    assert body["result"]["B"]["result"]["x"]["ID"] == "1"


async def test_unknown_method_in_batch() -> None:
    async with api() as a:
        body = await a.batch({"x": "no.such.method"})
    assert body["result_error"] == {
        "x": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    }


async def test_hash_cuts_the_command() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        body = await a.batch({"a": "crm.lead.add?fields[TITLE]=A#B&fields[NAME]=n"})
    row = emu.records("lead")[0]
    assert row["TITLE"] == "A"
    assert row["NAME"] is None
    assert body["result"] == {"a": row["ID"]}


async def test_plus_is_a_space_and_percent_2b_a_plus() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        await a.batch({"a": "crm.lead.add?fields[TITLE]=+7 1&fields[NAME]=%2B7"})
    row = emu.records("lead")[0]
    assert (row["TITLE"], row["NAME"]) == (" 7 1", "+7")


async def test_form_encoded_batch_is_double_decoded() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        response = await a.raw(
            "batch",
            http="GET",
            params={
                "halt": "0",
                "cmd[get_user]": "user.current?",
                "cmd[get_department]": "department.get?ID="
                + "%24result%5Bget_user%5D%5BUF_DEPARTMENT%5D",
            },
        )
    body = response.json()["result"]
    assert body["result"]["get_department"][0]["NAME"] == "DEMO"


async def test_auth_param_in_sub_command_is_ignored() -> None:
    async with api() as a:
        body = await a.batch({"u": "user.current?auth=somebody-else"})
    assert body["result"]["u"]["ID"] == "1"


# -- substitution ---------------------------------------------------------------------------


async def oauth_batch(a: Any, cmd: Any) -> dict[str, Any]:
    """A batch on the OAuth route (app options need an application), as its inner result."""
    token = a.emulator.issue_oauth_token()["access_token"]
    response = await a.client.post("/rest/batch", json={"cmd": cmd, "auth": token})
    assert response.status_code == 200, response.text
    section: dict[str, Any] = response.json()["result"]
    return section


async def test_whole_value_reference_keeps_the_type() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        # app.option.set stores any value as given, so it shows what substitution produced.
        body = await oauth_batch(
            a,
            {
                "add": "crm.lead.add?fields[TITLE]=first",
                "get": "crm.lead.get?id=$result[add]",
                "early": "app.option.set?options[early]=$result[get_user][ID]",
                "get_user": "user.current",
                "dept": "department.get?ID=$result[get_user][UF_DEPARTMENT]",
                "seen": "app.option.get?option=early",
            },
        )
    assert body["result"]["get"]["TITLE"] == "first"
    # "early" ran before get_user: the whole value became the entire result map so far.
    early = body["result"]["seen"]
    assert set(early) == {"add", "get"}
    assert early["add"] == body["result"]["add"]
    # An array passes whole: ID=[1].
    assert body["result"]["dept"] == [{"ID": "1", "NAME": "DEMO", "SORT": 500}]


async def test_whole_value_with_no_earlier_result_is_an_empty_array() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        body = await oauth_batch(
            a,
            {
                "a": "app.option.set?options[x]=$result[nothing][ID]",
                "b": "app.option.get?option=x",
            },
        )
    assert body["result"]["b"] == []


async def test_embedded_reference_splices_strings_and_numbers_and_eats_trailing_text() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        await a.batch(
            {
                "u": "user.current",
                "a": "crm.lead.add?fields[TITLE]=Lead for $result[u][NAME] now",
                "b": "crm.lead.add?fields[TITLE]=ID:$result[u][ID]!",
                "c": "crm.lead.add?fields[TITLE]=$result[a],$result[b]",
                "d": "crm.lead.add?fields[TITLE]=x $result[u][UF_DEPARTMENT] y",
                "e": "crm.lead.add?fields[TITLE]=x $result[u][ACTIVE]",
                "f": "crm.lead.add?fields[TITLE]=x $result[zz][ID]",
                "g": "crm.lead.add?fields[TITLE]=$RESULT[u][NAME][0] $result_next[u][NAME]",
                "h": "crm.lead.add?fields[TITLE]=$result $result[]",
            }
        )
    titles = [r["TITLE"] for r in emu.records("lead")]
    assert titles == [
        "Lead for John now",
        "ID:1",
        "1",  # one token: a's value; b is lost
        "x $result[u][UF_DEPARTMENT] y",  # arrays stay literal
        "x $result[u][ACTIVE]",  # bools stay literal
        "x $result[zz][ID]",  # unknown command: the map is an array, literal stays
        "J John",  # case-insensitive name; string offset; $result_next == $result
        "$result $result[]",  # no path group: left alone
    ]


async def test_next_total_time_error_maps() -> None:
    emu = make_emulator(seed_leads=120)
    async with api(emu) as a:
        body = await a.batch(
            {
                "l": "crm.lead.list?select[]=ID",
                "bad": "crm.lead.get?id=99999",
                "n": "crm.lead.list?select[]=ID&start=$next[l]",
                "t": "crm.lead.add?fields[TITLE]=$total[l]",
                "e": "crm.lead.add?fields[TITLE]=E$error[bad][error_description]",
                "d": "crm.lead.add?fields[NAME]=$time[l][date_start]",
            }
        )
    assert body["result_next"] == {"l": 50, "n": 100}
    assert body["result"]["n"][0]["ID"] == "51"
    rows = emu.records("lead", {">ID": 120})
    assert rows[0]["TITLE"] == "120"
    assert rows[1]["TITLE"] == "ENot found"
    assert rows[2]["NAME"] == body["result_time"]["l"]["date_start"]


async def test_missing_last_key_gives_the_parent() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        body = await a.batch(
            {
                "u": "user.current",
                "d": "department.get?ID=$result[u][UF_DEPARTMENT][7]",
            }
        )
    # [7] is missing: the whole value becomes UF_DEPARTMENT itself, i.e. [1].
    assert body["result"]["d"][0]["ID"] == "1"


async def test_reference_to_failed_command_without_halt() -> None:
    emu = make_emulator(seed_leads=2)
    async with api(emu) as a:
        body = await a.batch(
            {
                "ok": "crm.lead.get?id=1",
                "bad": "crm.lead.get?id=500",
                "dep": "crm.lead.update?id=$result[bad][ID]&fields[TITLE]=changed",
            }
        )
    # The whole result map is passed as the ID; intval() of a non-empty array is 1, so the
    # update silently hits lead 1: "usually fails, or worse, succeeds".
    assert body["result"]["dep"] is True
    assert emu.records("lead", {"ID": 1})[0]["TITLE"] == "changed"


async def test_keys_are_not_substituted() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        await a.batch(
            {
                "u": "user.current",
                "a": "crm.lead.add?fields[$result[u][ID]]=1&fields[TITLE]=k",
            }
        )
    assert emu.records("lead")[0]["TITLE"] == "k"


async def test_batch_time_and_result_time_present() -> None:
    async with api() as a:
        status, body = await a.call("batch", {"cmd": {"u": "user.current"}})
    assert status == 200
    assert set(body["time"]) == TIME_KEYS
    assert set(body["result"]["result_time"]["u"]) == TIME_KEYS


async def test_cmd_not_an_array_gives_empty_sections() -> None:
    async with api() as a:
        body = await a.batch("user.current")
    assert body == {s: [] for s in SECTIONS}
