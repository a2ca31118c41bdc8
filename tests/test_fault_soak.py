"""A short fault soak: a mixed job against a misbehaving emulator, audited write by write.

The long one is `python -m benchmarks.bench_soak` (20,000 commands); this runs the same job
and audit at 2,000 commands for a few seeds, so that every fault class meets the client.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_soak import soak


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_nothing_is_duplicated_lost_or_unaccounted(seed: int) -> None:
    report = await soak(commands=2000, seed=seed)
    assert report["accounted"] == report["commands"] == 2000
    assert report["duplicates"] == 0
    assert report["duplicate_adds"] == 0
    assert report["problems"] == []
    assert sum(report["faults_injected"].values()) >= 5  # the faults did happen
    assert report["token_expiries"] >= 5
    assert report["statuses"].get("ok", 0) > 1000
