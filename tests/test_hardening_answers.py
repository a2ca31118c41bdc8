"""Hostile and careless answers: secrets echoed back, plain http, bad URLs, odd numbers,
deep JSON and redirects."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from bitrix_batch import (
    APIError,
    AuthError,
    BitrixClient,
    CommandErrors,
    InvalidResponseError,
    Literal,
    OAuth,
    Ref,
    RetryPolicy,
    SkipReason,
    Status,
    TransportError,
)
from bitrix_batch._auth import Webhook
from bitrix_batch._commands import Unresolved, parse_commands, render_direct
from bitrix_batch._errors import RedirectError
from bitrix_batch._logs import protect_logs
from bitrix_batch._methods import MethodPolicy
from bitrix_batch._response import as_float, as_int
from tests.fake_bitrix import WEBHOOK, FakeBitrix, store
from tests.fake_clock import FakeClock

CODE = "s3cr3tc0de"
#: A token with every character that encodes differently in a URL, a form and JSON.
TOKEN = "tok+en/with=odd chars~0123456789"
TOKEN_FORMS = (
    TOKEN,
    quote(TOKEN),
    quote(TOKEN, safe=""),
    quote_plus(TOKEN),
    quote_plus(TOKEN, safe="").replace("~", "%7E"),
    quote(TOKEN, safe="").lower(),
)


def client_for(fake: FakeBitrix | None, url: Any = WEBHOOK, **kw: Any) -> BitrixClient:
    """A client of `fake` (or of ``transport=``) on a fake clock, tried once."""
    clock = FakeClock()
    kw.setdefault("retry", RetryPolicy.testing())
    transport = kw.pop("transport") if fake is None else fake.transport()
    return BitrixClient(
        url,
        transport=transport,
        rate_limit=None,
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        **kw,
    )


def texts_of(exc: BaseException) -> str:
    """Everything a person may see of an exception."""
    parts = [str(exc), repr(exc), *getattr(exc, "__notes__", [])]
    for name in ("description", "reason", "body", "code", "location"):
        parts.append(str(getattr(exc, name, "")))
    parts.append(repr(getattr(exc, "extra", "")))
    return "\n".join(parts)


def oauth(**kw: Any) -> OAuth:
    return OAuth("https://portal.example/rest/", access_token=TOKEN, **kw)


# --- 1. secrets echoed back by the server -------------------------------------------------


async def test_a_404_page_repeating_the_path_is_redacted() -> None:
    fake = store()
    page = f"<html><p>/rest/1/{CODE}/batch was not found ({quote(CODE)})</p></html>"
    fake.script = [httpx.Response(404, text=page, headers={"content-type": "text/html"})] * 3
    async with client_for(fake) as client:
        with pytest.raises(InvalidResponseError) as info:
            await client.call("user.current")
    assert CODE not in texts_of(info.value)
    assert "***" in info.value.body


async def test_a_500_on_a_write_gives_a_redacted_outcome_unknown() -> None:
    fake = store()
    said = {"error": "INTERNAL_SERVER_ERROR", "error_description": f"fatal in /rest/1/{CODE}/"}
    fake.script = [httpx.Response(500, json=said)]
    async with client_for(fake) as client:
        result = await client.batch([("crm.lead.add", {"fields": {"TITLE": "x"}})])
    (outcome,) = result.values()
    assert outcome.status is Status.UNKNOWN
    assert outcome.uncertain is not None
    assert CODE not in texts_of(outcome.uncertain)
    with pytest.raises(CommandErrors) as info:
        result.raise_for_errors()
    assert CODE not in texts_of(info.value)


@pytest.mark.parametrize("form", TOKEN_FORMS)
async def test_a_401_quoting_the_token_is_redacted(form: str) -> None:
    fake = store()
    body = {
        "error": "invalid_token",
        "error_description": f"the token {form} is not valid",
        "token": form,
    }
    fake.script = [httpx.Response(401, json=body)]
    async with client_for(fake, oauth()) as client:
        with pytest.raises(AuthError) as info:
            await client.call("user.current")
    seen = texts_of(info.value)
    assert TOKEN not in seen
    assert form not in seen
    assert "***" in info.value.description


async def test_a_command_error_quoting_the_token_is_redacted() -> None:
    fake = store()
    answer = {
        "result": {
            "result": {"0": {"ID": "1"}},
            "result_error": {
                "1": {"error": "ERROR_CORE", "error_description": f"auth={quote_plus(TOKEN)}"}
            },
            "result_total": [],
            "result_next": [],
            "result_time": [],
        },
        "time": {},
    }
    fake.script = [httpx.Response(200, json=answer)]
    async with client_for(fake, oauth()) as client:
        result = await client.batch(["user.current", "user.current"])
    assert result[0].status is Status.OK
    error = result.result_error[1]
    assert quote_plus(TOKEN) not in texts_of(error)
    assert error.description == "auth=***"
    with pytest.raises(CommandErrors) as info:
        result.raise_for_errors()
    assert quote_plus(TOKEN) not in texts_of(info.value)


def test_child_loggers_of_httpx_and_httpcore_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    secret = "chi1d+logger/secret= x"
    protect_logs([secret])
    with caplog.at_level(logging.DEBUG):
        for name in ("httpcore.http11", "httpcore.connection", "httpx._client", "httpcore.new"):
            logging.getLogger(name).debug("Location: %s and %s", secret, quote(secret, safe=""))
    assert len(caplog.records) == 4
    assert secret not in caplog.text
    assert quote(secret, safe="") not in caplog.text
    assert caplog.text.count("***") == 8


async def test_an_oauth_client_secret_never_reaches_httpx_info_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_secret = "cl+ient/sec=ret value"
    refresh = "refr+esh/tok=en 1"
    calls: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if request.url.host == "oauth.example":
            return httpx.Response(
                200, json={"access_token": "new-access-0123456789", "refresh_token": "r2" * 10}
            )
        auth = json.loads(request.content).get("auth")
        if auth == TOKEN:
            return httpx.Response(401, json={"error": "expired_token"})
        return httpx.Response(200, json={"result": {"ID": "1"}, "time": {}})

    creds = OAuth(
        "https://portal.example/rest/",
        access_token=TOKEN,
        refresh_token=refresh,
        client_id="app.1",
        client_secret=client_secret,
        oauth_url="https://oauth.example/oauth/token/",
    )
    with caplog.at_level(logging.INFO):
        async with BitrixClient(
            creds, transport=httpx.MockTransport(handle), rate_limit=None
        ) as client:
            assert await client.call("user.current") == {"ID": "1"}
    assert any("oauth.example" in c for c in calls)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert any("oauth.example" in line for line in lines), lines
    for form in (client_secret, quote_plus(client_secret), refresh, quote_plus(refresh)):
        assert form not in caplog.text


# --- a real loopback server: redirects, and httpcore's DEBUG lines -------------------------


class _Redirecting(BaseHTTPRequestHandler):
    location = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(301)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_a_redirect_fails_at_once_and_its_location_is_masked_in_debug_logs(
    redirecting: str, caplog: pytest.LogCaptureFixture
) -> None:
    code = "redir3ct+c0de=x"
    _Redirecting.location = f"https://portal.example/rest/1/{quote(code, safe='')}/batch"
    url = f"{redirecting}/rest/1/{code}/"
    with caplog.at_level(logging.DEBUG):
        async with BitrixClient(url, rate_limit=None, retry=RetryPolicy.testing(5)) as client:
            with pytest.raises(RedirectError) as info:
                await client.batch([("crm.lead.add", {"fields": {"TITLE": "x"}})] * 3)
    assert info.value.attempts == 1
    assert "the portal redirects to https://portal.example: use that URL" in str(info.value)
    assert any(r.name.startswith("httpcore.") for r in caplog.records)
    assert "location" in caplog.text.lower()
    for form in (code, quote(code, safe=""), quote(code)):
        assert form not in caplog.text
        assert form not in texts_of(info.value)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_runs_nothing_and_is_not_retried(status: int) -> None:
    fake = store()
    where = f"https://new.example:8443/rest/1/{CODE}/batch"
    fake.script = [httpx.Response(status, headers={"location": where})] * 10
    cmd = {f"k{i}": ("crm.lead.add", {"fields": {"TITLE": str(i)}}) for i in range(120)}
    client = client_for(fake, max_concurrency=1, retry=RetryPolicy.testing(5))
    async with client, client.stream(cmd) as results:
        outcomes = [r async for r in results]
    assert len(fake.requests) == 1  # no retry, and the job stopped
    assert len(outcomes) == 120
    assert all(r.status is Status.SKIPPED for r in outcomes)
    assert all(r.skip is not None for r in outcomes)
    first = outcomes[0].skip
    assert first is not None
    assert first.reason is SkipReason.REQUEST_FAILED
    assert isinstance(first.cause, RedirectError)
    assert first.cause.location == "https://new.example:8443"
    assert "redirects to https://new.example:8443: use that URL" in str(first.cause)
    assert CODE not in texts_of(first.cause)


async def test_a_relative_redirect_names_the_portal_itself() -> None:
    fake = store()
    fake.script = [httpx.Response(302, headers={"location": "/auth/?backurl=/rest/"})]
    async with client_for(fake) as client:
        with pytest.raises(RedirectError) as info:
            await client.call("user.current")
    assert info.value.location == "https://portal.example"
    assert isinstance(info.value, APIError)


# --- 2. plain http ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://portal.example/rest/1/c0de/",
        "http://10.0.0.5:8080/rest/1/c0de/",
        "http://portal.invalid/rest/1/c0de/",  # only a proxy could take it: still plain
    ],
)
def test_plain_http_to_another_machine_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="plain http://") as info:
        BitrixClient(url)
    assert "c0de" not in str(info.value)
    BitrixClient(url, allow_insecure_http=True)
    BitrixClient(Webhook.parse(url, allow_insecure_http=True))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/rest/1/c0de/",
        "http://127.1.2.3/rest/1/c0de/",
        "http://localhost/rest/1/c0de/",
        "http://emu.localhost:9/rest/1/c0de/",
        "http://[::1]:8000/rest/1/c0de/",
        "https://portal.example/rest/1/c0de/",
    ],
)
def test_loopback_and_https_are_accepted(url: str) -> None:
    BitrixClient(url)


def test_an_in_process_transport_may_use_any_host() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    BitrixClient("http://testserver/rest/1/c0de/", transport=mock)
    with pytest.raises(ValueError, match="plain http://"):
        BitrixClient("http://testserver/rest/1/c0de/", transport=httpx.AsyncHTTPTransport())


def test_plain_http_oauth_urls_are_refused() -> None:
    portal = OAuth("http://portal.example/rest/", access_token=TOKEN)
    with pytest.raises(ValueError, match="the OAuth portal URL uses plain http:// to portal"):
        BitrixClient(portal)
    server = oauth(
        refresh_token="r" * 20,
        client_id="app",
        client_secret="s" * 20,
        oauth_url="http://oauth.example/oauth/token/",
    )
    with pytest.raises(ValueError, match=r"oauth_url uses plain http:// to oauth\.example") as info:
        BitrixClient(server)
    assert TOKEN not in str(info.value)
    BitrixClient(OAuth("http://portal.example/rest/", access_token=TOKEN, allow_insecure_http=True))
    BitrixClient(portal, allow_insecure_http=True)


# --- 3. the webhook URL checked at construction -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"https://portal.example:abc/rest/1/{CODE}/", "bad port"),
        (f"https://portal.example:99999/rest/1/{CODE}/", "Port out of range"),
        (f"https://portal.example:0/rest/1/{CODE}/", "bad port"),
        (f"https://portal.exa\nmple/rest/1/{CODE}/", "control character"),
        (f"https://portal.example/rest/1/{CODE}\x00/", "control character"),
        (f"https://portal.example/rest/1/{CODE}\t/", "control character"),
        (f"https:///rest/1/{CODE}/", "no host"),
        (f"https://:443/rest/1/{CODE}/", "no host"),
        (f"https://user@/rest/1/{CODE}/", "no host"),
    ],
)
def test_a_malformed_webhook_url_is_refused_without_echoing_the_code(
    url: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        BitrixClient(url)
    assert CODE not in str(info.value)
    assert "webhook URL" in str(info.value)


def test_a_malformed_oauth_url_is_refused() -> None:
    with pytest.raises(ValueError, match="bad port"):
        OAuth("https://portal.example:abc/rest/", access_token=TOKEN)
    with pytest.raises(ValueError, match="oauth_url has no host"):
        oauth(
            refresh_token="r" * 20,
            client_id="a",
            client_secret="s" * 20,
            oauth_url="https://:1/oauth/token/",
        )


# --- 4. hostile numbers and deep JSON ----------------------------------------------------------

HOSTILE = ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "1" + "0" * 400, '"abc"', '"1e5"',
           '"  "', "1.5", "[]", "{}", "true"]


def _batch_text(n: int) -> str:
    """A batch answer for `n` commands whose every number field is hostile."""
    keys = [str(i) for i in range(n)]
    result = ", ".join(f'"{k}": {{"ID": "{k}"}}' for k in keys)
    pick = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    total = ", ".join(f'"{k}": {v}' for k, v in zip(keys, pick, strict=True))
    nxt = ", ".join(f'"{k}": {v}' for k, v in zip(keys, reversed(pick), strict=True))
    times = ", ".join(
        f'"{k}": {{"start": {v}, "operating": {v}, "operating_reset_at": {v}, "duration": {v}}}'
        for k, v in zip(keys, pick, strict=True)
    )
    return (
        f'{{"result": {{"result": {{{result}}}, "result_error": [], "result_total": {{{total}}},'
        f' "result_next": {{{nxt}}}, "result_time": {{{times}}}}},'
        f' "time": {{"operating": {"1" + "0" * 400}, "operating_reset_at": Infinity}}}}'
    )


async def test_hostile_numbers_in_a_batch_answer_keep_every_outcome() -> None:
    fake = store()
    n = len(HOSTILE)
    fake.script = [
        httpx.Response(
            200, content=_batch_text(n).encode(), headers={"content-type": "application/json"}
        )
    ]
    async with client_for(fake) as client:
        result = await client.batch([("crm.lead.list", {})] * n)
    assert [r.status for r in result.values()] == [Status.OK] * n
    assert result.result[0] == {"ID": "0"}
    for value in result.result_total.values():
        assert isinstance(value, int)
    assert result.result_total.get(HOSTILE.index("1" + "0" * 400)) == 10**400
    assert HOSTILE.index("Infinity") not in result.result_total
    assert HOSTILE.index('"abc"') not in result.result_total


async def test_hostile_numbers_in_a_single_answer() -> None:
    fake = store()
    text = '{"result": [1], "total": Infinity, "next": 1e400, "time": {"operating": 1e999}}'
    huge = '{"result": [1], "total": "NaN", "next": -Infinity, "time": {"operating": ' + (
        "9" * 400
    ) + ', "operating_reset_at": NaN}}'
    fake.script = [
        httpx.Response(200, content=text.encode(), headers={"content-type": "application/json"}),
        httpx.Response(200, content=huge.encode(), headers={"content-type": "application/json"}),
    ]
    async with client_for(fake) as client:
        first = await client.request("crm.lead.list")
        second = await client.request("crm.lead.list")
    assert (first.total, first.next) == (None, None)
    assert (second.total, second.next) == (None, None)


@pytest.mark.parametrize(
    "value",
    [float("inf"), float("-inf"), float("nan"), 10**400, -(10**400), "1e400", "x" * 10_000,
     "9" * 5000, [], {}, object()],
)
def test_as_int_and_as_float_never_raise(value: Any) -> None:
    as_int(value)
    assert as_float(value) is None or isinstance(as_float(value), float)


def test_as_int_keeps_what_is_an_integer() -> None:
    assert as_int(10**400) == 10**400
    assert as_int(" 42 ") == 42
    assert as_int(7.0) == 7
    assert as_int(7.5) is None
    assert as_int(float("inf")) is None


DEEP = ("[" * 100_000 + "]" * 100_000).encode()
DEEP_IN_RESULT = b'{"result": {"result": {"0": ' + DEEP + b'}}, "time": {}}'


async def test_json_nested_100000_deep_is_an_invalid_response() -> None:
    fake = store()
    fake.script = [
        httpx.Response(200, content=DEEP_IN_RESULT, headers={"content-type": "application/json"})
    ] * 3
    async with client_for(fake) as client:
        with pytest.raises(InvalidResponseError, match="nested too deep"):
            await client.call("user.current")


async def test_json_nested_100000_deep_in_a_batch_of_writes_is_unknown() -> None:
    fake = store()
    fake.script = [
        httpx.Response(200, content=DEEP_IN_RESULT, headers={"content-type": "application/json"})
    ]
    cmd = {f"w{i}": ("crm.lead.add", {"fields": {"TITLE": str(i)}}) for i in range(3)}
    async with client_for(fake) as client:
        result = await client.batch(cmd)
    assert len(fake.requests) == 1  # writes of unknown outcome are never sent again
    assert set(result.unknown) == set(cmd)
    outcome = result["w0"]
    assert outcome.uncertain is not None
    assert "nested too deep" in str(outcome.uncertain)


async def test_a_side_map_of_the_wrong_type_keeps_the_results() -> None:
    fake = store()
    answer = {
        "result": {
            "result": {"0": 1, "1": 2},
            "result_error": [],
            "result_total": 5,
            "result_next": "x",
            "result_time": True,
        },
        "time": "now",
    }
    fake.script = [httpx.Response(200, json=answer)]
    async with client_for(fake) as client:
        result = await client.batch([("crm.lead.add", {}), ("crm.lead.add", {})])
    assert result.result == {0: 1, 1: 2}


@pytest.mark.parametrize("body", ["json", "form"])
async def test_a_lone_surrogate_in_a_result_skips_the_write_that_would_splice_it(
    body: str,
) -> None:
    """A result with half an emoji (``"\\ud83d"``, as a server's escape may cut it) cannot be
    spliced as the server would: the write using it is skipped with the reason, nothing is
    sent garbled, the read's own result is kept."""
    fake = FakeBitrix()
    answer = {"result": {"result": {"a": {"TITLE": "cut \ud83d"}}, "result_error": []}}
    # json.dumps escapes it as the server would (httpx's own encoder refuses it).
    fake.script.append(httpx.Response(200, content=json.dumps(answer).encode()))
    fake.methods["crm.lead.update"] = lambda p: True
    async with client_for(fake, body=body) as client:
        result = await client.batch(
            {
                "a": ("crm.lead.get", {"id": 1}),
                "w": ("crm.lead.update", {"id": 1, "fields": {"TITLE": Ref("a")["TITLE"]}}),
                "e": ("crm.lead.update", {"id": 1, "fields": {"TITLE": Ref("a")}}),
            }
        )
    assert result["a"].result == {"TITLE": "cut \ud83d"}
    for key in ("w", "e"):
        skip = result[key].skip
        assert skip is not None, key
        assert skip.reason is SkipReason.UNRESOLVED_REFERENCE
        assert "not valid Unicode" in skip.detail
    assert fake.sent_keys() == ["a"]


def test_a_direct_call_refuses_bytes_that_are_not_utf8_spliced_into_it() -> None:
    """Form bodies carry such bytes as they are; a direct call's JSON body could not."""
    cmd = {
        "u": "user.current",
        "t": ("crm.lead.add", {"fields": {"TITLE": Literal("$total[u]"), "C": Ref("u")["X"]}}),
    }
    t = parse_commands(cmd, MethodPolicy().reads_only)[1]
    assert t.direct
    with pytest.raises(Unresolved, match="not valid UTF-8"):
        render_direct(t, lambda token: "\udcff")
    assert render_direct(t, lambda token: "ok") == {"fields": {"TITLE": "$total[u]", "C": "ok"}}


async def traceback_of_a_call(handler: Any) -> str:
    """The printed traceback of the `TransportError` a call through `handler` ends with."""
    import traceback

    async with client_for(None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(TransportError) as info:
            await client.call("user.current")
    return "".join(traceback.format_exception(info.value))


async def test_a_transport_error_quoting_the_url_is_masked_down_the_whole_chain() -> None:
    """The httpx error stays the cause (it decides whether the call ran) but a printed
    traceback shows its text and the text of what it was raised from: all masked."""

    def refuse(request: httpx.Request) -> httpx.Response:
        try:
            raise OSError(f"no route to {request.url}")
        except OSError as low:
            raise httpx.ConnectError(f"cannot reach {request.url}", request=request) from low

    printed = await traceback_of_a_call(refuse)
    assert "ConnectError" in printed  # the chain is kept
    assert "no route to" in printed
    assert CODE not in printed


async def test_masking_reaches_exception_groups_os_error_fields_and_contexts() -> None:
    def failing(request: httpx.Request) -> httpx.Response:
        group = ExceptionGroup("attempts", [OSError(f"cannot reach {request.url}")])
        named = OSError(2, f"refused by {request.url}", f"/run/{CODE}.sock")
        try:
            try:
                raise group
            except ExceptionGroup:
                raise named  # noqa: B904 - the group is its context, printed with it
        except OSError as exc:
            raise httpx.ConnectError("connect failed", request=request) from exc

    printed = await traceback_of_a_call(failing)
    assert "cannot reach" in printed
    assert ".sock" in printed
    assert CODE not in printed
