"""The executor under hostile conditions: what may have run is never reported as not run,
what ran is reported as run, and short-lived tokens are renewed as often as needed."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from bitrix_batch import BitrixClient, Ref, RetryPolicy, SkipReason, Status, TransportError
from bitrix_batch._network import wrong_address
from bitrix_batch.emulator import Emulator, EmulatorConfig
from tests.emulator_support import oauth_for
from tests.fake_bitrix import WEBHOOK, Fail, FakeBitrix
from tests.fake_clock import FakeClock


def writes() -> FakeBitrix:
    fake = FakeBitrix()
    fake.methods["crm.lead.add"] = lambda params: 1
    return fake


async def test_a_write_that_may_have_run_stays_unknown_when_its_resend_is_stopped() -> None:
    """resend_unknown_writes=True: the first attempt timed out (it may have run); before the
    re-send the job stopped on another request's 401. Those writes are unknown, not skipped,
    and batch() returns what happened instead of raising."""
    fake = writes()
    fake.script += [
        httpx.ReadTimeout("the answer never came"),
        httpx.Response(401, json={"error": "INVALID_CREDENTIALS", "error_description": "no"}),
    ]
    policy = RetryPolicy(attempts=3, wait_initial=0.05, wait_jitter=0.0, resend_unknown_writes=True)
    async with BitrixClient(
        WEBHOOK, transport=fake.transport(), rate_limit=None, retry=policy, max_concurrency=2
    ) as client:
        result = await client.batch([("crm.lead.add", {})] * 100)
    statuses = [r.status for r in result.values()]
    assert statuses.count(Status.UNKNOWN) == 50
    assert statuses.count(Status.SKIPPED) == 50
    assert all(s.reason is SkipReason.REQUEST_FAILED for s in result.skipped.values())


async def test_what_the_server_ran_past_a_halt_is_reported_as_run() -> None:
    """A server that ignores halt=1 runs the command after a failure: its result is kept."""
    fake = writes()

    def fail(params: dict[str, Any]) -> Any:
        raise Fail("ERROR_CORE", "no")

    fake.methods["crm.fail"] = fail
    inner = fake.run_batch
    fake.run_batch = lambda payload: inner({**payload, "halt": 0})  # type: ignore[method-assign]
    async with BitrixClient(WEBHOOK, transport=fake.transport(), rate_limit=None) as client:
        result = await client.batch(
            {"a": "crm.lead.add", "bad": "crm.fail", "c": "crm.lead.add", "d": "crm.lead.add"},
            halt=True,
        )
    assert result["a"].status is Status.OK
    assert result["bad"].status is Status.FAILED
    assert result["c"].status is Status.OK
    assert result["c"].result == 1
    assert result["d"].status is Status.OK


async def test_tokens_that_expire_after_every_request_are_renewed_as_often_as_needed() -> None:
    """Tokens live three answers while four requests are in flight: each call renews
    (single-flight) and replays as often as that takes; the job completes, every lead once."""
    emu = Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))
    creds = oauth_for(emu)

    class ExpireOften(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=emu.app)
            self.answers = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if "/oauth/" not in request.url.path:
                self.answers += 1
                if self.answers % 3 == 0:
                    emu.expire_access_tokens()
            return response

    cmd = [("crm.lead.add", {"fields": {"TITLE": f"t{i}"}}) for i in range(500)]
    async with BitrixClient(
        creds, transport=ExpireOften(), rate_limit=None, max_concurrency=4,
        retry=RetryPolicy.testing(),
    ) as client:
        result = await client.batch(cmd)
    result.raise_for_errors()
    assert emu.count("lead") == 500
    assert emu.duplicates("lead") == {}
    assert emu.stats.oauth_refreshes >= 2  # more than once in one job


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_port_nobody_listens_on_fails_at_once_and_says_what_to_check() -> None:
    """Refused on loopback: one attempt, the whole job stops, the message names the cause."""
    url = f"http://127.0.0.1:{free_port()}/rest/1/c0de/"
    started = time.monotonic()
    async with BitrixClient(url) as client:
        with pytest.raises(TransportError, match="nothing listens") as caught:
            await client.batch([("crm.lead.add", {})] * 200)
    assert caught.value.attempts == 1
    assert time.monotonic() - started < 5.0
    assert "c0de" not in str(caught.value)


async def test_a_host_name_that_does_not_resolve_fails_at_once() -> None:
    """A typo'd domain (the resolver's error, simulated): no retries, a clear message."""

    def unresolvable(request: httpx.Request) -> httpx.Response:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError("cannot connect") from exc

    async with BitrixClient(WEBHOOK, transport=httpx.MockTransport(unresolvable)) as client:
        with pytest.raises(TransportError, match="does not resolve") as caught:
            await client.call("user.current")
    assert caught.value.attempts == 1


def _timing_out(answer_first: bool = False) -> tuple[Any, list[int]]:
    """A transport whose connections time out (after one good answer, if asked)."""
    tries: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(1)
        if answer_first and len(tries) == 1:
            return httpx.Response(200, json={"result": {"ID": "1"}})
        raise httpx.ConnectTimeout("timed out", request=request)

    return httpx.MockTransport(handler), tries


async def test_a_host_that_never_answers_fails_after_two_connect_timeouts() -> None:
    """An unroutable or firewalled address swallows packets: two connect timeouts in a row
    from a portal that never answered stop the call, with a message saying what to check."""
    clock = FakeClock()
    transport, tries = _timing_out()
    async with BitrixClient(
        WEBHOOK, transport=transport, clock=clock, sleep=clock.sleep, wall_clock=clock.wall
    ) as client:
        with pytest.raises(TransportError, match="never answered") as caught:
            await client.call("user.current")
    assert caught.value.attempts == 2
    assert len(tries) == 2


async def test_connect_timeouts_after_the_portal_answered_are_retried_as_transient() -> None:
    """Once the portal has answered, a connect timeout is a busy network: the policy's
    attempts apply."""
    clock = FakeClock()
    transport, tries = _timing_out(answer_first=True)
    async with BitrixClient(
        WEBHOOK,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        retry=RetryPolicy(attempts=5, wait_jitter=0.0),
    ) as client:
        assert await client.call("user.current") == {"ID": "1"}
        with pytest.raises(TransportError) as caught:
            await client.call("user.current")
    assert caught.value.attempts == 5
    assert len(tries) == 6
    assert "never answered" not in str(caught.value)


def test_no_route_to_the_host_is_a_wrong_address() -> None:
    import errno

    exc = httpx.ConnectError("cannot connect")
    exc.__cause__ = OSError(errno.EHOSTUNREACH, "No route to host")
    assert wrong_address(exc) == "there is no route to the portal's host: check the URL's host"


async def test_an_answer_dripped_slowly_is_cut_at_the_deadline() -> None:
    """Each read is quick, the whole is not: the call ends at its deadline, not minutes on."""

    async def drip() -> AsyncIterator[bytes]:
        for piece in [b'{"result": ', b"1", b"}"] + [b" "] * 40:
            await anyio.sleep(0.05)
            yield piece

    def slow(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=drip())

    started = time.monotonic()
    async with BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(slow),
        timeout=1.0,
        deadline=0.3,
        retry=RetryPolicy.never(),
        rate_limit=None,
    ) as client:
        with pytest.raises(TransportError, match=r"deadline of 0\.3 s"):
            await client.call("user.current")
    assert time.monotonic() - started < 1.5


async def test_reads_beside_writes_of_unknown_outcome_are_sent_again() -> None:
    """The answer to a request of writes and reads was lost: the writes are unknown, the
    reads that do not depend on them go again and get their results."""
    fake = writes()
    fake.methods["user.current"] = lambda params: {"ID": "1"}
    fake.methods["crm.lead.get"] = lambda params: {"ID": params["id"]}
    fake.script.append(httpx.ReadTimeout("the answer was lost"))
    async with BitrixClient(
        WEBHOOK, transport=fake.transport(), rate_limit=None, retry=RetryPolicy.testing()
    ) as client:
        result = await client.batch(
            {
                "w": "crm.lead.add",
                "me": "user.current",
                "mine": ("crm.lead.get", {"id": Ref("w")}),  # rides with its write
            }
        )
    assert result["w"].status is Status.UNKNOWN
    assert result["me"].status is Status.OK
    assert result["me"].result == {"ID": "1"}
    assert result["mine"].status is Status.UNKNOWN  # its input is the unknown write
    assert [list(b) for b in fake.batches] == [["w", "me", "mine"], ["me"]]


async def test_a_portals_own_input_limits_are_checked_before_sending() -> None:
    """ServerLimits passed to the client: a command past max_input_vars is refused at plan
    time, in a batch and in a direct call, and nothing goes out."""
    from bitrix_batch import InvalidCommandError, ServerLimits

    fake = writes()
    fields = {f"UF_{i}": i for i in range(11)}
    async with BitrixClient(
        WEBHOOK,
        transport=fake.transport(),
        rate_limit=None,
        body="form",
        limits=ServerLimits(max_input_vars=10),
    ) as client:
        with pytest.raises(InvalidCommandError, match="10"):
            await client.batch({"big": ("crm.lead.add", {"fields": fields})})
        with pytest.raises(InvalidCommandError, match="10"):
            await client.call("crm.lead.add", {"fields": fields})
        await client.batch({"small": ("crm.lead.add", {"fields": {"UF_1": 1}})})
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "low",
    [
        lambda: OSError(__import__("errno").EHOSTUNREACH, "No route to host"),
        lambda: ConnectionRefusedError(111, "Connection refused"),
        lambda: socket.gaierror(-3, "Temporary failure in name resolution"),
    ],
    ids=["no-route", "refused", "dns"],
)
async def test_a_wrong_address_error_after_the_portal_answered_is_retried(low: Any) -> None:
    """Once the portal has answered, a refused port, a lost route or a failed lookup is a
    restart or a network flap: retried (nothing ran), the job goes on."""
    fake = FakeBitrix()
    fake.methods["user.current"] = lambda p: {"ID": "1"}
    calls: list[int] = []
    inner = fake.transport()

    async def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 2:
            exc = httpx.ConnectError("cannot connect", request=request)
            exc.__cause__ = low()
            raise exc
        return await inner.handle_async_request(request)

    clock = FakeClock()
    async with BitrixClient(
        WEBHOOK,
        transport=httpx.MockTransport(flaky),
        rate_limit=None,
        max_concurrency=1,
        retry=RetryPolicy(attempts=3, wait_jitter=0.0),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
    ) as client:
        result = await client.batch([("user.current", {})] * 150)
    assert all(r.ok for r in result.values())
    assert len(calls) == 4  # three batches, one of them twice
