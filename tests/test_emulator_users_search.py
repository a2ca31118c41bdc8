"""Users: the real record keys, FIND / NAME_SEARCH, user.add / user.update."""

from __future__ import annotations

from tests.emulator_support import Api, api


async def _add(a: Api, **fields: object) -> int:
    status, body = await a.call("user.add", {"fields": fields})
    assert status == 200, body
    return int(body["result"])


async def test_user_records_have_the_real_keys_and_no_nulls() -> None:
    async with api() as a:
        _, me = await a.call("user.current")
    record = me["result"]
    assert {"XML_ID", "TIME_ZONE", "TIME_ZONE_OFFSET", "PERSONAL_PROFESSION"} <= set(record)
    assert all(isinstance(v, bool | str | list) for v in record.values())


async def test_find_and_name_search_in_filter_or_at_the_top() -> None:
    async with api() as a:
        anna = await _add(
            a,
            NAME="Anna",
            LAST_NAME="Berg",
            EMAIL="anna@x.io",
            PERSONAL_PROFESSION="Welder",
            WORK_POSITION="Welder 7",
        )
        bob = await _add(a, NAME="Bob", LAST_NAME="Annenkov", EMAIL="bob@x.io")
        status, dup = await a.call("user.add", {"fields": {"EMAIL": "anna@x.io"}})
        assert status == 400
        assert dup["error"] == "ERROR_CORE"

        async def ids(method: str, params: dict[str, object]) -> list[int]:
            _, body = await a.call(method, params)
            return [int(u["ID"]) for u in body["result"]]

        assert await ids("user.search", {"FILTER": {"FIND": "Welder 7"}}) == [anna]
        assert await ids("user.get", {"FIND": "welder"}) == [anna]
        assert await ids("user.get", {"FILTER": {"NAME_SEARCH": "Ann"}}) == [anna, bob]
        assert await ids("user.get", {"FILTER": {"NAME_SEARCH": "Ann Berg"}}) == [anna]
        assert await ids("user.get", {"NAME_SEARCH": "nenkov"}) == []  # prefixes only
        await a.call("user.update", {"ID": bob, "fields": {"ACTIVE": "N", "TIME_ZONE": "UTC"}})
        _, got = await a.call("user.get", {"ID": bob})
        assert got["result"][0]["ACTIVE"] is False
        assert got["result"][0]["TIME_ZONE"] == "UTC"
        status, _ = await a.call("user.update", {"ID": 999, "fields": {"NAME": "x"}})
        assert status == 400


async def test_department_add_update_delete() -> None:
    async with api() as a:
        status, _ = await a.call("department.add", {"PARENT": 1})
        assert status == 400
        _, added = await a.call("department.add", {"NAME": "Ops", "PARENT": 1})
        ident = added["result"]
        await a.call("department.update", {"ID": ident, "NAME": "Operations"})
        _, got = await a.call("department.get", {"ID": ident})
        assert got["result"] == [
            {"ID": str(ident), "NAME": "Operations", "SORT": 500, "PARENT": "1"}
        ]
        _, gone = await a.call("department.delete", {"ID": ident})
        assert gone["result"] is True
        status, _ = await a.call("department.delete", {"ID": ident})
        assert status == 400
        _, fields = await a.call("department.fields")
        assert set(fields["result"]) == {"ID", "NAME", "SORT", "PARENT", "UF_HEAD"}
