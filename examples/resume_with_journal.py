"""A job that survives being stopped: run it, stop it half-way, run it again with the journal.

    python examples/resume_with_journal.py

The second run sends only what the first did not finish; the writes that were in flight when
the first run stopped come back as outcome-unknown instead of being sent twice.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import httpx

from bitrix_batch import BitrixClient, CommandInput, Ref, Status
from bitrix_batch.emulator import Emulator, EmulatorConfig
from bitrix_batch.journal import Journal


def job() -> dict[str, CommandInput]:
    """Companies, and a contact for each referring to its company."""
    cmd: dict[str, CommandInput] = {}
    for i in range(200):
        cmd[f"company{i}"] = ("crm.company.add", {"fields": {"TITLE": f"Company {i}"}})
        cmd[f"contact{i}"] = (
            "crm.contact.add",
            {"fields": {"NAME": f"Person {i}", "COMPANY_ID": Ref(f"company{i}")}},
        )
    return cmd


async def main() -> None:
    emu = Emulator(EmulatorConfig(rate_limit=False))
    transport = httpx.ASGITransport(app=emu.app)
    path = Path(tempfile.mkdtemp()) / "import.journal"
    with Journal(path) as journal:
        async with BitrixClient(emu.webhook_url(), transport=transport) as client:
            # The first run is stopped once 250 commands are done (as a crash or Ctrl-C would).
            with anyio.CancelScope() as scope:

                def stop_half_way(done: int, total: int) -> None:
                    if done >= 250:
                        scope.cancel()

                await client.batch(job(), journal=journal, progress=stop_half_way)
            print("after the stop:", journal.counts(), "| requests:", emu.stats.requests)
            result = await client.batch(job(), journal=journal)  # the same job again
    unknown = [key for key, r in result.items() if r.status is Status.UNKNOWN]
    print("resumed:", len(result.result), "ok,", len(unknown), "unknown (not sent twice)")
    print("contacts on the portal:", emu.count("contact"), "| requests:", emu.stats.requests)


if __name__ == "__main__":
    anyio.run(main)
