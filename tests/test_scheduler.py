"""The scheduler state machine on its own: requests out, answers in, no I/O."""

from __future__ import annotations

from typing import Any

from bitrix_batch import MethodPolicy, Ref, SkipReason, Status
from bitrix_batch._commands import parse_commands
from bitrix_batch._encoding import parse_str
from bitrix_batch._planner import plan
from bitrix_batch._response import BatchSections
from bitrix_batch._scheduler import ChunkRequest, Scheduler


def scheduler(cmd: Any, *, halt: bool = False, **kwargs: Any) -> Scheduler:
    return Scheduler(plan(parse_commands(cmd, MethodPolicy().reads_only), halt=halt), **kwargs)


def answer(
    results: dict[str, Any] | None = None, errors: dict[str, Any] | None = None
) -> BatchSections:
    return BatchSections(
        result=results or {},
        result_error={k: {"error": v, "error_description": ""} for k, v in (errors or {}).items()},
        result_total={},
        result_next={},
        result_time={k: {"operating": 0} for k in results or {}},
        time={},
    )


def params(request: ChunkRequest, key: str) -> dict[str, Any]:
    return parse_str(request.cmd[key].partition("?")[2])


def test_requests_follow_dependencies() -> None:
    """A chunk is handed out only when the chunks it refers to are final."""
    s = scheduler({"a": "crm.lead.add", "b": ("crm.lead.update", {"id": Ref("a")})})
    [first] = s.next_requests()
    assert list(first.cmd) == ["a"]
    assert s.next_requests() == []  # b waits for a
    s.complete(first, answer({"a": 42}))
    [second] = s.next_requests()
    assert params(second, "b") == {"id": "42"}
    s.complete(second, answer({"b": True}))
    assert s.finished
    assert [r.status for r in s.results()] == [Status.OK, Status.OK]


def test_limit_bounds_what_is_handed_out() -> None:
    """next_requests(limit=n) hands out at most n requests."""
    s = scheduler([("crm.lead.add", {})] * 500)
    assert len(s.next_requests(limit=3)) == 3
    assert s.in_flight == 3
    assert len(s.next_requests()) == 7


def test_a_refused_command_is_queued_again_alone() -> None:
    """A retryable refusal re-queues only that command, with its key."""
    s = scheduler(
        {"a": "crm.lead.add", "b": "crm.lead.add"},
        verdict=lambda entry, error: "retry",
        command_attempts=3,
    )
    [first] = s.next_requests()
    s.complete(first, answer({"a": 1}, {"b": "QUERY_LIMIT_EXCEEDED"}))
    [again] = s.next_requests()
    assert list(again.cmd) == ["b"]
    s.complete(again, answer({"b": 2}))
    assert s.finished


def test_attempts_run_out() -> None:
    """After the last attempt the refusal is final, with the server's error."""
    s = scheduler(["crm.lead.add"], verdict=lambda entry, error: "retry", command_attempts=2)
    for _ in range(2):
        [r] = s.next_requests()
        s.complete(r, answer(errors={"0": "OPERATION_TIME_LIMIT"}))
    assert s.finished
    [outcome] = s.results()
    assert outcome.status is Status.FAILED
    assert outcome.error is not None and outcome.error.code == "OPERATION_TIME_LIMIT"  # noqa: PT018


def test_held_methods_are_parked_and_released() -> None:
    """A held method's commands are parked; the others go at once."""
    s = scheduler({"d": "crm.deal.add", "l": "crm.lead.add"})
    [r] = s.next_requests(held=lambda method: method == "crm.deal.add")
    assert list(r.cmd) == ["l"]
    assert s.parked
    s.complete(r, answer({"l": 1}))
    s.unpark()
    [r2] = s.next_requests(held=lambda method: False)
    assert list(r2.cmd) == ["d"]


def test_abort_unknown_and_cancel() -> None:
    """A request whose outcome is unknown marks its commands unknown; cancel skips the rest."""
    s = scheduler({"a": "crm.lead.add", "b": ("crm.lead.update", {"id": Ref("a")})})
    [r] = s.next_requests()
    s.abort(r, TimeoutError("read timeout"), ran="unknown")
    assert s.next_requests() == []  # b's producer is unknown: b is skipped, never handed out
    assert s.finished
    a, b = s.results()
    assert a.status is Status.UNKNOWN
    assert b.skip is not None and b.skip.reason is SkipReason.DEPENDENCY_FAILED  # noqa: PT018


def test_cancel_finalises_everything_not_handed_out() -> None:
    """After cancel nothing more is handed out."""
    s = scheduler([("crm.lead.add", {})] * 120)
    [r, *_] = s.next_requests(limit=1)
    s.cancel(RuntimeError("fatal"))
    assert s.next_requests() == []
    s.complete(r, answer({str(i): i for i in range(50)}))
    assert s.finished
    assert sum(1 for o in s.results() if o.status is Status.SKIPPED) == 70


def test_a_list_command_changed_after_planning_is_never_sent_garbled() -> None:
    """A whole list is encoded when each request is built: a command whose parameters the
    caller changed since (into something Bitrix24 cannot receive, or with other references)
    is skipped, never sent; the others go as planned."""
    fields: dict[str, Any] = {"TITLE": "fine"}
    changed: dict[str, Any] = {"TITLE": "x"}
    s = scheduler({
        "a": ("crm.lead.add", {"fields": fields}),
        "b": ("crm.lead.add", {"fields": changed}),
        "c": ("crm.lead.add", {"fields": {"TITLE": Ref("a")}}),
    })
    changed["TITLE"] = object()
    [first] = s.next_requests()
    assert list(first.cmd) == ["a"]
    assert params(first, "a") == {"fields": {"TITLE": "fine"}}
    outcome = s.outcome(1)
    assert outcome is not None
    assert outcome.skip is not None
    assert "changed after the job began" in outcome.skip.detail
