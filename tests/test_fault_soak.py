"""A short fault soak: a mixed job against a misbehaving emulator, audited write by write.

The long one is `python -m benchmarks.bench_soak` (20,000 commands); this runs the same job
and audit at 2,000 commands for a few seeds, so that every fault class meets the client.
"""

from __future__ import annotations

from typing import Any

from benchmarks.bench_soak import soak

#: Every fault the soak injects; the seeds below meet each at least once.
FAULTS = {
    "unavailable_503",
    "html_5xx",
    "drop_before_run",
    "fail_after_run",
    "drop_after_run",
    "slow",
    "held_call_429",
    "held_command_429",
}


async def test_nothing_is_duplicated_lost_or_unaccounted() -> None:
    met: set[str] = set()
    for seed in (0, 1, 2):
        report: dict[str, Any] = await soak(commands=2000, seed=seed)
        assert report["accounted"] == report["commands"] == 2000
        assert report["duplicates"] == 0
        assert report["duplicate_adds"] == 0
        assert report["problems"] == []
        assert report["token_expiries"] >= 5
        assert report["statuses"].get("ok", 0) > 1000
        met.update(kind for kind, count in report["faults_injected"].items() if count)
    assert met == FAULTS
