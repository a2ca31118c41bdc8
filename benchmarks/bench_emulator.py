"""The emulator's own overhead: requests per second it serves with limits off.

Two transports: in-process through ``httpx.ASGITransport``, and real loopback sockets through
uvicorn (127.0.0.1 only). Four request kinds: ``user.current`` (routing + envelope),
``crm.lead.get``, one 50-row ``crm.lead.list`` page, and a 50-command ``batch`` of
``crm.lead.get``. Each measurement runs for ``--seconds`` seconds.

    python benchmarks/bench_emulator.py --seconds 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from bitrix_batch.emulator import Emulator, EmulatorConfig, serve_in_thread

Request = Callable[[httpx.AsyncClient, str, int], Awaitable[httpx.Response]]


def _kinds(leads: int) -> dict[str, tuple[Request, int]]:
    """Request makers and how many commands each request carries."""

    async def current(c: httpx.AsyncClient, url: str, i: int) -> httpx.Response:
        return await c.post(url + "user.current", json={})

    async def get(c: httpx.AsyncClient, url: str, i: int) -> httpx.Response:
        return await c.post(url + "crm.lead.get", json={"id": 1 + i % leads})

    async def page(c: httpx.AsyncClient, url: str, i: int) -> httpx.Response:
        start = (i * 50) % max(50, leads - 50)
        return await c.post(url + "crm.lead.list", json={"start": start})

    async def batch(c: httpx.AsyncClient, url: str, i: int) -> httpx.Response:
        cmd = {f"g{k}": f"crm.lead.get?id={1 + (i * 50 + k) % leads}" for k in range(50)}
        return await c.post(url + "batch", json={"halt": 0, "cmd": cmd})

    return {
        "user.current": (current, 1),
        "crm.lead.get": (get, 1),
        "crm.lead.list (50 rows)": (page, 1),
        "batch of 50 crm.lead.get": (batch, 50),
    }


async def _measure(
    client: httpx.AsyncClient, url: str, request: Request, seconds: float, concurrency: int
) -> int:
    """Requests completed in ``seconds`` by ``concurrency`` workers."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            response = await request(client, url, i)
            if response.status_code != 200:
                raise RuntimeError(f"unexpected {response.status_code}: {response.text[:200]}")
            done += 1
            i += concurrency

    async with anyio.create_task_group() as group:
        for n in range(concurrency):
            group.start_soon(worker, n)
    return done


async def _run(
    label: str, client: httpx.AsyncClient, url: str, args: argparse.Namespace
) -> list[tuple[str, str, float, float]]:
    rows = []
    for name, (request, commands) in _kinds(args.leads).items():
        count = await _measure(client, url, request, args.seconds, args.concurrency)
        rate = count / args.seconds
        rows.append((label, name, rate, rate * commands))
        print(f"{label:10} {name:28} {rate:10.0f} req/s {rate * commands:10.0f} commands/s")
    return rows


def _emulator(leads: int) -> Emulator:
    return Emulator(EmulatorConfig(rate_limit=False, operating_limit=False, seed_leads=leads))


async def _in_process(args: argparse.Namespace) -> list[Any]:
    emu = _emulator(args.leads)
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await _run("asgi", client, emu.webhook_url(), args)


async def _loopback(args: argparse.Namespace) -> list[Any]:
    emu = _emulator(args.leads)
    with serve_in_thread(emu) as base:
        limits = httpx.Limits(max_connections=args.concurrency)
        async with httpx.AsyncClient(limits=limits) as client:
            return await _run("loopback", client, emu.webhook_url(base), args)


def main() -> None:
    """Parse options and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--leads", type=int, default=1000, help="seeded leads")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--transport", choices=["asgi", "loopback", "both"], default="both")
    args = parser.parse_args()
    print(
        f"emulator overhead, limits off, {args.leads} leads, "
        f"{args.concurrency} in flight, {args.seconds:g} s each"
    )
    began = time.perf_counter()
    seeded = Emulator(EmulatorConfig(seed_leads=100_000))
    print(f"seeding 100,000 leads took {time.perf_counter() - began:.2f} s")
    seeded.close()
    if args.transport in ("asgi", "both"):
        anyio.run(_in_process, args)
    if args.transport in ("loopback", "both"):
        anyio.run(_loopback, args)


if __name__ == "__main__":
    main()
