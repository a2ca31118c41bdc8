"""The executor against httpx.MockTransport: what the client sends, and what it reports."""

from __future__ import annotations

import itertools
import json
import logging
import math
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from bitrix_batch import (
    AuthError,
    BitrixClient,
    CommandErrors,
    InvalidCommandError,
    LeakyBucket,
    RateLimit,
    Ref,
    RetryPolicy,
    SkipReason,
    Status,
    TransportError,
)
from bitrix_batch._encoding import parse_str
from tests.fake_bitrix import WEBHOOK, Fail, FakeBitrix, flaky
from tests.fake_clock import FakeClock


def lead_store() -> FakeBitrix:
    """A fake with leads: add returns a new ID, get returns the lead."""
    ids = itertools.count(1)
    leads: dict[int, dict[str, Any]] = {}

    def add(params: dict[str, Any]) -> int:
        new = next(ids)
        leads[new] = dict(params.get("fields", {}))
        return new

    def get(params: dict[str, Any]) -> dict[str, Any]:
        lead_id = int(params["id"])
        if lead_id not in leads:
            raise Fail("", "Not found")
        return {"ID": str(lead_id), **leads[lead_id]}

    def fail(params: dict[str, Any]) -> Any:
        raise Fail("ERROR_CORE", "boom")

    return FakeBitrix(
        methods={
            "crm.lead.add": add,
            "crm.lead.get": get,
            "crm.lead.update": lambda p: True,
            "user.current": lambda p: {"ID": "1", "NAME": "John", "UF_DEPARTMENT": [1, 7]},
            "department.get": lambda p: [{"ID": str(p["ID"]), "NAME": "DEMO"}],
            "user.search": lambda p: [],
            "fail.now": fail,
        }
    )


def client_for(fake: FakeBitrix, **kwargs: Any) -> BitrixClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy.testing())
    return BitrixClient(WEBHOOK, transport=fake.transport(), **kwargs)


async def test_1234_independent_commands_take_25_requests() -> None:
    """N independent commands take ceil(N/50) requests of at most 50, run concurrently."""
    fake = lead_store()
    async with client_for(fake, max_concurrency=8) as client:
        cmd = [("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}) for i in range(1234)]
        result = await client.batch(cmd)
    assert len(fake.batches) == math.ceil(1234 / 50) == 25
    assert max(len(b) for b in fake.batches) == 50
    assert list(result.result) == list(range(1234))
    assert sorted(result.result.values()) == list(range(1, 1235))
    assert 1 < fake.max_in_flight <= 8
    result.raise_for_errors()


async def test_seed_example_is_one_request_resolved_by_the_server() -> None:
    """user.current + department.get on its result go in one request, the token intact."""
    fake = lead_store()
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "get_user": "user.current",
                "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
            }
        )
    [cmd] = fake.batches
    assert cmd["get_department"] == (
        "department.get?ID=%24result%5Bget_user%5D%5BUF_DEPARTMENT%5D%5B0%5D"
    )
    assert result.result["get_department"] == [{"ID": "1", "NAME": "DEMO"}]


async def test_cross_chunk_reference_is_substituted_with_its_type() -> None:
    """A whole-value reference to an earlier request keeps its type (an array stays one)."""
    fake = lead_store()
    cmd: dict[str, Any] = {"me": "user.current"}
    cmd.update({f"a{i}": ("crm.lead.add", {"fields": {"TITLE": "x"}}) for i in range(49)})
    cmd["tag"] = ("crm.lead.update", {"id": 1, "fields": {"UF_DEPTS": Ref("me")["UF_DEPARTMENT"]}})
    cmd["title"] = ("crm.lead.update", {"id": 1, "fields": {"TITLE": f"for {Ref('me')['NAME']}"}})
    async with client_for(fake) as client:
        result = await client.batch(cmd)
    assert result.ok
    first, second = fake.batches
    assert "tag" not in first
    assert parse_str(second["tag"].split("?", 1)[1]) == {
        "id": "1",
        "fields": {"UF_DEPTS": {0: "1", 1: "7"}},
    }
    assert parse_str(second["title"].split("?", 1)[1])["fields"] == {"TITLE": "for John"}


async def test_a_dependent_of_a_failed_command_is_never_sent() -> None:
    """Rule 4: a write whose producer failed is reported and never sent."""
    fake = lead_store()
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "bad": "fail.now",
                "upd": ("crm.lead.update", {"id": Ref("bad")["ID"]}),
                "other": "crm.lead.add",
            }
        )
    assert "upd" not in fake.sent_keys()
    assert result.result_error["bad"].code == "ERROR_CORE"
    assert result.skipped["upd"].reason is SkipReason.DEPENDENCY_FAILED
    assert result.result["other"] == 1
    assert result["upd"].status is Status.SKIPPED


async def test_an_unresolvable_path_is_never_sent() -> None:
    """Rule 4: user.search found nobody, so [0][ID] does not exist: the add is not sent."""
    fake = lead_store()
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "user_by_name": "user.search?NAME=Test2",
                "user_lead": "crm.lead.add?fields[ASSIGNED_BY_ID]=$result[user_by_name][0][ID]",
            }
        )
    assert fake.sent_keys() == ["user_by_name"]
    skip = result.skipped["user_lead"]
    assert skip.reason is SkipReason.UNRESOLVED_REFERENCE
    assert "user_lead" in str(skip)
    with pytest.raises(CommandErrors, match="user_lead"):
        result.raise_for_errors()


async def test_a_read_that_ran_on_garbage_is_discarded() -> None:
    """Rule 3: a read sharing a request with a failed producer has its result thrown away."""
    fake = lead_store()
    fake.methods["department.get"] = lambda p: [{"ID": "garbage"}]
    async with client_for(fake) as client:
        result = await client.batch(
            {"bad": "fail.now", "dep": ("department.get", {"ID": Ref("bad")["UF_DEPARTMENT"]})}
        )
    assert fake.sent_keys() == ["bad", "dep"]  # one request: the server ran both
    assert "dep" not in result.result
    assert result.skipped["dep"].reason is SkipReason.DEPENDENCY_FAILED
    assert "discarded" in result.skipped["dep"].detail


async def test_halt_stops_the_whole_list() -> None:
    """halt=True: after the first failure nothing later in the caller's order runs."""
    fake = lead_store()
    cmd: list[Any] = ["crm.lead.add"] * 10 + ["fail.now"] + ["crm.lead.add"] * 60
    async with client_for(fake) as client:
        result = await client.batch(cmd, halt=True)
    assert len(fake.batches) == 1
    assert fake.requests[0][1]["halt"] == 1
    assert list(result.result) == list(range(10))
    assert list(result.result_error) == [10]
    assert set(result.skipped) == set(range(11, 71))
    assert {s.reason for s in result.skipped.values()} == {SkipReason.HALTED}


async def test_results_are_in_the_callers_order_with_int_keys() -> None:
    """List input gives int keys 0..n-1 in order, though chunks finish in any order."""
    fake = lead_store()
    async with client_for(fake) as client:
        result = await client.batch(["user.current", "crm.lead.add", "user.current"])
    assert list(result) == [0, 1, 2]
    assert result[1].result == 1


async def test_503_is_retried_and_counted_once() -> None:
    """A 503 QUERY_LIMIT_EXCEEDED ran nothing: the request is sent again."""
    fake = lead_store()
    fake.script = [
        httpx.Response(503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "x"})
    ]
    async with client_for(fake) as client:
        result = await client.batch(["crm.lead.add"])
    assert len(fake.batches) == 2
    assert result.result == {0: 1}


async def test_html_500_after_writes_is_not_resent() -> None:
    """An HTML 500 may come after the batch ran: writes are outcome-unknown, never re-sent."""
    fake = lead_store()
    fake.script = [httpx.Response(500, text="<html>Internal</html>")]
    async with client_for(fake) as client:
        result = await client.batch(["crm.lead.add", "crm.lead.add"])
    assert len(fake.batches) == 1
    assert set(result.unknown) == {0, 1}
    assert "outcome unknown" in str(result.unknown[0].uncertain)


async def test_html_500_for_reads_is_retried() -> None:
    """A batch of reads only is safe to repeat after an unknown outcome."""
    fake = lead_store()
    fake.script = [httpx.Response(502, text="<html>Bad gateway</html>")]
    async with client_for(fake) as client:
        result = await client.batch(["user.current", "user.current"])
    assert len(fake.batches) == 2
    assert result.ok


async def test_a_wrong_webhook_raises_and_hides_the_code() -> None:
    """401 before anything ran raises AuthError; the webhook code appears nowhere."""
    fake = lead_store()
    fake.script = [
        httpx.Response(
            401,
            json={"error": "INVALID_CREDENTIALS", "error_description": "Invalid credentials"},
        )
    ] * 3
    async with client_for(fake) as client:
        with pytest.raises(AuthError) as info:
            await client.batch(["user.current"])
        assert "s3cr3tc0de" not in repr(client)
    assert info.value.code == "INVALID_CREDENTIALS"
    assert "s3cr3tc0de" not in str(info.value)
    assert len(fake.requests) == 1


async def test_transport_errors_are_wrapped_without_the_secret() -> None:
    """A connection error becomes TransportError; its message never shows the webhook code."""
    fake = lead_store()
    fake.script = [httpx.ConnectError(f"cannot reach {WEBHOOK}batch")] * 3
    async with client_for(fake) as client:
        with pytest.raises(TransportError, match="gave up after 3 attempt") as info:
            await client.batch(["crm.lead.add"])
    assert "s3cr3tc0de" not in str(info.value)
    assert len(fake.requests) == 3  # connect errors ran nothing: retried up to the limit


async def test_form_body_double_encodes_commands() -> None:
    """body='form' sends PHP form encoding: the command strings are encoded twice."""
    fake = lead_store()
    async with client_for(fake, body="form") as client:
        await client.batch({"a": ("crm.lead.add", {"fields": {"TITLE": "a&b=c +7"}})})
    raw = fake.requests[0][1]
    assert raw["cmd"]["a"] == "crm.lead.add?fields%5BTITLE%5D=a%26b%3Dc+%2B7"


async def test_json_body_is_what_the_docs_show() -> None:
    """The JSON body has halt 0/1 and cmd as an object of command strings."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"result": {"result": {"a": 1}}, "time": {}})

    client = BitrixClient(WEBHOOK, transport=httpx.MockTransport(handler), rate_limit=None)
    async with client:
        await client.batch({"a": "crm.lead.add?fields[TITLE]=x"})
    assert json.loads(seen[0]) == {"halt": 0, "cmd": {"a": "crm.lead.add?fields%5BTITLE%5D=x"}}


async def test_call_returns_result_and_request_returns_paging() -> None:
    """call() gives the result; request() gives total and next too."""
    fake = lead_store()
    fake.methods["crm.lead.list"] = lambda p: {"rows": [{"ID": "1"}], "total": 120}
    async with client_for(fake) as client:
        assert await client.call("user.current") == {
            "ID": "1",
            "NAME": "John",
            "UF_DEPARTMENT": [1, 7],
        }
        page = await client.request("crm.lead.list", {"start": 0})
    assert page.result == [{"ID": "1"}]
    assert page.total == 120


async def test_call_refuses_references() -> None:
    """References only make sense inside a batch."""
    async with client_for(lead_store()) as client:
        with pytest.raises(InvalidCommandError, match="only work inside a batch"):
            await client.call("crm.lead.get", {"id": Ref("x")})


async def test_stream_yields_every_outcome() -> None:
    """stream() yields each command's outcome as it becomes final."""
    fake = lead_store()
    seen = []
    progress: list[tuple[int, int]] = []
    async with client_for(fake) as client, client.stream(
        [("crm.lead.add", {})] * 120, progress=lambda d, t: progress.append((d, t))
    ) as results:
        async for outcome in results:
            seen.append(outcome.key)
    assert sorted(seen) == list(range(120))
    assert progress[-1] == (120, 120)


async def test_bad_input_sends_nothing() -> None:
    """Planning errors are raised before any request."""
    fake = lead_store()
    async with client_for(fake) as client:
        with pytest.raises(InvalidCommandError):
            await client.batch({"a": "batch"})
    assert fake.requests == []


async def test_rate_limit_paces_requests_on_a_fake_clock() -> None:
    """With the standard bucket, 60 requests: 50 at once, then one per ~0.51 s."""
    fake = lead_store()
    clock = FakeClock()
    sent_at: list[float] = []
    inner = fake.handle

    async def timed(request: httpx.Request) -> httpx.Response:
        sent_at.append(clock())
        return await inner(request)

    client = BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(timed),
        clock=clock,
        sleep=clock.sleep,
        max_concurrency=60,
    )
    async with client:
        await client.batch([("crm.lead.add", {})] * (60 * 50))
    assert len(sent_at) == 60
    assert sent_at[:50] == [0.0] * 50
    assert sent_at[-1] == pytest.approx(10 * 0.5 / 0.98)


async def test_only_the_refused_command_is_resent() -> None:
    """A per-command QUERY_LIMIT_EXCEEDED re-sends that command alone, with its key."""
    fake = lead_store()
    fake.methods["crm.deal.add"] = flaky("QUERY_LIMIT_EXCEEDED", 77)
    async with client_for(fake) as client:
        result = await client.batch({"a": "crm.lead.add", "d": "crm.deal.add", "b": "crm.lead.add"})
    assert fake.batches[1].keys() == {"d"}
    assert result.result == {"a": 1, "d": 77, "b": 2}


async def test_a_method_over_its_operating_time_waits_alone() -> None:
    """A per-command OPERATION_TIME_LIMIT holds only that method until the hold ends."""
    fake = lead_store()
    fake.methods["crm.deal.add"] = flaky("OPERATION_TIME_LIMIT", 5)
    clock = FakeClock()
    sent: list[tuple[float, list[str]]] = []
    inner = fake.handle

    async def timed(request: httpx.Request) -> httpx.Response:
        response = await inner(request)
        sent.append((clock(), list(fake.batches[-1])))
        return response

    client = BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(timed),
        clock=clock,
        sleep=clock.sleep,
        rate_limit=None,
        max_concurrency=1,
        retry=RetryPolicy.testing(),
    )
    cmd: dict[str, Any] = {"deal": "crm.deal.add"}
    cmd.update({f"l{i}": "crm.lead.add" for i in range(60)})
    async with client:
        result = await client.batch(cmd)
    assert result.ok
    # The deal was refused in the first request; the leads went on at once; the deal was
    # re-sent alone once its default 300 s hold ended.
    assert sent[0][0] == 0.0
    assert sent[1] == (0.0, [f"l{i}" for i in range(49, 60)])
    assert sent[2] == (300.0, ["deal"])


async def test_internal_error_of_a_write_is_not_resent() -> None:
    """A per-command internal error may follow a partial write: unknown, not re-sent."""
    fake = lead_store()
    fake.methods["crm.deal.add"] = flaky("INTERNAL_SERVER_ERROR")
    fake.methods["crm.deal.get"] = flaky("INTERNAL_SERVER_ERROR", {"ID": "1"})
    async with client_for(fake) as client:
        result = await client.batch({"w": "crm.deal.add", "r": "crm.deal.get?id=1"})
    assert result.unknown["w"].error is not None
    assert result.unknown["w"].error.code == "INTERNAL_SERVER_ERROR"
    assert result.result["r"] == {"ID": "1"}
    assert [list(b) for b in fake.batches] == [["w", "r"], ["r"]]


async def test_request_log_lines_never_show_the_webhook_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each request is logged (DEBUG, logger bitrix_batch) without the webhook code."""
    fake = lead_store()
    with caplog.at_level(logging.DEBUG):
        async with client_for(fake) as client:
            await client.batch(["user.current"])
    lines = [r.getMessage() for r in caplog.records if r.name == "bitrix_batch"]
    assert lines[0] == "sending batch (1 command(s))"
    assert lines[1].startswith("batch answered 200 in ")
    assert len(lines) == 2
    assert "s3cr3tc0de" not in "\n".join(r.getMessage() for r in caplog.records)


async def test_httpx_log_lines_of_a_shared_client_never_show_the_webhook_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shared httpx client logs request URLs at INFO; the webhook code is masked in them."""
    fake = lead_store()
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=fake.transport()) as http:
            client = BitrixClient(WEBHOOK, http_client=http, rate_limit=None,
                                  retry=RetryPolicy.testing())
            await client.batch(["user.current"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request" in text
    assert "s3cr3tc0de" not in text
    assert "/rest/1/***/batch" in text


async def test_halt_after_an_unresolved_server_side_reference() -> None:
    """Rule 6: a read that ran on garbage counts as the failure: the write after it is never
    sent; a read the server ran in the same request is reported with its outcome (it ran)."""
    fake = lead_store()
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "u": "user.search?NAME=nobody",
                "d": "department.get?ID=$result[u][0][ID]",
                "r": "user.current",
                "w": "crm.lead.add",
            },
            halt=True,
        )
    assert [list(b) for b in fake.batches] == [["u", "d", "r"]]
    assert result.skipped["d"].reason is SkipReason.UNRESOLVED_REFERENCE
    assert result["r"].status is Status.OK
    assert result.skipped["w"].reason is SkipReason.HALTED
    assert list(result.result) == ["u", "r"]


async def test_top_level_429_waits_for_the_hold_then_retries() -> None:
    """A 429 for the whole batch ran nothing: the batch is held (300 s without a reset time),
    then sent again."""
    fake = lead_store()
    fake.script = [
        httpx.Response(
            429,
            json={"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"},
        )
    ]
    clock = FakeClock()
    client = BitrixClient(
        WEBHOOK,
        transport=fake.transport(),
        clock=clock,
        sleep=clock.sleep,
        rate_limit=None,
        retry=RetryPolicy.testing(),
    )
    async with client:
        result = await client.batch(["crm.lead.add"])
    assert result.result == {0: 1}
    assert len(fake.batches) == 2
    assert clock.now == pytest.approx(300.0)


async def test_two_clients_share_one_bucket() -> None:
    """One LeakyBucket passed to two clients paces their requests together."""
    clock = FakeClock()
    bucket = LeakyBucket(RateLimit(10, 1.0), clock=clock, sleep=clock.sleep, safety=0.0)
    sent: list[float] = []
    fake = lead_store()
    inner = fake.handle

    async def timed(request: httpx.Request) -> httpx.Response:
        sent.append(clock())
        return await inner(request)

    def make() -> BitrixClient:
        return BitrixClient(
            WEBHOOK, transport=httpx.MockTransport(timed), rate_limit=bucket,
            clock=clock, sleep=clock.sleep,
        )

    async with make() as a, make() as b, anyio.create_task_group() as tg:
        tg.start_soon(a.batch, [("crm.lead.add", {})] * 300)
        tg.start_soon(b.batch, [("crm.lead.add", {})] * 300)
    assert len(sent) == 12
    assert sorted(sent) == [0.0] * 10 + [1.0, 2.0]


async def test_next_total_and_error_references_across_requests() -> None:
    """$next, $total and $error resolve on the client from earlier requests' outcomes."""
    fake = lead_store()
    fake.methods["crm.lead.list"] = lambda p: [{"ID": "1"}]

    def run_batch_with_paging(payload: dict[str, Any]) -> dict[str, Any]:
        body = FakeBitrix.run_batch(fake, payload)
        if "list" in payload["cmd"]:
            body["result"]["result_next"] = {"list": 50}
            body["result"]["result_total"] = {"list": 120}
        return body

    fake.run_batch = run_batch_with_paging  # type: ignore[method-assign]
    async with client_for(fake) as client:
        result = await client.batch(
            {
                "list": "crm.lead.list",
                "bad": "fail.now",
                "note": (
                    "crm.lead.add",
                    {
                        "fields": {
                            "TITLE": f"next {Ref.next('list')} of {Ref.total('list')}",
                            "COMMENTS": Ref.error("bad")["error_description"],
                        }
                    },
                ),
            }
        )
    assert result.result_next == {"list": 50}
    note = next(b for b in fake.batches if "note" in b)["note"]
    assert parse_str(note.partition("?")[2])["fields"] == {
        "TITLE": "next 50 of 120",
        "COMMENTS": "boom",
    }


async def test_a_failing_progress_callback_stops_the_job_and_keeps_results() -> None:
    """The callback's own exception comes out, with the outcome of every command attached."""
    fake = lead_store()

    def progress(done: int, total: int) -> None:
        raise KeyError("my bug")

    async with client_for(fake, max_concurrency=1) as client:
        with pytest.raises(KeyError) as info:
            await client.batch([("crm.lead.add", {})] * 120, progress=progress)
    partial = info.value.bitrix_batch_result  # type: ignore[attr-defined]
    assert len(partial) == 120
    assert len(partial.result) == 50  # the first request ran; nothing more was sent
    assert len(fake.batches) == 1


async def test_a_batch_whose_method_became_held_is_handed_back() -> None:
    """A batch retried after its method went over budget is not held whole: its other
    commands go at once, the held method's commands wait for the hold."""
    fake = lead_store()
    fake.methods["crm.deal.add"] = flaky("OPERATION_TIME_LIMIT", 9)
    clock = FakeClock()
    inner = fake.handle
    sent: list[tuple[float, list[str]]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        cmd = list(json.loads(request.content)["cmd"])
        sent.append((clock(), cmd))
        if len(sent) == 2:  # the second batch: refused whole, to be retried
            await anyio.lowlevel.checkpoint()
            return httpx.Response(503, json={"error": "QUERY_LIMIT_EXCEEDED"})
        return await inner(request)

    client = BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        rate_limit=None,
        retry=RetryPolicy.testing(),
        max_concurrency=2,
    )
    cmd: dict[str, Any] = {"d0": "crm.deal.add"}
    cmd |= {f"x{i}": "crm.lead.add" for i in range(49)}
    cmd |= {"d1": "crm.deal.add"} | {f"y{i}": "crm.lead.add" for i in range(49)}
    async with client:
        result = await client.batch(cmd)
    assert result.ok
    # One batch ran and its deal was refused, which put crm.deal.add on hold; the other came
    # back with a 503, and its retry went at once without its deal; both deals went after
    # the hold.
    at, keys = sent[2]
    assert at == 0.0
    assert len(keys) == 49
    assert not any(k.startswith("d") for k in keys)
    later = [(t, k) for t, c in sent[3:] for k in c]
    assert sorted(k for _, k in later) == ["d0", "d1"]
    assert all(t == pytest.approx(300.0) for t, _ in later)


async def test_a_secret_inside_another_is_never_half_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two clients whose codes overlap ("c0de" inside "s3cr3tc0de"): log lines and reprs mask
    the longer code whole, not as its prefix plus ***."""
    other = BitrixClient("https://portal.example/rest/1/c0de/", transport=lead_store().transport())
    fake = lead_store()
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=fake.transport()) as http:
            client = BitrixClient(WEBHOOK, http_client=http, rate_limit=None)
            await client.batch(["user.current"])
    await other.aclose()
    assert "s3cr3t" not in caplog.text
    assert "/rest/1/***/batch" in caplog.text
