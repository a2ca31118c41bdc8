"""The crash-safe journal: a job stopped at any point resumes without losing or repeating."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bitrix_batch import BitrixClient, CommandResult, JournalError, Ref, RetryPolicy, Status
from bitrix_batch.emulator import Emulator, EmulatorConfig
from bitrix_batch.journal import Journal
from tests.fake_clock import FakeClock


class Crash(BaseException):
    """The process dies: nothing after it runs (not an Exception, so nothing catches it)."""


class CrashingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the emulator; request number `crash_at` runs there, then we die."""

    def __init__(self, emu: Emulator, crash_at: int | None = None) -> None:
        self.inner = httpx.ASGITransport(app=emu.app)
        self.crash_at = crash_at
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if self.count == self.crash_at:
            raise Crash
        return response


def emulator() -> Emulator:
    return Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))


def client(emu: Emulator, crash_at: int | None = None, **kwargs: Any) -> BitrixClient:
    kwargs.setdefault("max_concurrency", 1)
    return BitrixClient(
        emu.webhook_url(),
        transport=CrashingTransport(emu, crash_at),
        rate_limit=None,
        retry=RetryPolicy.testing(),
        **kwargs,
    )


def adds(n: int) -> dict[str, Any]:
    return {f"lead{i}": ("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}) for i in range(n)}


async def crash(emu: Emulator, cmd: Any, journal: Journal, crash_at: int) -> None:
    with pytest.raises((Crash, BaseExceptionGroup)):
        async with client(emu, crash_at) as c:
            await c.batch(cmd, journal=journal)


async def drain(c: BitrixClient, job: Iterator[tuple[str, Any]], journal: Journal) -> None:
    async with c, c.stream(job, journal=journal) as results:
        async for _ in results:
            pass


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "job.journal"


async def test_a_finished_job_run_again_sends_nothing(path: Path) -> None:
    """Every outcome is confirmed: the second run answers from the journal alone."""
    emu = emulator()
    with Journal(path) as journal:
        async with client(emu) as c:
            first = await c.batch(adds(120), journal=journal)
        assert journal.counts() == {"ok": 120}
        requests = emu.stats.requests
        async with client(emu) as c:
            second = await c.batch(adds(120), journal=journal)
    assert emu.stats.requests == requests
    assert second.result == first.result
    assert emu.count("lead") == 120


async def test_resume_after_a_crash_never_resends_a_write_in_flight(path: Path) -> None:
    """The second request ran on the server and then the process died: its 50 writes are
    unknown (not re-sent), the first 50 are confirmed, the rest are sent once."""
    emu = emulator()
    cmd = adds(200)
    with Journal(path) as journal:
        await crash(emu, cmd, journal, crash_at=2)
        assert journal.counts() == {"ok": 50, "sending": 50}
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
        assert journal.counts() == {"ok": 150, "unknown": 50}
    assert list(result.unknown) == [f"lead{i}" for i in range(50, 100)]
    assert all(
        "in flight when an earlier run stopped" in str(r.uncertain)
        for r in result.unknown.values()
    )
    assert len(result.result) == 150
    assert emu.count("lead") == 200  # the 50 unknown ones did run, once
    assert emu.stats.duplicate_adds("lead") == {}
    assert emu.duplicates("lead") == {}


async def test_resend_unknown_sends_the_writes_in_flight_again(path: Path) -> None:
    """Opting in: the writes in flight are sent again (and here, run twice)."""
    emu = emulator()
    cmd = adds(100)
    with Journal(path) as journal:
        await crash(emu, cmd, journal, crash_at=2)
    with Journal(path, resend_unknown=True) as journal:
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
    assert result.ok
    assert emu.count("lead") == 150
    assert len(emu.duplicates("lead")) == 50


async def test_reads_in_flight_are_sent_again(path: Path) -> None:
    """A read whose answer was lost is simply sent again."""
    emu = emulator()
    emu.seed("lead", 3)
    cmd = {f"get{i}": ("crm.lead.get", {"id": 1 + i % 3}) for i in range(100)}
    with Journal(path) as journal:
        await crash(emu, cmd, journal, crash_at=2)
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
    assert result.ok
    assert len(result.result) == 100


async def test_references_to_confirmed_results_resolve_from_the_journal(path: Path) -> None:
    """Contacts refer to companies added before the crash: the resumed run takes the
    company IDs from the journal, so each contact points at its own company."""
    emu = emulator()
    cmd: dict[str, Any] = {
        f"company{i}": ("crm.company.add", {"fields": {"TITLE": f"C{i}"}}) for i in range(50)
    }
    cmd.update(
        {
            f"contact{i}": (
                "crm.contact.add",
                {"fields": {"NAME": f"P{i}", "COMPANY_ID": Ref(f"company{i}")}},
            )
            for i in range(50)
        }
    )
    with Journal(path) as journal:
        await crash(emu, cmd, journal, crash_at=2)  # companies ran; the contacts were in flight
        assert journal.counts() == {"ok": 50, "sending": 50}
    # Start the contacts afresh so that the resumed run's own writes can be checked.
    emu.store.clear()
    with Journal(path, resend_unknown=True) as journal:
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
    assert result.ok
    contacts = {r["NAME"]: r["COMPANY_ID"] for r in emu.records("contact")}
    assert len(contacts) == 50
    assert all(contacts[f"P{i}"] == result.result[f"company{i}"] for i in range(50))


async def test_a_stream_resumes_like_a_list(path: Path) -> None:
    """The same guarantees when the job is a generator read lazily."""
    emu = emulator()

    def job() -> Iterator[tuple[str, Any]]:
        yield from adds(200).items()

    with Journal(path) as journal:
        with pytest.raises((Crash, BaseExceptionGroup)):
            await drain(client(emu, crash_at=2), job(), journal)
        async with client(emu) as c, c.stream(job(), journal=journal) as results:
            outcomes = [r async for r in results]
    statuses = {r.key: r.status for r in outcomes}
    assert len(statuses) == 200
    assert sum(s is Status.UNKNOWN for s in statuses.values()) == 50
    assert sum(s is Status.OK for s in statuses.values()) == 150
    assert emu.stats.duplicate_adds("lead") == {}


async def test_a_confirmed_failure_is_not_sent_again(path: Path) -> None:
    """A command the server refused is final: the resumed run reports the same error."""
    emu = emulator()
    cmd = {"bad": ("crm.lead.get", {"id": 999}), "ok": "user.current"}
    with Journal(path) as journal:
        async with client(emu) as c:
            first = await c.batch(cmd, journal=journal)
        requests = emu.stats.requests
        async with client(emu) as c:
            second = await c.batch(cmd, journal=journal)
    assert emu.stats.requests == requests
    assert second["bad"].status is Status.FAILED
    assert second["bad"].error is not None
    assert first["bad"].error is not None
    assert second["bad"].error.description == first["bad"].error.description


async def test_a_journal_of_another_job_is_refused_before_sending(path: Path) -> None:
    """The same key with another method: this journal is not this job's."""
    emu = emulator()
    with Journal(path) as journal:
        async with client(emu) as c:
            await c.batch({"a": "user.current"}, journal=journal)
        requests = emu.stats.requests
        async with client(emu) as c:
            with pytest.raises(JournalError, match="belongs to another job"):
                await c.batch({"a": "crm.lead.list"}, journal=journal)
    assert emu.stats.requests == requests


async def test_a_journal_that_cannot_record_stops_the_job_before_sending(path: Path) -> None:
    """If the intent cannot be written, the request does not go out."""
    emu = emulator()
    journal = Journal(path)
    journal.close()  # every write now fails
    async with client(emu) as c:
        with pytest.raises(JournalError, match="cannot be written"):
            await c.batch(adds(10), journal=journal)
    assert emu.stats.requests == 0


def test_a_file_that_is_not_a_journal_is_a_journal_error(tmp_path: Path) -> None:
    """Opening garbage fails with the project's error, naming the file."""
    bad = tmp_path / "not.journal"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match=r"not\.journal"):
        Journal(bad)


async def test_a_halted_job_resumes_after_a_crash(path: Path) -> None:
    """halt=True: the writes in flight come back unknown, and the rest stays halted."""
    emu = emulator()
    cmd = adds(100)
    with Journal(path) as journal:
        await crash(emu, cmd, journal, crash_at=1)
        async with client(emu) as c:
            result = await c.batch(cmd, halt=True, journal=journal)
    assert len(result.unknown) == 50
    assert len(result.skipped) == 50
    assert emu.count("lead") == 50


async def test_a_key_repeated_in_a_stream_is_refused_not_answered_from_the_journal(
    path: Path,
) -> None:
    """A stream may repeat a key beyond its look-back, but a journal cannot tell the two
    apart: the repeat stops the job with JournalError; nothing is silently dropped."""
    emu = emulator()

    def job() -> Iterator[tuple[str, Any]]:
        for i in range(6):
            yield f"k{i % 3}", ("crm.lead.add", {"fields": {"TITLE": f"T{i}"}})

    with Journal(path) as journal:
        async with client(emu) as c:
            with pytest.raises(JournalError, match="keys must be unique"):
                await c.batch(job(), journal=journal, lookback=1)
    assert emu.count("lead") == 0  # all six shared one request, refused before it went


async def test_another_jobs_key_in_a_stream_stops_it_with_what_ran_kept(path: Path) -> None:
    """The clash is found when the command is read: what was read before it runs, and the
    error comes with every outcome."""
    emu = emulator()
    with Journal(path) as journal:
        async with client(emu) as c:
            await c.batch({"x": ("crm.lead.add", {"fields": {"TITLE": "x"}})}, journal=journal)

        def job() -> Iterator[tuple[str, Any]]:
            yield from adds(120).items()
            yield "x", ("crm.contact.add", {"fields": {"NAME": "x"}})

        async with client(emu) as c:
            with pytest.raises(JournalError, match="belongs to another job") as caught:
                await c.batch(job(), journal=journal)
        assert journal.counts() == {"ok": 121}
    partial = caught.value.bitrix_batch_result  # type: ignore[attr-defined]
    assert len(partial.result) == 120
    assert emu.count("lead") == 121


async def test_outcomes_final_before_a_cancellation_are_recorded(path: Path) -> None:
    """Cancelled right after an answer came back: its writes are confirmed, not unknown."""
    emu = emulator()
    cmd = adds(100)

    class CancelAfterFirst(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=emu.app)
            self.scope: anyio.CancelScope | None = None

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            assert self.scope is not None
            self.scope.cancel()  # lands once this answer is handed back
            return response

    transport = CancelAfterFirst()
    with Journal(path) as journal:
        async with BitrixClient(
            emu.webhook_url(), transport=transport, rate_limit=None, max_concurrency=1
        ) as c:
            with anyio.CancelScope() as scope:
                transport.scope = scope
                await c.batch(cmd, journal=journal)
        counts = journal.counts()
        assert counts.get("ok", 0) + counts.get("sending", 0) == 50
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
    assert emu.count("lead") == 100
    assert len(result.result) + len(result.unknown) == 100
    assert emu.stats.duplicate_adds("lead") == {}


async def test_a_command_refused_by_the_server_is_sent_again_after_a_crash(path: Path) -> None:
    """Refused inside a batch (it did not run), then the process died while it waited for
    its hold: resumed, it is sent, not reported unknown."""
    emu = emulator()
    clock = FakeClock()

    async def die_on_long_waits(seconds: float) -> None:
        if seconds > 30:
            raise Crash  # killed while the method is held
        await clock.sleep(seconds)

    refused = {"done": False}

    class RefuseDealOnce(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=emu.app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if refused["done"]:
                return await self.inner.handle_async_request(request)
            refused["done"] = True
            body = {
                "result": {
                    "result": {"lead": 1},
                    "result_error": {
                        "deal": {"error": "OPERATION_TIME_LIMIT", "error_description": "x"}
                    },
                    "result_total": [],
                    "result_next": [],
                    "result_time": [],
                },
                "time": {},
            }
            return httpx.Response(200, json=body)

    cmd = {"lead": ("crm.lead.add", {}), "deal": ("crm.deal.add", {"fields": {"TITLE": "d"}})}
    with Journal(path) as journal:
        with pytest.raises((Crash, BaseExceptionGroup)):
            async with BitrixClient(
                emu.webhook_url(),
                transport=RefuseDealOnce(),
                rate_limit=None,
                clock=clock,
                sleep=die_on_long_waits,
                retry=RetryPolicy.testing(),
            ) as c:
                await c.batch(cmd, journal=journal)
        assert {e.key: e.state for e in journal.entries()} == {"lead": "ok", "deal": "queued"}
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
    assert result["deal"].status is Status.OK
    assert emu.count("deal") == 1


async def test_resend_unknown_also_sends_writes_an_earlier_resume_reported_unknown(
    path: Path,
) -> None:
    """A default resume records the writes in flight as unknown; a later resume that opts in
    still sends them."""
    emu = emulator()
    cmd = adds(100)
    with Journal(path) as journal:
        await crash(emu, cmd, journal, crash_at=2)
        async with client(emu) as c:
            await c.batch(cmd, journal=journal)
        assert journal.counts() == {"ok": 50, "unknown": 50}
    with Journal(path, resend_unknown=True) as journal:
        async with client(emu) as c:
            result = await c.batch(cmd, journal=journal)
        assert journal.counts() == {"ok": 100}
    assert result.ok


def test_odd_answers_are_stored_and_read_back(path: Path) -> None:
    """A lone surrogate from a server's escape, a time block of another shape, int and str
    keys that look alike: all kept apart and read back as they were."""
    results = [
        (0, CommandResult(5, "crm.lead.get", Status.OK, {"T": "\ud83d"}, time={"x": 1})),
        (1, CommandResult("5", "crm.lead.get", Status.OK, [1, "2", None], time=None)),
    ]
    with Journal(path) as journal:
        journal.finished(results)
        assert [e.key for e in journal.entries()] == [5, "5"]
        first = journal.recall(0, 5, "crm.lead.get", True)
        second = journal.recall(1, "5", "crm.lead.get", True)
    assert first is not None
    assert first.result == {"T": "\ud83d"}
    assert first.time == {"x": 1}
    assert second is not None
    assert second.result == [1, "2", None]
