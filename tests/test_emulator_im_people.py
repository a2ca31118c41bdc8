"""im.user.* and im.department.*: the user directory in the messenger's shape."""

from __future__ import annotations

from tests.emulator_support import api, make_emulator


async def test_users_as_the_messenger_shows_them() -> None:
    async with api(make_emulator(seed_users=2)) as a:
        _, current = await a.call("user.current")
        _, one = await a.call("im.user.get", {"ID": 1})
        _, me = await a.call("im.user.get")
        _, listed = await a.call("im.user.list.get", {"ID": [1, 2, 99]})
        bad = await a.call("im.user.list.get", {})
    user = one["result"]
    assert me["result"] == user
    assert user["id"] == 1
    assert user["first_name"] == current["result"]["NAME"]
    assert user["name"] == f"{current['result']['NAME']} {current['result']['LAST_NAME']}".strip()
    assert user["departments"] == current["result"]["UF_DEPARTMENT"]
    assert set(listed["result"]) == {"1", "2", "99"}
    assert listed["result"]["2"]["id"] == 2
    assert listed["result"]["99"] is None
    assert (bad[0], bad[1]["error"]) == (400, "INVALID_FORMAT")


async def test_status_and_idle() -> None:
    async with api() as a:
        _, before = await a.call("im.user.status.get")
        _, done = await a.call("im.user.status.set", {"STATUS": "dnd"})
        _, after = await a.call("im.user.status.get")
        wrong = await a.call("im.user.status.set", {"STATUS": "sleeping"})
        await a.call("im.user.status.idle.start")
        _, idle = await a.call("im.user.get")
        await a.call("im.user.status.idle.end")
        _, back = await a.call("im.user.get")
    assert (before["result"], done["result"], after["result"]) == ("online", True, "dnd")
    assert (wrong[0], wrong[1]["error"]) == (400, "STATUS_ERROR")
    assert isinstance(idle["result"]["idle"], str)
    assert back["result"]["idle"] is False
    assert back["result"]["status"] == "dnd"


async def test_departments_their_people_and_heads() -> None:
    async with api(make_emulator(seed_users=3)) as a:
        _, departments = await a.call("department.get", {"ID": 1})
        _, got = await a.call("im.department.get", {"ID": [1]})
        _, employees = await a.call("im.department.employees.get", {"ID": [1]})
        _, managers = await a.call("im.department.managers.get", {"ID": [1]})
        _, colleagues = await a.call("im.department.colleagues.list")
        _, users = await a.call("user.get", {"FILTER": {"UF_DEPARTMENT": 1}})
    head = departments["result"][0].get("UF_HEAD")
    assert got["result"][0]["id"] == 1
    assert got["result"][0]["name"] == departments["result"][0]["NAME"]
    in_dept = sorted(
        int(u["ID"]) for u in users["result"] if 1 in [int(d) for d in u["UF_DEPARTMENT"]]
    )
    assert sorted(employees["result"]["1"]) == in_dept
    assert managers["result"]["1"] == ([int(head)] if head else [])
    assert sorted(colleagues["result"]) == [i for i in in_dept if i != 1]
