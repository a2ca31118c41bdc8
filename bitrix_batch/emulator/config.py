"""Every knob of the emulator, with the real portal's numbers as defaults."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Literal

__all__ = [
    "DEFAULT_COSTS",
    "EmulatorConfig",
    "FaultConfig",
    "MethodCost",
    "Plan",
    "BatchCharge",
    "OperatingMode",
]

Plan = Literal["standard", "enterprise"]
#: How a batch is charged to the operating-time limiter (the sources disagree, §4.2):
#: "submethods" = each sub-command under its own method, batch itself free (older code S7a);
#: "batch" = only the batch, at ``batch_weight`` x its duration (the live measurement I4);
#: "both" = both of the above (newer code S7b read literally).
BatchCharge = Literal["submethods", "batch", "both"]
#: "baskets": today's cloud as the 2026 limits page describes it: up to ten one-minute baskets,
#: each opened by the first charged call in its minute and dropped ten minutes after that call;
#: blocked while their sum is over the limit;
#: "window": the older code (S7a): buckets aligned to clock minutes, the same block rule;
#: "ban": exceeding bans the method for ``operating_ban_seconds`` and clears the window (S7b).
OperatingMode = Literal["baskets", "window", "ban"]


@dataclass(frozen=True)
class MethodCost:
    """Modelled server time of one call: ``fixed + per_row * rows`` seconds."""

    fixed: float
    per_row: float = 0.0

    def seconds(self, rows: int) -> float:
        """The modelled processing time for a call that touched ``rows`` rows."""
        return self.fixed + self.per_row * rows


#: Lookup order: the exact method name, then ``*.<last segment>``, then ``*``.
#: Calibrated on real answers: 154 ``crm.lead.list`` pages captured from a live portal
#: (fast-bitrix24's ``tests/real_responses``, the reference's R1) have a median processing time
#: of 0.037 s for 50 rows, hence 0.0125 + 0.0005 x 50; the reference's "50 ms per add"
#: (rest-2026-and-users.md §6.1; captured adds take 0.044 to 0.094 s) sets add and update.
DEFAULT_COSTS: Mapping[str, MethodCost] = {
    "*.add": MethodCost(0.05),
    "*.update": MethodCost(0.05),
    "*.delete": MethodCost(0.04),
    "*.get": MethodCost(0.03),
    "*.list": MethodCost(0.0125, 0.0005),
    "*.fields": MethodCost(0.02),
    "user.get": MethodCost(0.0125, 0.0005),
    "user.search": MethodCost(0.0125, 0.0005),
    "department.get": MethodCost(0.02, 0.001),
    "user.current": MethodCost(0.01),
    #: Up to 20 creations: one add's time per item created.
    "crm.item.batchimport": MethodCost(0.02, 0.05),
    "batch": MethodCost(0.002),
    "*": MethodCost(0.02),
}


@dataclass
class FaultConfig:
    """Seeded random faults; each rate is a probability per REST request (0 = never).

    Faults are drawn in this order and the first hit wins: ``html_5xx`` (an HTML error page,
    nothing runs), ``unavailable_503`` (503 before running), ``drop_before_run`` (connection
    dropped, nothing runs), then the method runs, then ``fail_after_run`` (an HTML 500 although
    the work was done: the ambiguous case) or ``drop_after_run``. ``slow`` adds
    ``slow_seconds`` of real delay to any request it hits. ``methods`` restricts faults to
    those top-level method names (``None`` = all).
    """

    seed: int = 0
    html_5xx: float = 0.0
    html_status: int = 502
    unavailable_503: float = 0.0
    drop_before_run: float = 0.0
    fail_after_run: float = 0.0
    fail_after_run_status: int = 500
    drop_after_run: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.0
    methods: frozenset[str] | None = None


def _default_clock() -> float:
    return time.time()


@dataclass
class EmulatorConfig:
    """Configuration of one emulated portal. Defaults follow the real cloud portal."""

    # Identity and credentials.
    domain: str = "emulator.bitrix24.local"
    webhook_user_id: int = 1
    webhook_code: str = "emulatorwebhookcode"
    #: Scopes granted to the default webhook; ``None`` grants every scope.
    webhook_scopes: frozenset[str] | None = None
    oauth_client_id: str = "local.emulator.app"
    oauth_client_secret: str = "emulator-client-secret"
    #: Scopes of OAuth tokens; ``None`` grants every scope.
    oauth_scopes: frozenset[str] | None = None
    #: Where ``/oauth/authorize/`` may send a code (the application's registered handler);
    #: http(s) to this machine (127.0.0.1, ::1, localhost) is always allowed.
    oauth_redirect_uris: frozenset[str] = frozenset()
    #: Lifetime of an ``authorization_code`` grant's code (30 s, D11).
    oauth_code_ttl: float = 30.0
    #: Whether a refresh also kills the access token issued with the refresh token used, as
    #: the old docs say (D17). Off by default: the official SDK's live suite goes on with the
    #: old access token after a refresh, so portals keep it until it expires.
    oauth_refresh_revokes_access: bool = False
    access_token_ttl: float = 3600.0
    refresh_token_ttl: float = 180 * 86400.0

    # Store.
    database: str = ":memory:"
    seed: int = 0
    seed_leads: int = 0
    seed_contacts: int = 0
    seed_companies: int = 0
    seed_deals: int = 0
    #: Extra users generated besides user 1 (the webhook's owner).
    seed_users: int = 0

    # Request-rate limit (leaky bucket, 503 QUERY_LIMIT_EXCEEDED).
    rate_limit: bool = True
    plan: Plan = "standard"
    #: Block threshold; ``None`` takes the plan's (50, Enterprise 250).
    rate_burst: int | None = None
    #: Drain per second; ``None`` takes the plan's (2, Enterprise 5).
    rate_drain: float | None = None
    #: Whether a rejected request still adds to the counter (unknown on the real server).
    rate_count_rejected: bool = False

    # Operating-time limit (429 OPERATION_TIME_LIMIT).
    operating_limit: bool = True
    operating_limit_seconds: float = 480.0
    operating_window_seconds: float = 600.0
    operating_bucket_seconds: float = 60.0
    operating_mode: OperatingMode = "baskets"
    operating_ban_seconds: float = 300.0
    #: A call's time counts only when it is above this floor.
    operating_floor_seconds: float = 0.1
    batch_charge: BatchCharge = "submethods"
    batch_weight: float = 0.5

    #: Today's cloud cuts a request off after 60 s (limits page, 2026-08): the commands that
    #: started before the cap have run, the rest have not, and the answer is a 500
    #: ``INTERNAL_SERVER_ERROR``. ``None`` = no cap (for tests that model exaggerated costs).
    request_time_limit: float | None = 60.0

    # Time.
    clock: Callable[[], float] = _default_clock
    #: Real sleep = modelled processing time x time_scale (0 = answer at once).
    time_scale: float = 0.0
    costs: Mapping[str, MethodCost] = field(default_factory=lambda: dict(DEFAULT_COSTS))
    #: Time zone of ``date_start``/``date_finish`` and record dates.
    tz: timezone = field(default_factory=lambda: timezone(timedelta(hours=3)))

    # Server parameters.
    batch_max_length: int = 50
    list_page_size: int = 50
    max_input_vars: int = 1000
    #: PHP json_encode flags of Bitrix (\u003C, \u0022, \/ ...); off = plain JSON.
    php_json_escapes: bool = True

    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def effective_burst(self) -> int:
        """The leaky bucket's block threshold after applying the plan."""
        if self.rate_burst is not None:
            return self.rate_burst
        return 250 if self.plan == "enterprise" else 50

    @property
    def effective_drain(self) -> float:
        """The leaky bucket's drain per second after applying the plan."""
        if self.rate_drain is not None:
            return self.rate_drain
        return 5.0 if self.plan == "enterprise" else 2.0

    def cost_of(self, method: str) -> MethodCost:
        """The cost model entry for ``method``."""
        costs = self.costs
        if method in costs:
            return costs[method]
        suffix = "*." + method.rsplit(".", 1)[-1]
        if suffix in costs:
            return costs[suffix]
        return costs.get("*", MethodCost(0.0))
