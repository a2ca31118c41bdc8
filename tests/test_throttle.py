"""Tests for the request-rate bucket and the operating-time budget, on a fake clock."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings, strategies as st

from bitrix_batch._throttle import LeakyBucket, OperatingBudget, RateLimit, RateLimiter
from tests.fake_clock import WALL_EPOCH, FakeClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def bucket_on(
    clock: FakeClock, limit: RateLimit = RateLimit.STANDARD, safety: float = 0.0
) -> LeakyBucket:
    return LeakyBucket(limit, clock=clock, sleep=clock.sleep, safety=safety)


def budget_on(clock: FakeClock, **kwargs: Any) -> OperatingBudget:
    return OperatingBudget(
        clock=clock, sleep=clock.sleep, wall_clock=clock.wall, **kwargs
    )


async def admission_times(bucket: LeakyBucket, clock: FakeClock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        await bucket.acquire()
        times.append(clock.now)
    return times


# --- RateLimit ------------------------------------------------------------------------


def test_presets_match_the_documented_plans() -> None:
    """The presets are 50 at 2/s and 250 at 5/s."""
    assert (RateLimit.STANDARD.burst, RateLimit.STANDARD.per_second) == (50, 2.0)
    assert (RateLimit.ENTERPRISE.burst, RateLimit.ENTERPRISE.per_second) == (250, 5.0)


@pytest.mark.parametrize(
    ("burst", "per_second"),
    [
        (0, 2.0),
        (-1, 2.0),
        (50, 0.0),
        (50, -2.0),
        (50, float("inf")),
        (50, float("nan")),
    ],
)
def test_rate_limit_rejects_non_positive_values(burst: int, per_second: float) -> None:
    """A burst or rate that is not positive raises ValueError."""
    with pytest.raises(ValueError, match="must be"):
        RateLimit(burst, per_second)


def test_rate_limit_rejects_a_fractional_burst() -> None:
    """The burst counts whole requests."""
    with pytest.raises(ValueError, match="int"):
        RateLimit(2.5, 2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("safety", [-0.01, 1.0, 1.5, float("nan")])
def test_bucket_rejects_a_safety_outside_unit_interval(safety: float) -> None:
    """The safety margin must be a fraction in [0, 1)."""
    with pytest.raises(ValueError, match="safety"):
        LeakyBucket(safety=safety)


# --- LeakyBucket ----------------------------------------------------------------------


async def test_standard_admits_a_burst_of_50_then_one_every_half_second(
    clock: FakeClock,
) -> None:
    """Sixty requests: fifty at t=0, then one every 0.5 s."""
    times = await admission_times(bucket_on(clock), clock, 60)
    assert times == [0.0] * 50 + [0.5 * k for k in range(1, 11)]


async def test_acquire_returns_the_seconds_waited(clock: FakeClock) -> None:
    """acquire() reports 0.0 inside the burst and the pacing interval after it."""
    bucket = bucket_on(clock)
    assert [await bucket.acquire() for _ in range(50)] == [0.0] * 50
    assert await bucket.acquire() == 0.5
    assert await bucket.acquire() == 0.5


async def test_default_safety_paces_at_98_percent(clock: FakeClock) -> None:
    """With the default margin, paced requests are 0.5/0.98 s apart."""
    bucket = LeakyBucket(clock=clock, sleep=clock.sleep)
    assert bucket.rate == pytest.approx(1.96)
    times = await admission_times(bucket, clock, 53)
    assert times[:50] == [0.0] * 50
    assert times[50:] == pytest.approx([k * 0.5 / 0.98 for k in (1, 2, 3)])


async def test_enterprise_admits_250_then_five_per_second(clock: FakeClock) -> None:
    """The Enterprise preset: 250 at once, then one every 0.2 s."""
    times = await admission_times(bucket_on(clock, RateLimit.ENTERPRISE), clock, 260)
    assert times[:250] == [0.0] * 250
    assert times[250:] == pytest.approx([0.2 * k for k in range(1, 11)])


async def test_concurrent_callers_are_admitted_in_arrival_order_at_exact_times(
    clock: FakeClock,
) -> None:
    """A hundred concurrent tasks: FIFO order, fifty at t=0, then one every 0.5 s."""
    bucket = bucket_on(clock)
    arrived: list[int] = []
    admitted: list[tuple[int, float]] = []

    async def request(i: int) -> None:
        arrived.append(i)  # synchronously before acquire() enqueues this task
        await bucket.acquire()
        admitted.append((i, clock.now))

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(request, i)

    assert [i for i, _ in admitted] == arrived
    assert [t for _, t in admitted] == [0.0] * 50 + [0.5 * k for k in range(1, 51)]
    assert bucket.waiters == 0


async def test_bucket_drains_while_idle(clock: FakeClock) -> None:
    """After 10 s idle a full standard bucket has room for 20 more at once."""
    bucket = bucket_on(clock)
    await admission_times(bucket, clock, 50)
    assert not bucket.has_capacity()
    clock.now = 10.0
    assert bucket.level == 30.0
    assert bucket.has_capacity()
    times = await admission_times(bucket, clock, 21)
    assert times == [10.0] * 20 + [10.5]


async def test_level_never_drains_below_zero(clock: FakeClock) -> None:
    """A long idle period empties the bucket and no more."""
    bucket = bucket_on(clock)
    await bucket.acquire()
    clock.now = 1000.0
    assert bucket.level == 0.0
    assert await admission_times(bucket, clock, 50) == [1000.0] * 50


async def test_has_capacity_turns_true_after_one_drain_interval(
    clock: FakeClock,
) -> None:
    """A full bucket has capacity again once one request has drained."""
    bucket = bucket_on(clock)
    assert bucket.has_capacity()
    await admission_times(bucket, clock, 50)
    clock.now = 0.49
    assert not bucket.has_capacity()
    clock.now = 0.5
    assert bucket.has_capacity()


async def test_on_rejected_fills_the_bucket(clock: FakeClock) -> None:
    """After a 503 the next requests are paced at the drain rate, even from empty."""
    bucket = bucket_on(clock)
    await bucket.acquire()
    bucket.on_rejected()
    bucket.on_rejected()  # rejections do not stack
    assert bucket.level == 50.0
    assert await admission_times(bucket, clock, 3) == [0.5, 1.0, 1.5]


async def test_on_rejected_while_waiting_extends_the_wait(clock: FakeClock) -> None:
    """A rejection during a caller's sleep makes it recompute and wait longer."""
    rejected_once: list[float] = []

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if not rejected_once:
            rejected_once.append(clock.now)
            bucket.on_rejected()

    bucket = LeakyBucket(clock=clock, sleep=sleep, safety=0.0)
    await admission_times(bucket, clock, 50)
    assert await bucket.acquire() == 1.0  # 0.5 s, then rejected, then another 0.5 s
    assert rejected_once == [0.5]


async def test_cancelled_waiter_is_not_counted(clock: FakeClock) -> None:
    """A caller cancelled before admission leaves the level and the queue untouched."""
    bucket = bucket_on(clock)
    await admission_times(bucket, clock, 50)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await bucket.acquire()
    assert scope.cancelled_caught
    assert bucket.level == 50.0
    assert bucket.waiters == 0
    assert await bucket.acquire() == 0.5


async def test_bucket_is_an_async_context_manager(clock: FakeClock) -> None:
    """``async with bucket:`` acquires one slot."""
    bucket = bucket_on(clock)
    async with bucket:
        pass
    assert bucket.level == 1.0


async def test_one_bucket_shared_by_two_users_paces_them_together(
    clock: FakeClock,
) -> None:
    """Two clients sharing one bucket share one budget of 50 plus 2/s."""
    bucket = bucket_on(clock)
    first = await admission_times(bucket, clock, 30)
    second = await admission_times(bucket, clock, 21)
    assert first == [0.0] * 30
    assert second == [0.0] * 20 + [0.5]


async def test_repr_shows_level_burst_rate_and_waiters(clock: FakeClock) -> None:
    """The repr shows the live state."""
    bucket = bucket_on(clock)
    await admission_times(bucket, clock, 5)
    assert repr(bucket) == "<LeakyBucket level=5.00/50 rate=2/s waiters=0>"


def test_bucket_works_outside_an_event_loop() -> None:
    """A bucket can be built and shown before any event loop runs."""
    bucket = LeakyBucket()
    assert "level=0.00/50" in repr(bucket)


def test_bucket_satisfies_the_rate_limiter_protocol() -> None:
    """LeakyBucket is a RateLimiter, so other implementations can replace it."""
    limiter: RateLimiter = LeakyBucket()
    assert isinstance(limiter, RateLimiter)


async def test_default_clock_and_sleep_are_anyio() -> None:
    """With the real clock and sleep, a fast bucket admits and paces without error."""
    bucket = LeakyBucket(RateLimit(3, 1000.0), safety=0.0)
    waits = [await bucket.acquire() for _ in range(4)]
    assert all(0.0 <= wait < 0.5 for wait in waits)


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=120),
    safety=st.sampled_from([0.0, 0.02]),
)
def test_sequential_admissions_conform_and_use_the_full_rate(
    gaps: list[float], safety: float
) -> None:
    """Admissions never overflow the server's bucket; a wait ends as soon as allowed."""

    async def main() -> None:
        clock = FakeClock()
        bucket = bucket_on(clock, safety=safety)
        server_level, server_time = 0.0, 0.0
        for gap in gaps:
            clock.now += gap
            waited = await bucket.acquire()
            # An independent model of the server: drain at the full rate, add 1.
            server_level = max(0.0, server_level - (clock.now - server_time) * 2.0) + 1
            server_time = clock.now
            assert server_level <= 50 + 1e-6
            if waited > 0:
                assert bucket.level == pytest.approx(50.0)

    anyio.run(main)


# --- OperatingBudget ------------------------------------------------------------------


async def test_budget_holds_only_the_method_near_its_limit(clock: FakeClock) -> None:
    """A method at 430 s of 480 is held until its reset; other methods go on."""
    budget = budget_on(clock)
    budget.observe(
        "crm.lead.add", {"operating": 430.5, "operating_reset_at": WALL_EPOCH + 120}
    )
    budget.observe(
        "crm.deal.list", {"operating": 12.0, "operating_reset_at": WALL_EPOCH + 5}
    )
    assert budget.is_held("crm.lead.add")
    assert budget.held_until("crm.lead.add") == 120.0
    assert not budget.is_held("crm.deal.list")
    assert await budget.wait("crm.deal.list") == 0.0
    assert clock.now == 0.0


async def test_budget_releases_at_the_reset_time(clock: FakeClock) -> None:
    """wait() sleeps exactly until operating_reset_at, and then the method is free."""
    budget = budget_on(clock)
    budget.observe(
        "crm.lead.add", {"operating": 420, "operating_reset_at": int(WALL_EPOCH) + 90}
    )
    assert await budget.wait("crm.lead.add") == 90.0
    assert clock.now == 90.0
    assert budget.held_until("crm.lead.add") is None
    assert await budget.wait("crm.lead.add") == 0.0


@pytest.mark.parametrize(
    "time_info",
    [
        None,
        {},
        {"start": 1.0, "finish": 2.0, "duration": 1.0, "processing": 0},
        {"operating": 419.99, "operating_reset_at": WALL_EPOCH + 60},
        {"operating_reset_at": WALL_EPOCH + 60},
        {"operating": None},
        {"operating": "n/a"},
        {"operating": True},
        [],
    ],
)
async def test_budget_ignores_time_objects_below_the_threshold(
    clock: FakeClock, time_info: Any
) -> None:
    """Missing objects, missing keys, junk values and low sums hold nothing."""
    budget = budget_on(clock)
    budget.observe("crm.lead.add", time_info)
    assert not budget.is_held("crm.lead.add")
    assert budget.next_release() is None


@pytest.mark.parametrize("operating", [420, 420.0, "420.5", 479.9, 600])
async def test_budget_reads_int_float_and_string_values(
    clock: FakeClock, operating: Any
) -> None:
    """operating at or above limit - headroom holds the method, whatever its type."""
    budget = budget_on(clock)
    budget.observe(
        "tasks.task.list", {"operating": operating, "operating_reset_at": "1700000030"}
    )
    assert budget.held_until("tasks.task.list") == 30.0


async def test_budget_near_limit_without_reset_uses_default_hold(
    clock: FakeClock,
) -> None:
    """Without operating_reset_at a near-limit method is held for default_hold."""
    budget = budget_on(clock)
    budget.observe("crm.lead.add", {"operating": 450.0})
    assert budget.held_until("crm.lead.add") == 60.0
    custom = budget_on(clock, default_hold=15.0)
    custom.observe("crm.lead.add", {"operating": 450.0})
    assert custom.held_until("crm.lead.add") == 15.0


async def test_budget_threshold_follows_limit_and_headroom(clock: FakeClock) -> None:
    """limit and headroom are configurable; a portal on 420 s holds earlier."""
    budget = budget_on(clock, limit=420.0, headroom=20.0)
    assert budget.threshold == 400.0
    budget.observe("crm.lead.add", {"operating": 399.0})
    assert not budget.is_held("crm.lead.add")
    budget.observe("crm.lead.add", {"operating": 400.0})
    assert budget.is_held("crm.lead.add")


async def test_blocked_method_is_held_until_reset_at(clock: FakeClock) -> None:
    """A 429 with a reset time holds the method until then."""
    budget = budget_on(clock)
    budget.observe_blocked("crm.lead.add", WALL_EPOCH + 42.5)
    assert budget.held_until("crm.lead.add") == 42.5
    assert await budget.wait("crm.lead.add") == 42.5


async def test_blocked_method_without_reset_is_held_for_default_block(
    clock: FakeClock,
) -> None:
    """A 429 without a reset time holds the method for the spec's 300 s ban."""
    budget = budget_on(clock)
    budget.observe_blocked("crm.lead.add", None)
    assert budget.held_until("crm.lead.add") == 300.0
    custom = budget_on(clock, default_block=600.0)
    custom.observe_blocked("crm.lead.add")
    assert custom.held_until("crm.lead.add") == 600.0


async def test_hold_is_clamped_between_one_second_and_one_window(
    clock: FakeClock,
) -> None:
    """A reset in the past holds 1 s; one past the window holds one window."""
    budget = budget_on(clock)
    budget.observe_blocked("a.past", WALL_EPOCH - 30)
    budget.observe_blocked("b.future", WALL_EPOCH * 1000)  # milliseconds by mistake
    assert budget.held_until("a.past") == 1.0
    assert budget.held_until("b.future") == 600.0


async def test_methods_compare_case_insensitively(clock: FakeClock) -> None:
    """CRM.Lead.Add and crm.lead.add are the same method."""
    budget = budget_on(clock)
    budget.observe(
        "CRM.Lead.Add", {"operating": 470, "operating_reset_at": WALL_EPOCH + 10}
    )
    assert budget.is_held("crm.lead.add")
    budget.observe_blocked("crm.deal.LIST")
    assert budget.held_until("CRM.DEAL.list") == 300.0


async def test_hold_is_never_shortened(clock: FakeClock) -> None:
    """A later, sooner reset or a low operating value keeps the longer hold."""
    budget = budget_on(clock)
    budget.observe_blocked("crm.lead.add")
    budget.observe("crm.lead.add", {"operating": 0.0})
    budget.observe(
        "crm.lead.add", {"operating": 470, "operating_reset_at": WALL_EPOCH + 10}
    )
    assert budget.held_until("crm.lead.add") == 300.0
    budget.observe(
        "crm.lead.add", {"operating": 470, "operating_reset_at": WALL_EPOCH + 400}
    )
    assert budget.held_until("crm.lead.add") == 400.0


async def test_batch_result_time_holds_each_command_method(clock: FakeClock) -> None:
    """Each result_time[key] is observed under its command's method."""
    budget = budget_on(clock)
    methods = {"a": "crm.lead.add", "b": "crm.deal.list", "c": "user.current"}
    result_time = {
        "a": {"operating": 430.1, "operating_reset_at": WALL_EPOCH + 20},
        "b": {"operating": 1.0, "operating_reset_at": WALL_EPOCH + 20},
        "c": {"start": 1.0},
    }
    for key, info in result_time.items():
        budget.observe(methods[key], info)
    assert [m for m in methods.values() if budget.is_held(m)] == ["crm.lead.add"]


async def test_next_release_is_the_earliest_hold(clock: FakeClock) -> None:
    """next_release() reports the earliest clock time any held method frees up."""
    budget = budget_on(clock)
    assert budget.next_release() is None
    budget.observe_blocked("crm.lead.add", WALL_EPOCH + 50)
    budget.observe_blocked("crm.deal.add", WALL_EPOCH + 20)
    assert budget.next_release() == 20.0
    clock.now = 20.0
    assert budget.next_release() == 50.0
    clock.now = 50.0
    assert budget.next_release() is None


async def test_wait_follows_a_hold_extended_while_sleeping(clock: FakeClock) -> None:
    """If a response extends the hold during wait(), wait() sleeps on to the new end."""
    extended: list[float] = []

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if not extended:
            extended.append(clock.now)
            budget.observe_blocked("crm.lead.add", clock.wall() + 30)

    budget = OperatingBudget(clock=clock, sleep=sleep, wall_clock=clock.wall)
    budget.observe_blocked("crm.lead.add", WALL_EPOCH + 10)
    assert await budget.wait("crm.lead.add") == 40.0
    assert extended == [10.0]


async def test_budget_repr_lists_held_methods(clock: FakeClock) -> None:
    """The repr shows the limit, headroom and currently held methods."""
    budget = budget_on(clock)
    budget.observe_blocked("Crm.Lead.Add", WALL_EPOCH + 5)
    assert (
        repr(budget) == "<OperatingBudget limit=480 headroom=60 held=['crm.lead.add']>"
    )
    clock.now = 5.0
    assert repr(budget) == "<OperatingBudget limit=480 headroom=60 held=[]>"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0.0},
        {"window": -1.0},
        {"headroom": -1.0},
        {"headroom": 480.0},
        {"default_block": 0.0},
        {"default_hold": float("inf")},
    ],
)
def test_budget_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    """Durations must be positive and headroom below the limit."""
    with pytest.raises(ValueError, match="must be"):
        OperatingBudget(**kwargs)  # type: ignore[arg-type]


def test_budget_works_outside_an_event_loop() -> None:
    """A budget can be built and shown before any event loop runs."""
    assert "held=[]" in repr(OperatingBudget())


# --- FakeClock ------------------------------------------------------------------------


async def test_fake_clock_sleep_advances_time_and_ignores_negative(
    clock: FakeClock,
) -> None:
    """sleep() moves now forward; a negative duration counts as zero."""
    await clock.sleep(1.5)
    await clock.sleep(-3.0)
    assert clock() == 1.5
    assert clock.wall() == WALL_EPOCH + 1.5
