"""Several workers on one portal through `SharedLimits`: no 503, nothing sent twice.

In-process workers (two clients, each with limits of its own on the same Redis keys, as two
processes would have) against one emulator with a real bucket, under asyncio and trio; then
the benchmark's smoke run: four processes, two on each backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bitrix_batch import BitrixClient, RateLimit
from tests.redis_support import (  # noqa: F401  (fixtures)
    ENV,
    ignore_coredis_leaks,
    needs_coredis,
    prefix_fixture,
    redis_fixture,
    redis_url_fixture,
)

pytestmark = [needs_coredis, ignore_coredis_leaks, pytest.mark.integration]

REPO = Path(__file__).resolve().parent.parent


async def test_two_workers_share_the_portals_bucket(redis: Any, prefix: str) -> None:
    from bitrix_batch.emulator import Emulator, EmulatorConfig
    from bitrix_batch.redis import RedisLink, SharedLimits

    plan = RateLimit(10, 50.0)
    emu = Emulator(EmulatorConfig(rate_burst=plan.burst, rate_drain=plan.per_second))
    transport = httpx.ASGITransport(app=emu.app)

    async def worker(n: int) -> None:
        # A generous deadline: this test is about sharing, not about a loaded machine.
        link = RedisLink(redis, timeout=10.0)
        limits = SharedLimits(link, emu.webhook_url(), rate_limit=plan, prefix=prefix)
        cmd = {
            f"w{n}-{i}": ("crm.lead.add", {"fields": {"TITLE": f"W{n} {i}"}}) for i in range(1000)
        }
        async with BitrixClient(
            emu.webhook_url(), transport=transport, **limits.client_options()
        ) as client:
            result = await client.batch(cmd)
        result.raise_for_errors()
        assert not limits.bucket.degraded

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for n in range(2):
            tg.start_soon(worker, n)
    elapsed = time.monotonic() - start
    assert emu.stats.requests == 40
    assert emu.stats.status_503 == 0  # each worker alone would burst 10 at once: 10 too many
    assert emu.count("lead") == 2000
    assert emu.duplicates("lead") == {}
    # 40 requests, 8 at once (headroom 2), then 49 per second: never faster than the bucket.
    # The upper bound only catches a limiter that over-throttles (one slot a second would take
    # 32 s); the 2,000 adds cost the emulator CPU time that a loaded machine stretches.
    bound = (40 - 8) / 49
    assert bound - 0.05 < elapsed < 6.0


def test_the_benchmark_smoke_run(redis_url: str, tmp_path: Path) -> None:
    """Four processes (asyncio, trio, asyncio, trio) import 1,000 adds through one bucket."""
    out = tmp_path / "shared.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_shared_limit",
        "--smoke",
        "--modes",
        "shared",
        "--json",
        str(out),
    ]
    if os.environ.get(ENV):
        command += ["--redis", redis_url]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert time.monotonic() - started < 60
    (row,) = json.loads(out.read_text())["results"]
    assert row["backends"] == ["asyncio", "trio", "asyncio", "trio"]
    assert row["complete"]
    assert row["leads_stored"] == 1000
    assert row["duplicate_adds"] == 0
    assert row["status_503"] == 0
    assert row["http_requests"] == 20
    assert not row["redis_failed"]
