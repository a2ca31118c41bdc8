"""An application serving many portals from a pool of workers, each portal with its own limits.

    python examples/many_portals.py                     # local emulators and redis-server
    REDIS_URL=redis://127.0.0.1:6379 python examples/many_portals.py

A marketplace application installed on many portals runs their jobs from one pool of workers
(tasks here; processes or hosts work the same). Each portal has its own request bucket and,
per application, its own operating-time budget, so the pool keeps one `SharedLimits` per
portal, all on one Redis connection: a busy portal never slows another down, and any number
of workers on the same portal share its limits. The Redis keys name the portal and a digest
of the application, never a token.

Here the portals are three built-in emulators, each with a bucket of burst 10 and 10 per second,
reached in-process; Redis is ``$REDIS_URL`` or a throwaway ``redis-server`` (skipped without
one).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx

from bitrix_batch import BitrixClient, CommandInput, OAuth, RateLimit

APPLICATION = "local.emulator.app"  # the application's client id, the same on every portal
PLAN = RateLimit(burst=10, per_second=10.0)  # the emulators' bucket below
POOL = 4  # workers
JOBS = 12  # jobs in all, spread over the portals, 500 leads each


def job(portal: str, n: int) -> dict[str, CommandInput]:
    """One job: 500 leads for one portal."""
    return {
        f"{n}-{i}": ("crm.lead.add", {"fields": {"TITLE": f"{portal} job {n} lead {i}"}})
        for i in range(500)
    }


async def serve(redis_url: str) -> None:
    """Run every job through the pool, with one `SharedLimits` per portal."""
    import coredis

    from bitrix_batch.emulator import Emulator, EmulatorConfig
    from bitrix_batch.redis import RedisLink, SharedLimits

    config = EmulatorConfig(rate_burst=PLAN.burst, rate_drain=PLAN.per_second)
    portals = {name: Emulator(config) for name in ("alpha", "beta", "gamma")}
    tokens = {name: emu.issue_oauth_token()["access_token"] for name, emu in portals.items()}

    async with coredis.Redis.from_url(redis_url) as redis:
        link = RedisLink(redis)  # one connection for every portal
        limits: dict[str, SharedLimits] = {}

        async def run(portal: str, n: int) -> None:
            emu = portals[portal]
            creds = OAuth(f"https://{portal}.bitrix24.test/rest/", access_token=tokens[portal])
            if portal not in limits:
                limits[portal] = SharedLimits(
                    link, creds, rate_limit=PLAN, application=APPLICATION, workers=POOL
                )
            transport = httpx.ASGITransport(app=emu.app)
            async with BitrixClient(
                creds, transport=transport, **limits[portal].client_options()
            ) as client:
                result = await client.batch(job(portal, n))
            result.raise_for_errors()

        send, receive = anyio.create_memory_object_stream[tuple[str, int]](JOBS)
        names = list(portals)
        for n in range(JOBS):
            send.send_nowait((names[n % len(names)], n))
        send.close()

        async def worker(jobs: Any) -> None:
            async with jobs:
                async for portal, n in jobs:
                    await run(portal, n)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(POOL):
                tg.start_soon(worker, receive.clone())
        receive.close()
        elapsed = time.monotonic() - started

    for name, emu in portals.items():
        print(
            f"{name}: {emu.count('lead')} leads, {emu.stats.requests} requests, "
            f"{emu.stats.status_503} answers 503 | bucket key {limits[name].bucket.key}"
        )
        assert tokens[name] not in limits[name].bucket.key + limits[name].budget.key
    print(f"{JOBS} jobs on {len(portals)} portals by {POOL} workers in {elapsed:.1f} s")


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """``$REDIS_URL``, or a throwaway redis-server on 127.0.0.1, or None if there is none."""
    from bitrix_batch.redis import LocalRedisServer

    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    elif LocalRedisServer.binary() is None:
        yield None
    else:
        with LocalRedisServer() as server:
            yield server.url


def main() -> None:
    """Find or start Redis, then serve the portals."""
    if importlib.util.find_spec("coredis") is None:
        print("skipped: the shared limits need pip install 'bitrix_batch[redis]'")
        return
    with redis_server() as redis_url:
        if redis_url is None:
            print("skipped: no Redis (set REDIS_URL or install redis-server)")
            return
        anyio.run(serve, redis_url)


if __name__ == "__main__":
    main()
