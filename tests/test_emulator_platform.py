"""The portal's own methods: app.info, profile, scope, methods, method.get, server.time, event.*."""

from __future__ import annotations

import json
from typing import Any

from bitrix_batch.emulator import Emulator
from tests.emulator_support import Api, FakeClock, api, make_emulator

WRONG_AUTH_TYPE = {
    "error": "WRONG_AUTH_TYPE",
    "error_description": "Current authorization type is denied for this method",
}
HANDLER = "https://example.invalid/handler"


async def oauth_call(
    a: Api, method: str, params: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    """POST ``method`` on the OAuth route with a fresh (or the given) access token."""
    if token is None:
        token = a.emulator.issue_oauth_token()["access_token"]
    body = {**(params or {}), "auth": token}
    response = await a.client.post(a.emulator.oauth_url() + method, json=body)
    return response.status_code, json.loads(response.text)


async def test_app_info_for_a_webhook_is_its_scopes_and_licence() -> None:
    emu = make_emulator(webhook_scopes=frozenset({"crm", "user"}))
    async with api(emu) as a:
        status, body = await a.call("app.info")
    assert status == 200
    assert body["result"] == {"SCOPE": ["crm", "user"], "LICENSE": "en_std"}


async def test_app_info_for_an_application_is_its_card() -> None:
    emu = make_emulator(plan="enterprise")
    async with api(emu) as a:
        status, body = await oauth_call(a, "app.info")
    assert status == 200
    info = body["result"]
    assert list(info) == [
        "ID",
        "CODE",
        "VERSION",
        "STATUS",
        "INSTALLED",
        "PAYMENT_EXPIRED",
        "DAYS",
        "LANGUAGE_ID",
        "LICENSE",
        "LICENSE_TYPE",
        "LICENSE_FAMILY",
    ]
    assert info["CODE"] == emu.config.oauth_client_id
    assert (info["STATUS"], info["INSTALLED"], info["DAYS"]) == ("L", True, None)
    assert (info["LICENSE"], info["LICENSE_FAMILY"]) == ("en_ent250", "ent")


async def test_profile_is_the_callers_basic_fields() -> None:
    async with api() as a:
        status, body = await a.call("profile")
        _, current = await a.call("user.current")
    assert status == 200
    profile = body["result"]
    assert set(profile) >= {"ID", "ADMIN", "NAME", "LAST_NAME", "PERSONAL_GENDER", "TIME_ZONE"}
    assert profile["ID"] == "1"
    assert profile["ADMIN"] is True
    assert profile["NAME"] == current["result"]["NAME"]


async def test_scope_lists_granted_scopes_and_full_lists_all() -> None:
    emu = make_emulator(webhook_scopes=frozenset({"crm"}))
    async with api(emu) as a:
        _, mine = await a.call("scope")
        _, full = await a.call("scope", {"full": True})
    assert mine["result"] == ["crm"]
    # Every documented cloud scope, and those of the served methods.
    assert {"crm", "user", "task", "im", "timeman", "calendar", "bizproc"} <= set(full["result"])
    assert full["result"] == sorted(full["result"])


async def test_methods_follow_the_callers_scopes() -> None:
    emu = make_emulator(webhook_scopes=frozenset({"crm"}))
    async with api(emu) as a:
        _, mine = await a.call("methods")
        _, tasks = await a.call("methods", {"scope": "task"})
        _, full = await a.call("methods", {"full": 1})
    assert "crm.lead.add" in mine["result"]
    assert "batch" in mine["result"]
    assert "server.time" in mine["result"]
    assert "tasks.task.add" not in mine["result"]
    assert "tasks.task.add" in tasks["result"]
    assert all(name.startswith("tasks.") for name in tasks["result"])
    assert set(mine["result"]) < set(full["result"])


async def test_method_get_tells_existing_from_available() -> None:
    emu = make_emulator(webhook_scopes=frozenset({"crm"}))
    async with api(emu) as a:
        answers = [
            (await a.call("method.get", {"name": name}))[1]["result"]
            for name in ("crm.lead.list", "tasks.task.list", "no.such.method")
        ]
    assert answers == [
        {"isExisting": True, "isAvailable": True},
        {"isExisting": True, "isAvailable": False},
        {"isExisting": False, "isAvailable": False},
    ]


async def test_server_time_is_the_portals_iso_time() -> None:
    emu = make_emulator(clock=FakeClock(1_700_000_000.0))
    async with api(emu) as a:
        status, body = await a.call("server.time")
    assert status == 200
    assert body["result"] == "2023-11-15T01:13:20+03:00"


async def test_event_methods_refuse_webhooks_as_the_server_does() -> None:
    async with api() as a:
        for method in ("event.bind", "event.get", "event.unbind", "events"):
            status, body = await a.call(method, {"event": "ONCRMLEADADD", "handler": HANDLER})
            assert (status, body) == (403, WRONG_AUTH_TYPE), method
        body = await a.batch(["event.get"])
    assert body["result_error"] == [WRONG_AUTH_TYPE]


async def test_bind_get_unbind_round_trip_for_an_application() -> None:
    async with api() as a:
        token = a.emulator.issue_oauth_token()["access_token"]
        status, empty = await oauth_call(a, "event.get", token=token)
        assert (status, empty["result"]) == (200, [])
        status, body = await oauth_call(
            a, "event.bind", {"event": "onCrmLeadAdd", "handler": HANDLER}, token
        )
        assert (status, body["result"]) == (200, True)
        await oauth_call(
            a, "event.bind", {"event": "ONCRMDEALUPDATE", "event_type": "offline"}, token
        )
        _, listed = await oauth_call(a, "event.get", token=token)
        assert listed["result"] == [
            {"event": "ONCRMLEADADD", "handler": HANDLER, "auth_type": "0", "offline": 0},
            {"event": "ONCRMDEALUPDATE", "connector_id": "", "offline": 1},
        ]
        status, again = await oauth_call(
            a, "event.bind", {"event": "ONCRMLEADADD", "handler": HANDLER}, token
        )
        assert (status, again["error"]) == (400, "ERROR_CORE")
        _, removed = await oauth_call(
            a, "event.unbind", {"event": "ONCRMLEADADD", "handler": HANDLER}, token
        )
        assert removed["result"] == {"count": 1}
        _, listed = await oauth_call(a, "event.get", token=token)
        assert [b["event"] for b in listed["result"]] == ["ONCRMDEALUPDATE"]


async def test_event_bind_errors() -> None:
    emu = make_emulator(oauth_scopes=frozenset({"crm"}))
    async with api(emu) as a:
        token = emu.issue_oauth_token()["access_token"]
        cases = [
            ({"handler": HANDLER}, "ERROR_ARGUMENT", "Argument 'EVENT' is null or empty"),
            ({"event": "ONCRMLEADADD"}, "ERROR_ARGUMENT", "Argument 'HANDLER' is null or empty"),
            (
                {"event": "ONTASKADD", "handler": HANDLER},
                "ERROR_EVENT_NOT_FOUND",
                "Event not found",
            ),
            (
                {"event": "ONCRMLEADADD", "handler": HANDLER, "event_type": "sometimes"},
                "ERROR_ARGUMENT",
                "Value must be one of {online|offline}",
            ),
        ]
        for params, code, text in cases:
            status, body = await oauth_call(a, "event.bind", params, token)
            assert status == 400, params
            assert (body["error"], body["error_description"]) == (code, text)


async def test_bindings_are_kept_per_application_and_per_user() -> None:
    emu = make_emulator(seed_users=2)
    async with api(emu) as a:
        admin = emu.issue_oauth_token(user_id=1)["access_token"]
        user = emu.issue_oauth_token(user_id=2)["access_token"]
        await oauth_call(a, "event.bind", {"event": "ONCRMLEADADD", "handler": HANDLER}, user)
        await oauth_call(a, "event.bind", {"event": "ONCRMDEALADD", "handler": HANDLER}, admin)
        _, seen_by_user = await oauth_call(a, "event.get", token=user)
        _, seen_by_admin = await oauth_call(a, "event.get", token=admin)
        status, body = await oauth_call(
            a, "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"}, user
        )
    assert [b["event"] for b in seen_by_user["result"]] == ["ONCRMLEADADD"]
    assert seen_by_user["result"][0]["auth_type"] == "2"
    assert [b["event"] for b in seen_by_admin["result"]] == ["ONCRMLEADADD", "ONCRMDEALADD"]
    assert (status, body["error"]) == (403, "ACCESS_DENIED")


async def test_events_lists_bindable_names_by_scope() -> None:
    emu = make_emulator(oauth_scopes=frozenset({"crm"}))
    async with api(emu) as a:
        _, mine = await oauth_call(a, "events")
        _, tasks = await oauth_call(a, "events", {"scope": "task"})
    assert "ONCRMLEADADD" in mine["result"]
    assert "ONAPPUNINSTALL" in mine["result"]
    assert "ONTASKADD" not in mine["result"]
    assert tasks["result"] == ["ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"]


async def test_platform_methods_run_inside_a_batch_too() -> None:
    emu: Emulator = make_emulator()
    async with api(emu) as a:
        body = await a.batch({"t": "server.time", "m": "method.get?name=crm.lead.add"})
    assert body["result"]["m"] == {"isExisting": True, "isAvailable": True}
    assert isinstance(body["result"]["t"], str)


async def test_app_and_user_options_need_an_application() -> None:
    emu = make_emulator(seed_users=1)
    async with api(emu) as a:
        status, body = await a.call("app.option.set", {"options": {"mode": "fast"}})
        assert (status, body["error"]) == (403, "ACCESS_DENIED")
        assert body["error_description"] == "Access denied! Application context required"
        admin = emu.issue_oauth_token(user_id=1)["access_token"]
        other = emu.issue_oauth_token(user_id=2)["access_token"]
        await oauth_call(a, "app.option.set", {"options": {"mode": "fast", "n": 3}}, admin)
        _, one = await oauth_call(a, "app.option.get", {"option": "mode"}, other)
        _, all_ = await oauth_call(a, "app.option.get", {}, other)
        _, missing = await oauth_call(a, "app.option.get", {"option": "nope"}, other)
        await oauth_call(a, "user.option.set", {"options": {"theme": "dark"}}, admin)
        _, mine = await oauth_call(a, "user.option.get", {"option": "theme"}, admin)
        _, theirs = await oauth_call(a, "user.option.get", {"option": "theme"}, other)
    assert one["result"] == "fast"
    assert all_["result"] == {"mode": "fast", "n": 3}
    assert missing["result"] is None
    assert (mine["result"], theirs["result"]) == ("dark", None)


async def test_feature_admin_access_and_access_names() -> None:
    emu = make_emulator(seed_users=1)
    async with api(emu) as a:
        _, feature = await a.call("feature.get", {"code": "rest_auth_connector"})
        _, absent = await a.call("feature.get", {"code": "no_such_feature"})
        empty = await a.call("feature.get", {})
        _, admin = await a.call("user.admin")
        _, names = await a.call("access.name", {"access": ["G2", "AU", "XX"]})
        user = emu.issue_oauth_token(user_id=2)["access_token"]
        _, not_admin = await oauth_call(a, "user.admin", token=user)
        _, granted = await oauth_call(a, "user.access", {"access": ["G1", "AU"]}, user)
        _, denied = await oauth_call(a, "user.access", {"access": ["G1"]}, user)
    assert (feature["result"], absent["result"]) == ({"value": "Y"}, {"value": "N"})
    assert (empty[0], empty[1]["error"]) == (400, "CODE_EMPTY")
    assert (admin["result"], not_admin["result"]) == (True, False)
    assert set(names["result"]) == {"G2", "AU"}
    assert set(names["result"]["AU"]) == {"provider", "name", "provider_id"}
    assert (granted["result"], denied["result"]) == (True, False)


async def test_offline_queue_is_empty_and_admin_only() -> None:
    emu = make_emulator(seed_users=1)
    async with api(emu) as a:
        admin = emu.issue_oauth_token(user_id=1)["access_token"]
        user = emu.issue_oauth_token(user_id=2)["access_token"]
        _, got = await oauth_call(a, "event.offline.get", {"clear": 0}, admin)
        _, listed = await oauth_call(a, "event.offline.list", {}, admin)
        _, cleared = await oauth_call(a, "event.offline.clear", {"process_id": "x"}, admin)
        refused = await oauth_call(a, "event.offline.get", {}, user)
        webhook = await a.call("event.offline.list")
    assert got["result"]["events"] == []
    assert "process_id" in got["result"]
    assert (listed["result"], listed["total"]) == ([], 0)
    assert cleared["result"] is True
    assert (refused[0], refused[1]["error"]) == (403, "ACCESS_DENIED")
    assert webhook == (403, WRONG_AUTH_TYPE)
