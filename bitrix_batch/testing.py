"""pytest fixtures for testing your own code against the local Bitrix24 emulator.

Installed with the package as a pytest plugin (entry point ``bitrix_batch.testing``), or
enabled by hand with ``-p bitrix_batch.testing``. Nothing in ``bitrix_batch`` imports this
module, so the client never depends on pytest. Every fixture is synchronous, so it works with
the anyio plugin in strict or auto mode (and with any other async test runner): the client
talks to the emulator in-process, where there is no connection to open or close.

Fixtures:

- ``bitrix_emulator``: a fresh :class:`~bitrix_batch.emulator.Emulator` per test. Limits are
  off unless a test asks for them: ``@pytest.mark.bitrix_emulator(rate_limit=True, ...)``
  takes any :class:`~bitrix_batch.emulator.EmulatorConfig` field.
- ``bitrix_client``: a :class:`~bitrix_batch.BitrixClient` on the emulator's webhook, through
  ``httpx.ASGITransport``, with retries that do not wait.
- ``bitrix_server``: the same emulator served on a loopback port (127.0.0.1) for code that
  opens its own connections; it stops when the test ends.
- ``bitrix_stats``: a callable returning :func:`summary` of the emulator now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ._client import BitrixClient
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from .emulator import Emulator, EmulatorConfig

# The emulator is imported when a fixture first runs, not when pytest loads the plugin: a
# test run that uses none of the fixtures does not load it, and a broken or half-edited
# emulator cannot stop a run that does not use it.

__all__ = [
    "Loopback",
    "bitrix_client",
    "bitrix_emulator",
    "bitrix_emulator_config",
    "bitrix_server",
    "bitrix_stats",
    "client_for",
    "summary",
]

MARKER = "bitrix_emulator"
#: What a test's emulator is unless its marker says otherwise: fast, no limits.
_DEFAULTS: dict[str, Any] = {"rate_limit": False, "operating_limit": False}


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so ``--strict-markers`` runs accept it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**config): EmulatorConfig fields for this test's bitrix_emulator",
    )


@dataclass(frozen=True)
class Loopback:
    """Where a loopback-served emulator listens."""

    base_url: str
    webhook_url: str
    oauth_url: str


def summary(emulator: Emulator) -> dict[str, int]:
    """The emulator's counters in a few flat numbers, easy to assert on or print.

    ``requests`` (REST requests, refused ones included), ``batches``, ``commands`` (method
    runs: top-level calls and batch commands, not the ``batch`` calls), ``errors`` (failed
    calls and commands), ``status_503``, ``status_429``, ``timeouts`` (cut off at the
    request cap), ``faults`` (injected), ``duplicate_adds`` (adds repeating an earlier add's
    exact fields), ``oauth_refreshes``.
    """
    stats = emulator.stats
    return {
        "requests": stats.requests,
        "batches": stats.batches,
        "commands": sum(stats.commands.values()) - stats.commands["batch"],
        "errors": sum(stats.command_errors.values()),
        "status_503": stats.status_503,
        "status_429": stats.status_429,
        "timeouts": stats.request_timeouts,
        "faults": sum(stats.faults.values()),
        "duplicate_adds": sum(
            count - 1
            for counts in stats.add_fingerprints.values()
            for count in counts.values()
            if count > 1
        ),
        "oauth_refreshes": stats.oauth_refreshes,
    }


def client_for(emulator: Emulator, **options: Any) -> BitrixClient:
    """A client on ``emulator``'s webhook, in-process; ``options`` go to BitrixClient."""
    options.setdefault("rate_limit", None)  # the emulator's own bucket answers if it is on
    options.setdefault("retry", RetryPolicy.testing())
    return BitrixClient(
        emulator.webhook_url(), transport=httpx.ASGITransport(app=emulator.app), **options
    )


@pytest.fixture
def bitrix_emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    """The test's configuration: no limits, overridden by ``@pytest.mark.bitrix_emulator``."""
    from .emulator import EmulatorConfig

    options = dict(_DEFAULTS)
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        options.update(marker.kwargs)  # the closest marker wins
    return EmulatorConfig(**options)


@pytest.fixture
def bitrix_emulator(bitrix_emulator_config: EmulatorConfig) -> Iterator[Emulator]:
    """A fresh emulated portal for one test."""
    from .emulator import Emulator

    emulator = Emulator(bitrix_emulator_config)
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture
def bitrix_client(bitrix_emulator: Emulator) -> BitrixClient:
    """A :class:`BitrixClient` bound to ``bitrix_emulator`` through ``httpx.ASGITransport``."""
    return client_for(bitrix_emulator)


@pytest.fixture
def bitrix_server(bitrix_emulator: Emulator) -> Iterator[Loopback]:
    """``bitrix_emulator`` served on 127.0.0.1 (a free port) until the test ends."""
    from .emulator import serve_in_thread

    with serve_in_thread(bitrix_emulator) as base:
        yield Loopback(base, bitrix_emulator.webhook_url(base), bitrix_emulator.oauth_url(base))


@pytest.fixture
def bitrix_stats(bitrix_emulator: Emulator) -> Callable[[], dict[str, int]]:
    """``bitrix_stats()`` is :func:`summary` of the test's emulator at that moment."""
    return lambda: summary(bitrix_emulator)
