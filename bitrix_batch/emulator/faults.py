"""Injected infrastructure faults: seeded at random, or scripted for the next requests."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, get_args

import httpx

from .config import FaultConfig

__all__ = ["DroppedConnection", "FaultInjector", "FaultKind", "FaultPlan", "html_page"]

FaultKind = Literal[
    "ok",
    "html_5xx",
    "unavailable_503",
    "drop_before_run",
    "fail_after_run",
    "drop_after_run",
    "slow",
]
_PRE = ("html_5xx", "unavailable_503", "drop_before_run")
_POST = ("fail_after_run", "drop_after_run")


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app to cut the connection after the headers went out.

    Over uvicorn the socket is closed mid-response; through ``httpx.ASGITransport`` the
    client sees this exception, an ``httpx.TransportError`` like a real dropped connection.
    """

    def __init__(self) -> None:
        super().__init__("Server disconnected without sending a complete response.")


@dataclass
class FaultPlan:
    """What happens to one request: a fault before running, after running, and/or a delay."""

    pre: str | None = None
    post: str | None = None
    slow: bool = False


def html_page(status: int) -> bytes:
    """A gateway-style HTML error page (what nginx shows in front of PHP)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


class FaultInjector:
    """Draws faults per request from a seeded generator, after any scripted ones."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._script: deque[FaultKind] = deque()

    def script(self, *kinds: FaultKind) -> None:
        """Force the outcome of the next REST requests, in order (``"ok"`` = no fault)."""
        valid = get_args(FaultKind)
        for kind in kinds:
            if kind not in valid:
                raise ValueError(f"unknown fault kind {kind!r}")
        self._script.extend(kinds)

    def clear(self) -> None:
        """Drop the scripted faults and restart the random sequence."""
        self._script.clear()
        self._rng = random.Random(self.config.seed)

    def draw(self, method: str) -> FaultPlan:
        """The fault plan for one request to ``method``."""
        if self._script:
            kind = self._script.popleft()
            return FaultPlan(
                pre=kind if kind in _PRE else None,
                post=kind if kind in _POST else None,
                slow=kind == "slow",
            )
        cfg = self.config
        if cfg.methods is not None and method.lower() not in cfg.methods:
            return FaultPlan()
        rng = self._rng
        plan = FaultPlan()
        # One draw per knob, in a fixed order, so the sequence depends only on the seed.
        draws = {
            "html_5xx": rng.random() < cfg.html_5xx,
            "unavailable_503": rng.random() < cfg.unavailable_503,
            "drop_before_run": rng.random() < cfg.drop_before_run,
            "fail_after_run": rng.random() < cfg.fail_after_run,
            "drop_after_run": rng.random() < cfg.drop_after_run,
        }
        plan.slow = rng.random() < cfg.slow
        plan.pre = next((k for k in _PRE if draws[k]), None)
        if plan.pre is None:
            plan.post = next((k for k in _POST if draws[k]), None)
        return plan
