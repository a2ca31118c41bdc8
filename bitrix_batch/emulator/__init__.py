"""A faithful local Bitrix24 REST portal for tests and benchmarks.

``Emulator(EmulatorConfig(...)).app`` is a plain ASGI application: use it in-process with
``httpx.ASGITransport``, or on loopback with :func:`serve_in_thread` /
``python -m bitrix_batch.emulator``. It is written independently of the client (its own
``parse_str``, ``$result`` substitution and PHP-style JSON) so that one shared bug cannot pass
on both sides. Not imported by ``bitrix_batch`` itself.
"""

from __future__ import annotations

from .app import Emulator
from .config import DEFAULT_COSTS, EmulatorConfig, FaultConfig, MethodCost
from .faults import DroppedConnection, FaultKind
from .server import serve_in_thread
from .stats import Stats

__all__ = [
    "DEFAULT_COSTS",
    "DroppedConnection",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "FaultKind",
    "MethodCost",
    "Stats",
    "serve_in_thread",
]
