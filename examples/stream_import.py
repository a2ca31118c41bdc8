"""Stream a big import from a generator, with bounded memory, on the built-in emulator.

    python examples/stream_import.py [COMMANDS]

Each row becomes a lead and a read of that lead (a reference to the add); outcomes are handled
as they come and forgotten, so memory stays flat however many rows there are.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpx

from bitrix_batch import BitrixClient, Ref
from bitrix_batch.emulator import Emulator, EmulatorConfig


def rows(n: int) -> Iterator[tuple[str, Any]]:
    """What a CSV reader or a database cursor would give, one pair at a time."""
    for i in range(n):
        yield f"lead{i}", ("crm.lead.add", {"fields": {"TITLE": f"Imported {i}"}})
        yield f"check{i}", ("crm.lead.get", {"id": Ref(f"lead{i}")})


async def main(n: int) -> None:
    emu = Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))
    client = BitrixClient(emu.webhook_url(), transport=httpx.ASGITransport(app=emu.app),
                          rate_limit=None)  # a real portal: keep the default rate limit
    ok = failed = 0
    async with client, client.stream(rows(n), window=2_000) as results:
        async for r in results:
            if r.ok:
                ok += 1
            else:
                failed += 1
                print("not ok:", r.key, r.error or r.skip or r.uncertain)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{ok} ok, {failed} not ok, {emu.stats.requests} requests, peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
