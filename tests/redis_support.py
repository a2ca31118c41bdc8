"""A real Redis for the tests: the one CI started, or a throwaway ``redis-server`` of our own.

``.ci/run`` starts Debian's ``redis-server`` on 127.0.0.1 and exports its address as
``BITRIX_BATCH_TEST_REDIS``. Without it (a developer's machine), the first test that needs
Redis starts one with `LocalRedisServer` for the session, stopped when the session ends.
Where neither works, the Redis tests skip and say why. Each test gets its own key prefix, so
tests never see each other's buckets.

A test module imports the fixtures it uses by their ``*_fixture`` names (pytest knows them
by the short names): ``from tests.redis_support import redis_fixture  # noqa: F401``.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

ENV = "BITRIX_BATCH_TEST_REDIS"
HAVE_COREDIS = importlib.util.find_spec("coredis") is not None

#: Skips a test module that needs coredis (``pip install 'bitrix_batch[redis]'``).
needs_coredis = pytest.mark.skipif(
    not HAVE_COREDIS, reason="coredis is not installed: pip install 'bitrix_batch[redis]'"
)

# coredis (6.x) opens three pairs of anyio memory streams with each connection and closes
# them only once the connection is up: an attempt that fails or is cancelled while it connects
# (a stopped Redis, a deadline on a loaded machine) leaves them to the garbage collector,
# which warns that they were never closed. That is coredis' leak, not ours, and the warning
# may surface in whichever test the collector happens to run in.
_COREDIS_LEAK = "Unclosed <MemoryObject(Send|Receive)Stream"

#: Ignores that warning in a Redis test module (every other warning stays an error).
ignore_coredis_leaks = pytest.mark.filterwarnings(f"ignore:{_COREDIS_LEAK}:ResourceWarning")


def collect_coredis_leaks() -> None:
    """Collect what coredis left behind now, quietly, so no later test meets it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_COREDIS_LEAK, category=ResourceWarning)
        gc.collect()


def _loopback(url: str) -> None:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].split("@")[-1]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise pytest.UsageError(f"{ENV} must point at 127.0.0.1, not {host}")


@pytest.fixture(scope="session", name="redis_url")
def redis_url_fixture() -> Iterator[str]:
    """The address of a running Redis on 127.0.0.1 (skips the test if there is none)."""
    url = os.environ.get(ENV)
    if url:
        _loopback(url)
        yield url
        return
    if not HAVE_COREDIS:
        pytest.skip("coredis is not installed: pip install 'bitrix_batch[redis]'")
    from bitrix_batch.redis import LocalRedisServer

    if LocalRedisServer.binary() is None:
        pytest.skip(
            f"no Redis: set {ENV}=redis://127.0.0.1:PORT or install redis-server "
            "(Debian: apt-get install redis-server)"
        )
    with LocalRedisServer() as server:
        yield server.url


@pytest.fixture(name="own_redis")
def own_redis_fixture() -> Iterator[Any]:
    """A `LocalRedisServer` of this test's own, to stop, pause or kill (skips without one)."""
    if not HAVE_COREDIS:
        pytest.skip("coredis is not installed: pip install 'bitrix_batch[redis]'")
    from bitrix_batch.redis import LocalRedisServer

    if LocalRedisServer.binary() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    with LocalRedisServer() as server:
        yield server
    collect_coredis_leaks()


@pytest.fixture(name="prefix")
def prefix_fixture() -> str:
    """A key prefix of this test's own."""
    return f"bbtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(name="redis")
async def redis_fixture(redis_url: str) -> AsyncIterator[Any]:
    """An entered coredis client on the session's Redis."""
    import coredis

    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client
    collect_coredis_leaks()


class RecordingSleep:
    """An async sleep that records what it was asked and returns at once.

    The shared bucket runs on the Redis server's clock, which no test can move; recording the
    sleeps the bucket asks for checks its arithmetic without waiting for it.
    """

    def __init__(self) -> None:
        #: The seconds asked for, in order.
        self.calls: list[float] = []
        #: When each sleep would have ended (``time.monotonic()``): the slot reserved, give or
        #: take the reply's latency, however long the calls before took.
        self.ends: list[float] = []

    async def __call__(self, seconds: float) -> None:
        import anyio.lowlevel

        self.calls.append(seconds)
        self.ends.append(time.monotonic() + seconds)
        await anyio.lowlevel.checkpoint()
