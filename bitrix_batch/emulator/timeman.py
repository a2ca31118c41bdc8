"""The working day of ``timeman.*`` (scope ``timeman``): ``status``, ``open``, ``pause``,
``close`` and ``settings``, in the shapes of the REST docs.

One workday per user, on the emulator's clock: ``CLOSED`` -> ``OPENED`` (``open``) ->
``PAUSED`` (``pause``) -> ``OPENED`` (``open`` again) -> ``CLOSED`` (``close``). A day opened
before today's midnight and never closed reads ``EXPIRED``. ``DURATION`` is the time worked
once the day is closed (``00:00:00`` before), ``TIME_LEAKS`` the time spent paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import errors
from .engine import CallContext, Engine, MethodResult
from .php import PhpKey, php_intval

__all__ = ["register_timeman"]

#: The docs' example settings of a user with time tracking on.
_SETTINGS = {
    "UF_TIMEMAN": True,
    "UF_TM_FREE": False,
    "UF_TM_MAX_START": "09:15:00",
    "UF_TM_MIN_FINISH": "17:45:00",
    "UF_TM_MIN_DURATION": "08:00:00",
    "UF_TM_ALLOWED_DELTA": "00:15:00",
}


def _hms(seconds: float) -> str:
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass
class _Day:
    started: float
    finished: float | None = None
    paused_at: float | None = None
    leaks: float = 0.0
    ip_close: str = ""


class _Timeman:
    """Workdays per user."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.days: dict[int, _Day] = {}

    def user(self, ctx: CallContext, params: dict[PhpKey, Any]) -> int:
        """``USER_ID`` (another user's day) or the caller; 400 with an empty code if unknown."""
        upper = {str(k).upper(): v for k, v in params.items()}
        if "USER_ID" not in upper:
            return ctx.caller.user_id
        user = php_intval(upper["USER_ID"])
        lookup = self.engine.lookup("user.get")
        found = lookup.handler(ctx, {"ID": user}).result if lookup is not None else [user]
        if user <= 0 or not found:
            raise errors.RestError("", "User not found")
        return user

    def out(self, ctx: CallContext, day: _Day | None) -> dict[str, Any]:
        """A workday as ``timeman.status`` prints it."""
        now = ctx.timeline.cursor
        engine = self.engine
        offset = int(ctx.config.tz.utcoffset(None).total_seconds())
        if day is None:
            status, start, finish, duration, leaks = "CLOSED", None, None, "00:00:00", 0.0
        else:
            leaks = day.leaks + (now - day.paused_at if day.paused_at is not None else 0.0)
            start = engine.iso(day.started)
            if day.finished is not None:
                status, finish = "CLOSED", engine.iso(day.finished)
                duration = _hms(day.finished - day.started - day.leaks)
            else:
                finish, duration = None, "00:00:00"
                status = "PAUSED" if day.paused_at is not None else "OPENED"
                midnight = datetime.fromtimestamp(now, ctx.config.tz).replace(
                    hour=0, minute=0, second=0, microsecond=0
                )
                if day.started < midnight.timestamp():
                    status = "EXPIRED"
        return {
            "STATUS": status,
            "TIME_START": start,
            "TIME_FINISH": finish,
            "DURATION": duration,
            "TIME_LEAKS": _hms(leaks),
            "ACTIVE": False,
            "IP_OPEN": "",
            "IP_CLOSE": day.ip_close if day is not None else "",
            "LAT_OPEN": 0,
            "LON_OPEN": 0,
            "LAT_CLOSE": 0,
            "LON_CLOSE": 0,
            "TZ_OFFSET": offset,
        }

    def status(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The user's current workday."""
        return MethodResult(self.out(ctx, self.days.get(self.user(ctx, params))))

    def open(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Start a new day, or resume a paused one."""
        user = self.user(ctx, params)
        day = self.days.get(user)
        now = ctx.timeline.cursor
        if day is not None and day.paused_at is not None and day.finished is None:
            if "TIME" in {str(k).upper() for k in params}:
                raise errors.RestError("TIME", "Unable to set time, work day is paused")
            day.leaks += now - day.paused_at
            day.paused_at = None
        elif day is None or day.finished is not None:
            day = self.days[user] = _Day(now)
        return MethodResult(self.out(ctx, day))

    def pause(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Pause an open day (a closed or paused day is left as it is)."""
        day = self.days.get(self.user(ctx, params))
        if day is not None and day.finished is None and day.paused_at is None:
            day.paused_at = ctx.timeline.cursor
        return MethodResult(self.out(ctx, day))

    def close(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """End the day (a pause still running counts as a leak)."""
        day = self.days.get(self.user(ctx, params))
        now = ctx.timeline.cursor
        if day is not None and day.finished is None:
            if day.paused_at is not None:
                day.leaks += now - day.paused_at
                day.paused_at = None
            day.finished = now
            day.ip_close = "127.0.0.1"
        return MethodResult(self.out(ctx, day))

    def settings(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The user's time-tracking settings, and whether the caller administers them."""
        self.user(ctx, params)
        return MethodResult({**_SETTINGS, "ADMIN": ctx.caller.user_id == 1})


def register_timeman(engine: Engine) -> None:
    """Add ``timeman.status/open/pause/close/settings`` (scope ``timeman``)."""
    timeman = _Timeman(engine)
    for name, handler in (
        ("timeman.status", timeman.status),
        ("timeman.open", timeman.open),
        ("timeman.pause", timeman.pause),
        ("timeman.close", timeman.close),
        ("timeman.settings", timeman.settings),
    ):
        engine.register(name, handler, "timeman")
