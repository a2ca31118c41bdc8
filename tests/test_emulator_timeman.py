"""timeman.*: the working day on the emulator's clock."""

from __future__ import annotations

from tests.emulator_support import FakeClock, api, make_emulator


async def test_a_workday_opens_pauses_resumes_and_closes() -> None:
    clock = FakeClock(1_700_000_000.0)  # 01:13 local time (UTC+3)
    async with api(make_emulator(clock=clock)) as a:
        _, before = await a.call("timeman.status")
        assert before["result"]["STATUS"] == "CLOSED"
        _, opened = await a.call("timeman.open")
        clock.advance(3600)
        _, paused = await a.call("timeman.pause")
        clock.advance(600)
        _, resumed = await a.call("timeman.open")
        clock.advance(1800)
        _, closed = await a.call("timeman.close")
        _, settings = await a.call("timeman.settings")
        unknown = await a.call("timeman.status", {"USER_ID": 99})
    assert opened["result"]["STATUS"] == "OPENED"
    assert opened["result"]["TIME_START"] == "2023-11-15T01:13:20+03:00"
    assert opened["result"]["TIME_FINISH"] is None
    assert paused["result"]["STATUS"] == "PAUSED"
    assert resumed["result"]["TIME_LEAKS"] == "00:10:00"
    assert closed["result"]["STATUS"] == "CLOSED"
    assert closed["result"]["DURATION"] == "01:30:00"  # 1 h 40 min open, 10 min paused
    assert closed["result"]["TZ_OFFSET"] == 10800
    assert settings["result"]["UF_TIMEMAN"] is True
    assert settings["result"]["ADMIN"] is True
    assert unknown[0] == 400
    assert unknown[1] == {"error": "", "error_description": "User not found"}


async def test_a_day_left_open_past_midnight_is_expired() -> None:
    clock = FakeClock(1_700_000_000.0)
    async with api(make_emulator(clock=clock)) as a:
        await a.call("timeman.open")
        clock.advance(86_400)
        _, status = await a.call("timeman.status")
    assert status["result"]["STATUS"] == "EXPIRED"
