"""One portal's limits shared by many workers through Redis (the ``redis`` extra).

Bitrix24 keeps its request bucket per portal (and source IP) and its operating-time budget per
portal, credential and method, whatever process sends the requests. Workers that share a
portal share these objects through one Redis server::

    async with coredis.Redis.from_url("redis://127.0.0.1:6379") as redis:
        limits = SharedLimits(redis, webhook_url)
        async with BitrixClient(webhook_url, **limits.client_options()) as client:
            await client.batch(commands)

`RedisBucket` is the shared leaky bucket (a `RateLimiter`), evaluated atomically by a Lua
script on the Redis server's clock; `SharedOperatingBudget` is an `OperatingBudget` whose
holds are seen by every worker. When Redis cannot be reached, each worker falls back to a local
bucket at its share of the rate (see `RedisBucket`). The core package never imports this one.
"""

from __future__ import annotations

try:
    import coredis as _coredis  # noqa: F401  (checked here, used by the modules below)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "bitrix_batch.redis needs the Redis client coredis: pip install 'bitrix_batch[redis]'"
    ) from exc

from ._bucket import RedisBucket
from ._budget import SharedOperatingBudget
from ._keys import PortalKey
from ._limits import SharedLimits
from ._link import RedisLink
from ._server import LocalRedisServer

__all__ = [
    "LocalRedisServer",
    "PortalKey",
    "RedisBucket",
    "RedisLink",
    "SharedLimits",
    "SharedOperatingBudget",
]
