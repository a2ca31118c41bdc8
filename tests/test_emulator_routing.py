"""Routing, parameter collection, authentication (webhooks and OAuth), control endpoints."""

from __future__ import annotations

import json

from tests.emulator_support import FakeClock, api, make_emulator


async def test_webhook_routes_with_and_without_suffix_and_trailing_slash() -> None:
    async with api() as a:
        for method in ("user.current", "user.current.json", "user.current/", "USER.Current"):
            status, body = await a.call(method)
            assert status == 200, method
            assert body["result"]["ID"] == "1"


async def test_json_body_and_headers() -> None:
    async with api() as a:
        response = await a.raw("user.current")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    assert list(response.json()) == ["result", "time"]


async def test_unknown_webhook_is_401_invalid_credentials() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        response = await a.client.post("/rest/1/wrong/user.current")
        other_user = await a.client.post(f"/rest/2/{emu.config.webhook_code}/user.current")
    for r in (response, other_user):
        assert r.status_code == 401
        assert r.json() == {
            "error": "INVALID_CREDENTIALS",
            "error_description": "Invalid request credentials",
        }


async def test_unknown_method_is_404_before_auth() -> None:
    async with api() as a:
        bad_auth = await a.client.post("/rest/1/wrong/no.such.method")
        oauth = await a.client.post("/rest/no.such.method")
        odd = await a.client.post("/rest/a/b")
    for r in (bad_auth, oauth, odd):
        assert r.status_code == 404
        assert r.json() == {
            "error": "ERROR_METHOD_NOT_FOUND",
            "error_description": "Method not found!",
        }


async def test_query_form_and_json_parameters() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        await a.raw("crm.lead.add", http="GET", params={"fields[TITLE]": "q"})
        await a.raw("crm.lead.add", data={"fields[TITLE]": "form"})
        await a.raw("crm.lead.add", json={"fields": {"TITLE": "json"}})
        await a.raw(
            "crm.lead.add",
            content=b"fields[TITLE]=raw",
            headers={"content-type": "text/plain"},
        )
        await a.raw(
            "crm.lead.add",
            files={"x": ("f.txt", b"data")},
            data={"fields[TITLE]": "multi"},
        )
    assert [r["TITLE"] for r in emu.records("lead")] == ["q", "form", "json", "raw", "multi"]


async def test_body_keys_replace_query_keys() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        await a.client.post(
            emu.webhook_url() + "crm.lead.add?fields[TITLE]=query&fields[NAME]=n",
            json={"fields": {"TITLE": "body"}},
        )
    row = emu.records("lead")[0]
    # array_replace is top-level: the whole "fields" comes from the body.
    assert (row["TITLE"], row["NAME"]) == ("body", None)


async def test_invalid_json_gives_empty_params() -> None:
    async with api() as a:
        response = await a.raw(
            "crm.lead.add",
            content=b"{not json",
            headers={"content-type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 400
    assert response.json()["error_description"] == "The parameter 'fields' must be array."


async def test_oauth_token_in_param_body_and_header() -> None:
    emu = make_emulator()
    token = emu.issue_oauth_token()["access_token"]
    async with api(emu) as a:
        r1 = await a.client.get("/rest/user.current", params={"auth": token})
        r2 = await a.client.post("/rest/user.current.json", json={"access_token": token})
        r3 = await a.client.post("/rest/user.current", headers={"authorization": f"Bearer {token}"})
        r4 = await a.client.post("/rest/user.current")
        r5 = await a.client.post("/rest/user.current", json={"auth": "bogus"})
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    assert r4.status_code == 401
    assert r4.json()["error"] == "NO_AUTH_FOUND"
    assert r5.status_code == 401
    assert r5.json()["error"] == "invalid_token"


async def test_oauth_batch_runs_as_caller_and_strips_auth() -> None:
    emu = make_emulator()
    token = emu.issue_oauth_token()["access_token"]
    async with api(emu) as a:
        response = await a.client.post(
            "/rest/batch",
            json={"auth": token, "cmd": {"u": "user.current?auth=other"}},
        )
    assert response.json()["result"]["result"]["u"]["ID"] == "1"


async def test_oauth_expiry_and_refresh_rotation() -> None:
    clock = FakeClock()
    emu = make_emulator(clock=clock)
    first = emu.issue_oauth_token()
    cfg = emu.config
    async with api(emu) as a:
        clock.advance(3601)
        expired = await a.client.post("/rest/user.current", json={"auth": first["access_token"]})
        assert expired.status_code == 401
        assert expired.json() == {
            "error": "expired_token",
            "error_description": "The access token provided has expired",
        }
        refresh_params = {
            "grant_type": "refresh_token",
            "client_id": cfg.oauth_client_id,
            "client_secret": cfg.oauth_client_secret,
            "refresh_token": first["refresh_token"],
        }
        refreshed = await a.client.get("/oauth/token/", params=refresh_params)
        assert refreshed.status_code == 200
        second = refreshed.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["expires_in"] == 3600
        assert second["client_endpoint"] == "http://testserver/rest/"
        ok = await a.client.post("/rest/user.current", json={"auth": second["access_token"]})
        assert ok.status_code == 200
        # The refresh token used is spent.
        again = await a.client.get("/oauth/token/", params=refresh_params)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        bad_client = await a.client.get(
            "/oauth/token/", params={**refresh_params, "client_secret": "x"}
        )
        assert bad_client.status_code == 400
        assert bad_client.json()["error"] == "invalid_client"
        unknown_app = await a.client.get(
            "/oauth/token/", params={**refresh_params, "client_id": "someone.else"}
        )
        assert (unknown_app.status_code, unknown_app.json()) == (200, {"error": "wrong_client"})
        missing = await a.client.get(
            "/oauth/token/", params={**refresh_params, "refresh_token": ""}
        )
        assert missing.status_code == 400
        assert missing.json() == {
            "error": "invalid_request",
            "error_description": 'No "refresh_token" parameter found',
        }
    assert emu.stats.oauth_refreshes == 1


async def test_refresh_leaves_the_old_access_token_alive_by_default() -> None:
    emu = make_emulator()
    first = emu.issue_oauth_token()
    cfg = emu.config
    async with api(emu) as a:
        refreshed = await a.client.post(
            "/oauth/token/",
            data={
                "grant_type": "refresh_token",
                "client_id": cfg.oauth_client_id,
                "client_secret": cfg.oauth_client_secret,
                "refresh_token": first["refresh_token"],
            },
        )
        old = await a.client.post("/rest/user.current", json={"auth": first["access_token"]})
        new = await a.client.post(
            "/rest/user.current", json={"auth": refreshed.json()["access_token"]}
        )
    assert (old.status_code, new.status_code) == (200, 200)


async def test_refresh_revokes_the_old_access_token() -> None:
    emu = make_emulator(oauth_refresh_revokes_access=True)
    first = emu.issue_oauth_token()
    cfg = emu.config
    async with api(emu) as a:
        await a.client.post(
            "/oauth/token/",
            data={
                "grant_type": "refresh_token",
                "client_id": cfg.oauth_client_id,
                "client_secret": cfg.oauth_client_secret,
                "refresh_token": first["refresh_token"],
            },
        )
        old = await a.client.post("/rest/user.current", json={"auth": first["access_token"]})
    assert old.status_code == 401


async def test_expire_access_tokens_helper() -> None:
    emu = make_emulator()
    token = emu.issue_oauth_token()["access_token"]
    emu.expire_access_tokens()
    async with api(emu) as a:
        r = await a.client.post("/rest/user.current", json={"auth": token})
    assert r.json()["error"] == "expired_token"


async def test_stats_and_reset_over_http() -> None:
    emu = make_emulator()
    async with api(emu) as a:
        await a.call("crm.lead.add", {"fields": {"TITLE": "x"}})
        await a.batch({"a": "crm.lead.add?fields[TITLE]=x", "b": "user.current"})
        stats = (await a.client.get("/_emulator/stats")).json()
        assert stats["requests"] == 2
        assert stats["commands"] == {"crm.lead.add": 2, "batch": 1, "user.current": 1}
        assert stats["statuses"] == {"200": 2}
        assert stats["duplicate_adds"] == {"lead": 1}
        assert stats["writes"]["lead"] == {"1": {"add": 1}, "2": {"add": 1}}
        assert emu.stats.duplicate_adds("lead") == {json.dumps({"TITLE": "x"}): 2}
        assert emu.duplicates("lead") == {"x": 2}
        assert (await a.client.post("/_emulator/reset")).status_code == 200
        assert (await a.client.get("/_emulator/stats")).json()["requests"] == 0
        issued = (await a.client.post("/_emulator/oauth/issue")).json()
        r = await a.client.post("/rest/user.current", json={"auth": issued["access_token"]})
        assert r.status_code == 200


async def test_other_paths_are_html_404() -> None:
    async with api() as a:
        r = await a.client.get("/")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")


async def test_emulator_runs_on_trio_and_asyncio(anyio_backend: str) -> None:
    async with api() as a:
        status, _ = await a.call("user.current")
    assert status == 200
