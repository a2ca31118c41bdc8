"""``bitrix-batch demo``: the whole round trip on a local emulator, checked.

It serves the emulator on 127.0.0.1 (a free port) with a cloud portal's limits (the standard
bucket, burst 50 and 2 requests/s, and the operating-time limit), imports linked records
through `BitrixClient.stream`: companies, contacts that name their company by
``$result[...]`` reference, deals that name their contact and company by `Ref`, reads every
record back with `BitrixClient.list_all`, and checks that each one is there exactly once with
the right links. It says how long that took against the bucket's own bound: N requests at
rate r with a burst of b cannot take less than max(0, (N - b) / r) seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from bitrix_batch._auth import Webhook
from bitrix_batch._client import BitrixClient
from bitrix_batch._events import Event
from bitrix_batch._refs import Ref
from bitrix_batch._result import CommandResult, Status
from bitrix_batch.progress import JobCounts, ProgressBar

from ._common import (
    BadInput,
    CannotRun,
    LogSetup,
    Secrets,
    add_common_options,
    say,
    silence,
    want_progress,
)
from ._run import drive

__all__ = ["Layout", "add_parser", "bucket_bound", "run"]

DEFAULT_RECORDS = 3000

_DESCRIPTION = """\
Serve the emulator on 127.0.0.1 with a cloud portal's limits, import linked records (companies;
contacts naming their company by $result reference; deals naming their contact and company),
read them all back with list_all, check that each is there exactly once with the right links,
and compare the wall time with the rate limit's bound: N requests at rate r with a burst of b
take at least max(0, (N - b) / r) seconds.
"""

_ENTITIES = ("company", "contact", "deal")


def add_parser(sub: Any) -> None:
    """Add ``demo`` to the subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="import linked records into a local emulator, read them back, check them",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 verified; 1 something did not check out; 4 it could not run",
    )
    p.add_argument(
        "--records",
        type=int,
        default=DEFAULT_RECORDS,
        metavar="N",
        help=f"records to import: a tenth companies, the rest contacts and deals"
        f" (default: {DEFAULT_RECORDS})",
    )
    add_common_options(p)
    p.set_defaults(handler=run)


def bucket_bound(requests: int, rate: float, burst: int) -> float:
    """The least time `requests` can take through a leaky bucket: max(0, (N - b) / r)."""
    return max(0.0, (requests - burst) / rate)


@dataclass(frozen=True, slots=True)
class Layout:
    """How many of each: contact i belongs to company i % companies, deal d to contact
    d % contacts (and to that contact's company)."""

    companies: int
    contacts: int
    deals: int

    @classmethod
    def of(cls, records: int) -> Layout:
        """A tenth companies (at least one), the rest split between contacts and deals."""
        companies = max(1, records // 10)
        contacts = (records - companies) // 2
        return cls(companies, contacts, records - companies - contacts)

    @property
    def records(self) -> int:
        """Every record."""
        return self.companies + self.contacts + self.deals

    def commands(self) -> Iterator[tuple[str, Any]]:
        """The import, each company followed by its contacts and their deals, so that
        references stay close to what they name (a stream looks back a window at a time)."""
        for j in range(self.companies):
            yield f"co{j}", ("crm.company.add", {"fields": {"TITLE": f"Demo company {j}"}})
            for i in range(j, self.contacts, self.companies):
                # The server's own syntax, in a string...
                fields = {"NAME": f"Demo contact {i}", "COMPANY_ID": f"$result[co{j}]"}
                yield f"ct{i}", ("crm.contact.add", {"fields": fields})
                for d in range(i, self.deals, self.contacts):
                    # ... and the typed form.
                    deal = {
                        "TITLE": f"Demo deal {d}",
                        "CONTACT_ID": Ref(f"ct{i}"),
                        "COMPANY_ID": Ref(f"co{j}"),
                    }
                    yield f"dl{d}", ("crm.deal.add", {"fields": deal})


@dataclass
class _Outcome:
    """What the demo saw, for the summary."""

    imported: JobCounts = field(default_factory=JobCounts)
    import_seconds: float = 0.0
    import_requests: int = 0
    ids: dict[str, int] = field(default_factory=dict)  # command key -> the new record's ID
    rows: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    export_rows: int = 0
    export_seconds: float = 0.0
    export_requests: int = 0
    problems: list[str] = field(default_factory=list)
    #: Every client event of both phases, counted.
    events: JobCounts = field(default_factory=JobCounts)


class _Events:
    """The client's hook: every event counted, and handed to the bar of the phase running."""

    def __init__(self) -> None:
        self.counts = JobCounts()
        self.bar: ProgressBar | None = None

    def __call__(self, event: Event) -> None:
        self.counts.on_event(event)
        if self.bar is not None:
            self.bar.on_event(event)


async def _demo(url: str, layout: Layout, progress: bool, log: LogSetup) -> _Outcome:
    outcome = _Outcome()
    events = _Events()
    outcome.events = events.counts

    def keep(r: CommandResult) -> None:
        if r.status is Status.OK and isinstance(r.result, int):
            outcome.ids[str(r.key)] = r.result
        elif len(outcome.problems) < 5:
            why = r.error or r.skip or r.uncertain or r.result
            outcome.problems.append(f"{r.key} ({r.method}): {r.status.value}: {why}")

    async with BitrixClient(url, on_event=events) as client:
        with _bar(progress, layout.records, "import", "cmd", events, log) as bar:
            report = await drive(
                client,
                layout.commands(),
                counts=bar.counts if bar else outcome.imported,
                bar=bar,
                sink=keep,
            )
            if bar is not None:
                outcome.imported = bar.counts
        outcome.import_seconds = report.seconds
        outcome.import_requests = events.counts.requests
        started = time.monotonic()
        with _bar(progress, layout.records, "export", "row", events, log) as bar:
            for entity, select in (
                ("company", ["ID", "TITLE"]),
                ("contact", ["ID", "NAME", "COMPANY_ID"]),
                ("deal", ["ID", "TITLE", "CONTACT_ID", "COMPANY_ID"]),
            ):
                found = outcome.rows.setdefault(entity, {})
                async for row in client.list_all(f"crm.{entity}.list", {"select": select}):
                    ident = int(row["ID"])
                    if ident in found:
                        outcome.problems.append(f"{entity} {ident} read twice")
                    found[ident] = row
                    outcome.export_rows += 1
                    if bar is not None:
                        bar.update(outcome.export_rows)
        outcome.export_seconds = time.monotonic() - started
        outcome.export_requests = events.counts.requests - outcome.import_requests
    return outcome


@contextlib.contextmanager
def _bar(
    progress: bool, total: int, desc: str, unit: str, events: _Events, log: LogSetup
) -> Iterator[ProgressBar | None]:
    if not progress:
        yield None
        return
    with ProgressBar(total, desc=desc, unit=unit) as bar:
        events.bar = log.handler.bar = bar
        try:
            yield bar
        finally:
            events.bar = log.handler.bar = None


def _verify(layout: Layout, seen: _Outcome, emu: Any) -> list[str]:
    """What does not check out (nothing, when all is well)."""
    problems = list(seen.problems)
    counts = seen.imported
    if counts.ok != layout.records:
        problems.append(f"{counts.ok} of {layout.records} commands succeeded")
    ids = seen.ids
    expected = {"company": layout.companies, "contact": layout.contacts, "deal": layout.deals}
    for entity in _ENTITIES:
        rows = seen.rows.get(entity, {})
        if len(rows) != expected[entity]:
            problems.append(f"{len(rows)} {entity} rows read back, {expected[entity]} imported")
        stored = emu.count(entity)
        if stored != expected[entity]:
            problems.append(f"the portal holds {stored} {entity} records, {expected[entity]} sent")
        if emu.stats.duplicate_adds(entity):
            problems.append(f"some {entity} records were added twice")

    def link(entity: str, key: str, fld: str, target: str) -> None:
        ident, want = ids.get(key), ids.get(target)
        row = seen.rows.get(entity, {}).get(ident) if ident is not None else None
        if row is None or want is None or str(row.get(fld)) != str(want):
            got = None if row is None else row.get(fld)
            problems.append(f"{key}: {fld} is {got!r}, expected the ID of {target} ({want})")

    for i in range(layout.contacts):
        link("contact", f"ct{i}", "COMPANY_ID", f"co{i % layout.companies}")
    for d in range(layout.deals):
        contact = d % layout.contacts
        link("deal", f"dl{d}", "CONTACT_ID", f"ct{contact}")
        link("deal", f"dl{d}", "COMPANY_ID", f"co{contact % layout.companies}")
    return problems


def run(args: argparse.Namespace) -> int:
    """``bitrix-batch demo``: see the subcommand's ``--help``."""
    if args.records < 3:
        raise BadInput("--records: at least 3 (a company, a contact and a deal)")
    try:
        import uvicorn  # noqa: F401  (only whether it is there)
    except ImportError:
        raise CannotRun(
            "the demo serves the emulator with uvicorn: pip install 'bitrix_batch[cli]'"
        ) from None
    from bitrix_batch.emulator import Emulator, serve_in_thread

    layout = Layout.of(args.records)
    progress = want_progress(args.progress)
    emu = Emulator()  # a cloud portal's defaults: the standard bucket, the operating limit
    cfg = emu.config
    try:
        with serve_in_thread(emu) as base:
            url = emu.webhook_url(base)
            secrets = Secrets(Webhook.parse(url).secrets)
            with LogSetup(args.log_level, secrets) as log:
                started = time.monotonic()
                seen = anyio.run(_demo, url, layout, progress, log)
                wall = time.monotonic() - started
            problems = _verify(layout, seen, emu)
            address = base.removeprefix("http://")
    finally:
        emu.close()
    requests = emu.stats.requests
    rate, burst = cfg.effective_drain, cfg.effective_burst
    bound = bucket_bound(requests, rate, burst)
    c, e = seen.imported, seen.events
    share = f", {bound / wall:.0%} of the fastest it allows" if bound > 0 and wall > 0 else ""
    lines = [
        f"bitrix-batch demo on a local Bitrix24 emulator at {address}"
        f" (the standard bucket: burst {burst}, {rate:g} requests/s)",
        f"import: {layout.records} records in {seen.import_requests} requests,"
        f" {seen.import_seconds:.1f} s: {c.ok} ok, {c.failed} failed, {c.skipped} skipped,"
        f" {c.unknown} unknown (503: {e.status_503}, 429: {e.status_429},"
        f" retries: {e.retries})",
        f"  {layout.companies} companies; {layout.contacts} contacts, each naming its company"
        f" by $result reference; {layout.deals} deals, each naming its contact and company"
        " by Ref",
        f"export: {seen.export_rows} rows read back with list_all in {seen.export_requests}"
        f" requests, {seen.export_seconds:.1f} s",
        f"requests counted by the emulator: {requests} (503: {emu.stats.status_503},"
        f" 429: {emu.stats.status_429})",
        f"wall time {wall:.1f} s; the bucket's bound for {requests} requests,"
        f" max(0, ({requests} - {burst}) / {rate:g}) = {bound:.1f} s{share}",
    ]
    if problems:
        lines.append(f"NOT verified: {len(problems)} problem(s), the first:")
        lines.extend(f"  {p}" for p in problems[:10])
    else:
        lines.append(
            "verified: every record exactly once, every contact and deal linked to its records,"
            " no write twice"
        )
    try:
        print("\n".join(lines))
        sys.stdout.flush()
    except (OSError, ValueError) as exc:  # stdout piped into a program that is gone
        silence(sys.stdout)
        say(f"bitrix-batch: the demo's report could not be written to stdout: {exc}")
    return 0 if not problems else 1
