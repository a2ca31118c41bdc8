"""What a client reports while it works: the on_event hook and the bitrix_batch logger."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from bitrix_batch import (
    BitrixClient,
    Event,
    MethodHeld,
    MethodReleased,
    RateLimitWaited,
    RequestAnswered,
    RequestFailed,
    RequestSent,
    RetryPolicy,
    RetryScheduled,
)
from tests.fake_bitrix import WEBHOOK, FakeBitrix, flaky
from tests.fake_clock import FakeClock


def on_fake_clock(
    fake: FakeBitrix, clock: FakeClock, paced: bool = False, **options: Any
) -> BitrixClient:
    """A client of `fake` whose time (and wall clock) is `clock`; unpaced unless asked."""
    if not paced:
        options["rate_limit"] = None
    return BitrixClient(
        WEBHOOK,
        transport=fake.transport(),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        **options,
    )


def leads() -> FakeBitrix:
    fake = FakeBitrix()
    fake.methods["crm.lead.add"] = lambda params: 1
    fake.methods["user.current"] = lambda params: {"ID": "1"}
    return fake


async def test_each_request_is_reported_sent_and_answered() -> None:
    """A batch of 120 commands: three requests, each sent (with its size) and answered."""
    fake = leads()
    events: list[Event] = []
    async with BitrixClient(
        WEBHOOK, transport=fake.transport(), rate_limit=None, on_event=events.append
    ) as client:
        await client.batch([("crm.lead.add", {})] * 120)
    sent = [e for e in events if isinstance(e, RequestSent)]
    answered = [e for e in events if isinstance(e, RequestAnswered)]
    assert sorted(e.commands for e in sent) == [20, 50, 50]
    assert all(e.method == "batch" and e.attempt == 1 for e in sent)
    assert [e.status for e in answered] == [200, 200, 200]
    assert all(e.error is None and e.seconds >= 0 for e in answered)


async def test_a_refused_request_is_answered_with_its_code_then_retried() -> None:
    """A 503 is an answer with the code QUERY_LIMIT_EXCEEDED, then a retry is scheduled."""
    fake = leads()
    fake.script.append(
        httpx.Response(503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "x"})
    )
    clock = FakeClock()
    events: list[Event] = []
    client = on_fake_clock(fake, clock, retry=RetryPolicy(attempts=3), on_event=events.append)
    async with client:
        result = await client.batch([("crm.lead.add", {})])
    assert result.ok
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "RequestSent",
        "RequestAnswered",
        "RetryScheduled",
        "RequestSent",
        "RequestAnswered",
    ]
    refused, retry, again = events[1], events[2], events[3]
    assert isinstance(refused, RequestAnswered)
    assert (refused.status, refused.error) == (503, "QUERY_LIMIT_EXCEEDED")
    assert isinstance(retry, RetryScheduled)
    assert retry.attempt == 1
    assert retry.delay > 0
    assert "QUERY_LIMIT_EXCEEDED" in retry.reason
    assert isinstance(again, RequestSent)
    assert again.attempt == 2


async def test_a_connection_error_is_reported_without_the_webhook_code() -> None:
    """No answer at all: RequestFailed, whose text has no secret in it."""
    fake = leads()
    fake.script.append(httpx.ConnectError(f"cannot reach {WEBHOOK}"))
    clock = FakeClock()
    events: list[Event] = []
    client = on_fake_clock(fake, clock, retry=RetryPolicy(attempts=2), on_event=events.append)
    async with client:
        await client.call("user.current")
    failed = [e for e in events if isinstance(e, RequestFailed)]
    assert len(failed) == 1
    assert "ConnectError" in failed[0].error
    assert "s3cr3tc0de" not in repr(events)


async def test_waits_for_the_rate_limit_are_reported() -> None:
    """Past the burst of 50, each request reports how long it waited for the bucket."""
    fake = leads()
    clock = FakeClock()
    events: list[Event] = []
    client = on_fake_clock(fake, clock, max_concurrency=60, on_event=events.append, paced=True)
    async with client:
        await client.batch([("crm.lead.add", {})] * (52 * 50))
    waits = [e.seconds for e in events if isinstance(e, RateLimitWaited)]
    assert len(waits) == 2
    assert waits[0] == pytest.approx(0.5 / 0.98)


async def test_a_hold_is_reported_with_its_wall_clock_end_and_its_release() -> None:
    """A method near its budget: held until the server's operating_reset_at, then released."""
    clock = FakeClock()
    reset_at = clock.wall() + 90.0
    answers = iter([450.0, 10.0])

    def add(params: dict[str, Any]) -> int:
        return 1

    fake = FakeBitrix()
    fake.methods["crm.deal.add"] = add

    inner = fake.run_batch

    def run_batch(payload: dict[str, Any]) -> dict[str, Any]:
        body = inner(payload)
        operating = next(answers)
        body["result"]["result_time"] = {
            key: {"operating": operating, "operating_reset_at": reset_at}
            for key in body["result"]["result"]
        }
        return body

    fake.run_batch = run_batch  # type: ignore[method-assign]
    events: list[Event] = []
    client = on_fake_clock(fake, clock, max_concurrency=1, on_event=events.append)
    cmd: list[Any] = [("crm.deal.add", {})] * 100
    async with client:
        result = await client.batch(cmd)
    assert result.ok
    held = [e for e in events if isinstance(e, MethodHeld)]
    released = [e for e in events if isinstance(e, MethodReleased)]
    assert held == [MethodHeld("crm.deal.add", reset_at, "near the operating-time limit")]
    assert released == [MethodReleased("crm.deal.add")]
    # The second request went after the hold, and the release was reported before it.
    order = [type(e).__name__ for e in events]
    assert order.index("MethodReleased") < max(
        i for i, name in enumerate(order) if name == "RequestSent"
    )
    assert clock() == pytest.approx(90.0)


async def test_a_refused_method_is_held_by_the_server_block() -> None:
    """A per-command OPERATION_TIME_LIMIT: held for the server's 300 s block, reason said."""
    fake = leads()
    fake.methods["crm.deal.add"] = flaky("OPERATION_TIME_LIMIT", 5)
    clock = FakeClock()
    events: list[Event] = []
    client = on_fake_clock(fake, clock, retry=RetryPolicy.testing(), on_event=events.append)
    async with client:
        await client.batch({"d": "crm.deal.add", "l": "crm.lead.add"})
    held = [e for e in events if isinstance(e, MethodHeld)]
    assert held == [
        MethodHeld("crm.deal.add", clock.wall() - clock() + 300.0, "refused: operating-time limit")
    ]


async def test_events_are_logged_at_info_and_debug_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Holds and retries at INFO, requests at DEBUG, on the bitrix_batch logger."""
    fake = leads()
    fake.script.append(
        httpx.Response(503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "x"})
    )
    clock = FakeClock()
    client = on_fake_clock(fake, clock, retry=RetryPolicy(attempts=3))
    with caplog.at_level(logging.DEBUG, logger="bitrix_batch"):
        async with client:
            await client.batch([("crm.lead.add", {})])
    ours = [r for r in caplog.records if r.name == "bitrix_batch"]
    info = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert len(info) == 1
    assert info[0].startswith("batch attempt 1 failed (")
    assert "retrying in" in info[0]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    assert debug[0] == "sending batch (1 command(s))"
    assert debug[1].startswith("batch answered 503 QUERY_LIMIT_EXCEEDED in ")
    assert "s3cr3tc0de" not in caplog.text


async def test_a_failing_hook_is_logged_and_the_job_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An observer must not break a bulk job: its error is logged, every command runs."""

    def broken(event: Event) -> None:
        raise ValueError("observer bug")

    fake = leads()
    async with BitrixClient(
        WEBHOOK, transport=fake.transport(), rate_limit=None, on_event=broken
    ) as client:
        result = await client.batch([("crm.lead.add", {})] * 60)
    assert result.ok
    assert "on_event hook failed" in caplog.text
    assert "observer bug" in caplog.text
