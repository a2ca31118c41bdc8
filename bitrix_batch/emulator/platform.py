"""The portal's own methods: ``app.info``, ``profile``, ``scope``, ``methods``, ``method.get``,
``server.time``, ``app.option.*``/``user.option.*``, ``feature.get``, ``user.admin``,
``user.access`` and ``access.name`` (event bindings are in :mod:`.platform_events`).

Shapes and errors follow the server's ``rest`` module (S1, ``rest/lib/api/user.php``):
``app.info`` answers an application with its card and a webhook with its scopes and licence;
options need an application context (403 ``ACCESS_DENIED`` for a webhook).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .engine import CallContext, Caller, Engine, MethodResult
from .php import PhpKey, php_str, php_truthy
from .platform_events import access_denied, null_argument, register_events

__all__ = ["register_platform"]

#: The portal's first user administers it.
_ADMIN_ID = 1


@dataclass
class _Platform:
    """Per-portal state: event bindings and options per OAuth application (and user)."""

    engine: Engine
    app_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_options: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    # -- helpers ----------------------------------------------------------------------------

    def scopes_of(self, caller: Caller) -> list[str]:
        """The caller's scopes; ``None`` (all granted) lists every scope the portal has."""
        if caller.scopes is not None:
            return sorted(caller.scopes)
        return self.all_scopes()

    def all_scopes(self) -> list[str]:
        """Every scope of the portal: the documented ones and those of served methods."""
        served = {s.scope for s in self.engine.methods.values() if s.scope is not None}
        return sorted(served | set(_PORTAL_SCOPES))

    def granted(self, caller: Caller, scope: str | None) -> bool:
        """Whether a method of ``scope`` is available to the caller."""
        if scope is None or caller.scopes is None:
            return True
        return scope in caller.scopes or (scope == "user" and "user_basic" in caller.scopes)

    # -- methods ----------------------------------------------------------------------------

    def app_info(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """An application's card, or a webhook's scopes and licence."""
        license_, type_, family = _license(ctx)
        caller = ctx.caller
        if caller.kind == "webhook":
            return MethodResult({"SCOPE": self.scopes_of(caller), "LICENSE": license_})
        result = {
            "ID": 1,
            "CODE": ctx.config.oauth_client_id,
            "VERSION": 1,
            "STATUS": "L",
            "INSTALLED": True,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LANGUAGE_ID": "en",
            "LICENSE": license_,
            "LICENSE_TYPE": type_,
            "LICENSE_FAMILY": family,
        }
        return MethodResult(result)

    def profile(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The caller's basic profile, taken from what ``user.current`` says about them."""
        current = self.engine.lookup("user.current")
        user: dict[str, Any] = {}
        if current is not None:
            produced = current.handler(ctx, {})
            if isinstance(produced.result, dict):
                user = produced.result
        if not user or user.get("ACTIVE") is False:
            return MethodResult([])
        out: dict[str, Any] = {
            "ID": php_str(user.get("ID", ctx.caller.user_id)),
            "ADMIN": ctx.caller.user_id == _ADMIN_ID,
            "NAME": user.get("NAME", ""),
            "LAST_NAME": user.get("LAST_NAME", ""),
            "PERSONAL_GENDER": user.get("PERSONAL_GENDER", ""),
            "TIME_ZONE": user.get("TIME_ZONE", ""),
        }
        if user.get("PERSONAL_PHOTO"):
            out["PERSONAL_PHOTO"] = user["PERSONAL_PHOTO"]
        return MethodResult(out)

    def scope(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The caller's scopes, or with ``full=true`` every scope of the portal."""
        upper = {str(k).upper(): v for k, v in params.items()}
        if php_truthy(upper.get("FULL")):
            return MethodResult(self.all_scopes())
        return MethodResult(self.scopes_of(ctx.caller))

    def methods(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Method names: of one ``scope``, of all (``full``), or those the caller may call."""
        upper = {str(k).upper(): v for k, v in params.items()}
        specs = list(self.engine.methods.values())
        if "SCOPE" in upper:
            wanted = php_str(upper["SCOPE"])
            names = [s.name for s in specs if (s.scope or "") == wanted]
        elif php_truthy(upper.get("FULL")):
            names = [s.name for s in specs]
        else:
            names = [s.name for s in specs if self.granted(ctx.caller, s.scope)]
        return MethodResult(names)

    def method_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``{"isExisting": .., "isAvailable": ..}`` for the method ``name``."""
        name = php_str(params.get("name", ""))
        spec = self.engine.lookup(name) if name else None
        existing = spec is not None
        available = spec is not None and self.granted(ctx.caller, spec.scope)
        return MethodResult({"isExisting": existing, "isAvailable": available})

    def server_time(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """The portal's current time, ``date('c')``."""
        return MethodResult(ctx.now_iso())

    # -- options, features, access ---------------------------------------------------------

    def app_option_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """One option of the application (``option``), or all of them."""
        options = self.app_options.get(_application(ctx), {})
        return MethodResult(_option_value(options, params))

    def app_option_set(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Store ``options`` (or the parameters themselves) for the application."""
        self.app_options.setdefault(_application(ctx), {}).update(_options_in(params))
        return MethodResult(True)

    def user_option_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """One option of the application for the calling user, or all of them."""
        options = self.user_options.get((_application(ctx), ctx.caller.user_id), {})
        return MethodResult(_option_value(options, params))

    def user_option_set(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Store options of the application for the calling user."""
        key = (_application(ctx), ctx.caller.user_id)
        self.user_options.setdefault(key, {}).update(_options_in(params))
        return MethodResult(True)

    def feature_get(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """``{"value": "Y"|"N"}``: whether the portal's plan has a feature."""
        upper = {str(k).upper(): v for k, v in params.items()}
        code = php_str(upper.get("CODE", ""))
        if not code:
            raise errors.RestError("CODE_EMPTY", "CODE can't be empty")
        return MethodResult({"value": "Y" if code in _FEATURES else "N"})

    def user_admin(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Whether the caller administers the portal."""
        return MethodResult(ctx.caller.user_id == _ADMIN_ID)

    def user_access(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Whether the caller holds one of the access codes (an admin holds them all)."""
        upper = {str(k).upper(): v for k, v in params.items()}
        codes = upper.get("ACCESS")
        wanted = [php_str(c) for c in codes.values()] if isinstance(codes, dict) else [codes]
        if ctx.caller.user_id == _ADMIN_ID:
            return MethodResult(True)
        held = {"AU", "G2", f"U{ctx.caller.user_id}"}
        return MethodResult(any(php_str(code) in held for code in wanted if code is not None))

    def access_name(self, ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
        """Names of access codes (``G2``, ``AU``, ``U1``, ``D1``...); ``false`` without any."""
        upper = {str(k).upper(): v for k, v in params.items()}
        codes = upper.get("ACCESS")
        if not isinstance(codes, dict) or not codes:
            return MethodResult(False)
        out: dict[str, Any] = {}
        for raw in codes.values():
            code = php_str(raw)
            named = _access_names(code)
            if named is not None:
                out[code] = named
        return MethodResult(out)


#: Scopes a cloud portal offers (the REST docs' scope table), besides those of served methods.
_PORTAL_SCOPES = [
    "ai_admin",
    "biconnector",
    "bizproc",
    "booking",
    "calendar",
    "call",
    "cashbox",
    "catalog",
    "contact_center",
    "crm",
    "delivery",
    "department",
    "disk",
    "documentgenerator",
    "entity",
    "humanresources",
    "humanresources.hcmlink",
    "im",
    "imbot",
    "imconnector",
    "imopenlines",
    "intranet",
    "landing",
    "lists",
    "log",
    "mailservice",
    "main",
    "messageservice",
    "mobile",
    "pay_system",
    "placement",
    "pull",
    "rpa",
    "sale",
    "salescenter",
    "sign.b2e",
    "socialnetwork",
    "sonet_group",
    "task",
    # Deprecated, but still offered (the scope table's footnote).
    "tasks",
    "tasks_extended",
    "tasksmobile",
    "telephony",
    "timeman",
    "user",
    "user.userfield",
    "user_basic",
    "user_brief",
    "userconsent",
    "userfieldconfig",
    "vote",
]

#: Features the emulated plan has (``feature.get``); any other code answers "N".
_FEATURES = frozenset({"rest_auth_connector", "rest_offline_extended", "rest_business_users"})


def _application(ctx: CallContext) -> str:
    """The calling OAuth application; options need an application context."""
    if ctx.caller.kind != "oauth":
        raise access_denied("Application context required")
    return ctx.caller.credential


def _options_in(params: dict[PhpKey, Any]) -> dict[str, Any]:
    options = params.get("options", params)
    if not isinstance(options, dict) or not options:
        raise null_argument("options")
    # PHP arrays are values: what is stored must not be shared with the request (a batch's
    # result map passed whole by `$result[...]` would otherwise end up containing itself).
    return {str(k): copy.deepcopy(v) for k, v in options.items()}


def _option_value(options: dict[str, Any], params: dict[PhpKey, Any]) -> Any:
    if "option" in params:
        return copy.deepcopy(options.get(php_str(params["option"])))
    return copy.deepcopy(options)


def _access_names(code: str) -> dict[str, str] | None:
    """``CAccess::getNames`` for the codes the emulated portal has."""
    fixed = {
        "AU": ("", "All authorized users", "other"),
        "G1": ("User groups", "Administrators", "group"),
        "G2": ("User groups", "All users", "group"),
    }
    if code in fixed:
        provider, name, provider_id = fixed[code]
        return {"provider": provider, "name": name, "provider_id": provider_id}
    if code[:1] == "U" and code[1:].isdigit():
        return {"provider": "Users", "name": f"User {code[1:]}", "provider_id": "user"}
    if code[:1] == "D" and code[1:].isdigit():
        return {
            "provider": "Departments",
            "name": f"Department {code[1:]}",
            "provider_id": "intranet",
        }
    return None


def _license(ctx: CallContext) -> tuple[str, str, str]:
    """LICENSE, LICENSE_TYPE and LICENSE_FAMILY of the configured plan."""
    if ctx.config.plan == "enterprise":
        return "en_ent250", "ent250", "ent"
    return "en_std", "std", "std"


def register_platform(engine: Engine) -> None:
    """Add the platform methods (no scope needed: the server's global scope)."""
    platform = _Platform(engine)
    for name, handler in (
        ("app.info", platform.app_info),
        ("profile", platform.profile),
        ("scope", platform.scope),
        ("methods", platform.methods),
        ("method.get", platform.method_get),
        ("server.time", platform.server_time),
        ("app.option.get", platform.app_option_get),
        ("app.option.set", platform.app_option_set),
        ("user.option.get", platform.user_option_get),
        ("user.option.set", platform.user_option_set),
        ("feature.get", platform.feature_get),
        ("user.admin", platform.user_admin),
        ("user.access", platform.user_access),
        ("access.name", platform.access_name),
    ):
        engine.register(name, handler, None)
    register_events(engine, platform.scopes_of)
