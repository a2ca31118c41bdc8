"""The same kind of job from plain blocking code (a script, a notebook cell), on the emulator.

    python examples/sync_script.py
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from bitrix_batch import CommandInput, Ref
from bitrix_batch.emulator import Emulator, EmulatorConfig
from bitrix_batch.sync import SyncBitrixClient


def rows(n: int) -> Iterator[tuple[str, CommandInput]]:
    """A stream: what a CSV reader would give, one pair at a time."""
    for i in range(n):
        yield f"row{i}", ("crm.lead.add", {"fields": {"TITLE": f"Imported {i}"}})


def main() -> None:
    emu = Emulator(EmulatorConfig(seed_users=5))  # a local portal, real limits on
    transport = httpx.ASGITransport(app=emu.app)  # in-process; a real URL needs no transport

    # No async, no await: the client runs its own event loop in a thread of its own.
    with SyncBitrixClient(emu.webhook_url(), transport=transport) as client:
        cmd: dict[str, CommandInput] = {"me": "user.current"}
        for i in range(60):  # 121 commands: three requests, me.ID substituted client-side
            cmd[f"lead{i}"] = ("crm.lead.add", {"fields": {"ASSIGNED_BY_ID": Ref("me")["ID"]}})
            cmd[f"check{i}"] = ("crm.lead.get", {"id": Ref(f"lead{i}")})
        result = client.batch(cmd).raise_for_errors()

        with client.stream(rows(500), window=200) as outcomes:  # read lazily, outcomes as they come
            imported = sum(1 for r in outcomes if r.ok)

        leads = client.list_all("crm.lead.list", {"select": ["ID"]})

    owner = result.result["check59"]["ASSIGNED_BY_ID"]
    print(f"{len(cmd)} commands in one call to batch(); lead 59 is assigned to user {owner}")
    print(f"streamed {imported} imports; the portal now lists {len(leads)} leads"
          f" after {emu.stats.requests} requests")


if __name__ == "__main__":
    main()
