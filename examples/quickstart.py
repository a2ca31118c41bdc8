"""Run a job bigger than one batch, with references across requests, on the built-in emulator.

    python examples/quickstart.py
"""

from __future__ import annotations

import anyio
import httpx

from bitrix_batch import BitrixClient, CommandInput, Ref
from bitrix_batch.emulator import Emulator, EmulatorConfig


async def main() -> None:
    emu = Emulator(EmulatorConfig(seed_users=5))  # a local portal, real limits on
    transport = httpx.ASGITransport(app=emu.app)  # in-process; a real URL needs no transport

    async with BitrixClient(emu.webhook_url(), transport=transport) as client:
        cmd: dict[str, CommandInput] = {"me": "user.current"}
        for i in range(120):  # 241 commands: more than four batches' worth
            cmd[f"lead{i}"] = ("crm.lead.add", {"fields": {
                "TITLE": f"Lead {i} for {Ref('me')['NAME']}",  # spliced into text
                "ASSIGNED_BY_ID": Ref("me")["ID"],  # keeps its type
            }})
            cmd[f"check{i}"] = ("crm.lead.get", {"id": Ref(f"lead{i}")})
        plan = client.plan(cmd)
        result = await client.batch(cmd, progress=lambda done, total: None)

    result.raise_for_errors()
    print(f"{len(cmd)} commands in {len(plan.chunks)} requests, {plan.rounds} rounds")
    print("lead 119:", result.result["check119"]["TITLE"])
    print("requests the portal saw:", emu.stats.requests, "| 503s:", emu.stats.status_503)


if __name__ == "__main__":
    anyio.run(main)
