"""Counters tests and benchmarks read to prove "nothing lost, nothing duplicated"."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats"]


@dataclass
class Stats:
    """What the emulator saw since the last reset.

    ``requests`` counts REST HTTP requests (rejected ones included); ``statuses`` counts HTTP
    statuses sent; ``commands`` counts method executions by method name, top-level calls and
    batch sub-commands alike; ``command_errors`` counts error codes of failed calls (top level
    or inside a batch); ``writes[entity][id]`` counts add/update/delete per record;
    ``add_fingerprints[entity]`` counts adds by their exact field set, so a retried add shows
    up as a count above 1.
    """

    requests: int = 0
    batches: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    command_errors: Counter[str] = field(default_factory=Counter)
    query_limit_exceeded: int = 0
    operation_time_limit: int = 0
    operation_time_limit_commands: int = 0
    #: Requests cut off at the per-request time cap (answered 500).
    request_timeouts: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    oauth_refreshes: int = 0
    #: ``authorization_code`` grants exchanged for tokens.
    oauth_codes_exchanged: int = 0
    writes: dict[str, dict[int, Counter[str]]] = field(default_factory=dict)
    add_fingerprints: dict[str, Counter[str]] = field(default_factory=dict)

    def reset(self) -> None:
        """Zero every counter in place (holders of this object keep seeing it)."""
        fresh = Stats()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    @property
    def status_503(self) -> int:
        """HTTP 503 answers (rate limit and injected 503 faults)."""
        return self.statuses[503]

    @property
    def status_429(self) -> int:
        """HTTP 429 answers (top-level OPERATION_TIME_LIMIT)."""
        return self.statuses[429]

    def record_write(self, entity: str, ident: int, action: str) -> None:
        """Count one add/update/delete of a record."""
        self.writes.setdefault(entity, {}).setdefault(ident, Counter())[action] += 1

    def record_add(self, entity: str, ident: int, fields: Any) -> None:
        """Count an add, and its fingerprint (the canonical JSON of its fields)."""
        self.record_write(entity, ident, "add")
        fingerprint = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
        self.add_fingerprints.setdefault(entity, Counter())[fingerprint] += 1

    def duplicate_adds(self, entity: str) -> dict[str, int]:
        """Field sets that were added more than once (fingerprint -> count)."""
        counts = self.add_fingerprints.get(entity, Counter())
        return {k: v for k, v in counts.items() if v > 1}

    def writes_of(self, entity: str, ident: int) -> dict[str, int]:
        """add/update/delete counts of one record."""
        return dict(self.writes.get(entity, {}).get(ident, Counter()))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (``GET /_emulator/stats``)."""
        return {
            "requests": self.requests,
            "batches": self.batches,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "status_503": self.status_503,
            "status_429": self.status_429,
            "query_limit_exceeded": self.query_limit_exceeded,
            "operation_time_limit": self.operation_time_limit,
            "operation_time_limit_commands": self.operation_time_limit_commands,
            "request_timeouts": self.request_timeouts,
            "commands": dict(self.commands),
            "command_errors": dict(self.command_errors),
            "faults": dict(self.faults),
            "oauth_refreshes": self.oauth_refreshes,
            "oauth_codes_exchanged": self.oauth_codes_exchanged,
            "writes": {
                entity: {str(i): dict(c) for i, c in records.items()}
                for entity, records in self.writes.items()
            },
            "duplicate_adds": {
                entity: sum(v - 1 for v in counts.values() if v > 1)
                for entity, counts in self.add_fingerprints.items()
            },
        }
