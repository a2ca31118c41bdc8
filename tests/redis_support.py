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

import importlib.util
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

ENV = "BITRIX_BATCH_TEST_REDIS"
HAVE_COREDIS = importlib.util.find_spec("coredis") is not None

#: Skips a test module that needs coredis (``pip install 'bitrix_batch[redis]'``).
needs_coredis = pytest.mark.skipif(
    not HAVE_COREDIS, reason="coredis is not installed: pip install 'bitrix_batch[redis]'"
)


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
