"""Several worker processes import one big job into one portal, sharing its limits in Redis.

    python examples/shared_workers.py                   # a local emulator and redis-server
    REDIS_URL=redis://127.0.0.1:6379 python examples/shared_workers.py

Each worker takes its own slice of the job and keeps its own journal (run a stopped worker
again with the same slice and journal, and it sends only what it had not finished). All the
workers pace on one request bucket in Redis, the portal's, and see each other's operating-time
holds, so together they never overrun the portal: no 503, whatever the number of workers.
Half of them run on trio, to show that it makes no difference.

Here the portal is the built-in emulator served on 127.0.0.1 (bucket: burst 20, 20 per
second), and Redis is ``$REDIS_URL`` or a throwaway ``redis-server`` (skipped without one).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio

from bitrix_batch import BitrixClient, CommandInput, RateLimit, Status
from bitrix_batch.journal import Journal

WORKERS = 3
LEADS = 3_000
PLAN = RateLimit(burst=20, per_second=20.0)  # the emulator's bucket below


def job(first: int, last: int) -> dict[str, CommandInput]:
    """One worker's slice of the job: leads ``first`` to ``last - 1``."""
    return {
        f"lead{i}": ("crm.lead.add", {"fields": {"TITLE": f"Lead {i}"}}) for i in range(first, last)
    }


async def work(index: int, webhook: str, redis_url: str, journal: Path) -> None:
    """One worker: its slice, its journal, the portal's shared limits."""
    import coredis

    from bitrix_batch.redis import SharedLimits

    per = LEADS // WORKERS
    cmd = job(index * per, (index + 1) * per)
    async with coredis.Redis.from_url(redis_url) as redis:
        limits = SharedLimits(redis, webhook, rate_limit=PLAN, workers=WORKERS)
        with Journal(journal) as log:
            async with BitrixClient(webhook, **limits.client_options()) as client:
                result = await client.batch(cmd, journal=log)
        await limits.flush()  # a 503 this worker saw last is written for the others too
    ok = sum(r.status is Status.OK for r in result.values())
    print(f"worker {index}: {ok} of {len(cmd)} leads added")


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
    """Serve a portal, start the workers, and check what arrived."""
    if importlib.util.find_spec("coredis") is None:
        print("skipped: the shared limits need pip install 'bitrix_batch[redis]'")
        return
    from bitrix_batch.emulator import Emulator, EmulatorConfig, serve_in_thread

    emu = Emulator(EmulatorConfig(rate_burst=PLAN.burst, rate_drain=PLAN.per_second))
    with redis_server() as redis_url, serve_in_thread(emu) as base:
        if redis_url is None:
            print("skipped: no Redis (set REDIS_URL or install redis-server)")
            return
        folder = Path(tempfile.mkdtemp())
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(n),
                    emu.webhook_url(base),
                    redis_url,
                    str(folder / f"worker{n}.journal"),
                ]
            )
            for n in range(WORKERS)
        ]
        codes = [w.wait(timeout=100) for w in workers]
    if any(codes):
        sys.exit(f"a worker failed: exit codes {codes}")
    print(
        f"leads on the portal: {emu.count('lead')} | requests: {emu.stats.requests} | "
        f"503 answers: {emu.stats.status_503} | duplicates: {len(emu.duplicates('lead'))}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        index, webhook, redis_url, journal = sys.argv[2:6]
        backend = "trio" if int(index) % 2 and importlib.util.find_spec("trio") else "asyncio"
        anyio.run(work, int(index), webhook, redis_url, Path(journal), backend=backend)
    else:
        main()
