"""The planner's rules (numbered as in bitrix_batch/_planner.py) and their properties."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from bitrix_batch import DependencyCycleError, InvalidReferenceError, MethodPolicy, Ref
from bitrix_batch._commands import parse_commands
from bitrix_batch._planner import MAX_BATCH, Plan, plan

READS = MethodPolicy().reads_only


def make_plan(cmd: Any, *, halt: bool = False) -> Plan:
    return plan(parse_commands(cmd, READS), halt=halt)


def keys(p: Plan) -> list[list[Any]]:
    return [[p.entries[i].key for i in c.members] for c in p.chunks]


@pytest.mark.parametrize("n", [1, 49, 50, 51, 100, 1234])
def test_independent_commands_take_ceil_n_over_50_requests(n: int) -> None:
    """Rule 1: N commands without references take exactly ceil(N/50) chunks of <= 50."""
    p = make_plan([("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}) for i in range(n)])
    assert len(p.chunks) == math.ceil(n / 50)
    assert all(len(c.members) <= MAX_BATCH for c in p.chunks)
    assert p.rounds == 1


def test_seed_example_stays_one_request() -> None:
    """Rule 3: a read depending on a command in the same chunk stays with it."""
    p = make_plan(
        {
            "get_user": "user.current",
            "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
        }
    )
    assert keys(p) == [["get_user", "get_department"]]
    assert p.server_side(1, 0)


def test_a_dependent_write_moves_to_a_later_request() -> None:
    """Rule 3: a write never leaves its reference to the server."""
    p = make_plan(
        {
            "u": "user.search?NAME=Test2",
            "lead": "crm.lead.add?fields[ASSIGNED_BY_ID]=$result[u][0][ID]",
            "check": ("crm.lead.get", {"id": Ref("lead")}),
        }
    )
    assert keys(p) == [["u"], ["lead", "check"]]
    assert p.chunks[1].after == {0}
    assert p.rounds == 2


def test_three_level_chain_workload() -> None:
    """1,000 chains search -> add -> get: 60 requests in 2 rounds."""
    cmd: dict[str, Any] = {}
    for i in range(1000):
        cmd[f"s{i}"] = ("user.search", {"NAME": f"u{i}"})
        cmd[f"a{i}"] = ("crm.lead.add", {"fields": {"ASSIGNED_BY_ID": Ref(f"s{i}")[0]["ID"]}})
        cmd[f"g{i}"] = ("crm.lead.get", {"id": Ref(f"a{i}")})
    p = make_plan(cmd)
    assert len(p.chunks) == 60  # 20 chunks of searches, 40 of 25 adds with their gets
    assert p.rounds == 2
    # Each add chunk waits only for the one search chunk it needs: pipelined, no barrier.
    assert all(len(c.after) == 1 for c in p.chunks if c.level == 1)


def test_reads_sharing_a_full_chunk_spill_to_the_next_level() -> None:
    """Rule 1 beats Rule 3: a producer with 60 readers spills the last ones."""
    cmd: dict[str, Any] = {"p": "user.current"}
    cmd.update({f"r{i}": ("user.get", {"ID": Ref("p")["ID"]}) for i in range(60)})
    p = make_plan(cmd)
    assert [len(c.members) for c in p.chunks] == [50, 11]
    assert p.chunks[1].after == {0}


def test_forward_references_are_reordered() -> None:
    """Without halt, a command may refer to one listed after it."""
    p = make_plan({"dep": ("crm.lead.get", {"id": Ref("add")}), "add": "crm.lead.add"})
    assert keys(p) == [["add", "dep"]]
    p = make_plan({"dep": ("crm.lead.update", {"id": Ref("add")}), "add": "crm.lead.add"})
    assert keys(p) == [["add"], ["dep"]]


def test_cycles_are_named() -> None:
    """A cycle raises DependencyCycleError listing its keys."""
    with pytest.raises(DependencyCycleError) as info:
        make_plan(
            {
                "x": "user.current",
                "a": "user.get?ID=$result[b][ID]",
                "b": "user.get?ID=$result[c][ID]",
                "c": "user.get?ID=$result[a][ID]",
            }
        )
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert "'a' -> 'b' -> 'c' -> 'a'" in str(info.value)


def test_self_reference_is_a_cycle() -> None:
    """A command referring to itself is a cycle of one."""
    with pytest.raises(DependencyCycleError, match="'a' -> 'a'"):
        make_plan({"a": "user.get?ID=$result[a][ID]"})


def test_halt_slices_in_caller_order() -> None:
    """Rule 6: halt keeps order; a write after a server-side reference starts a new chunk."""
    cmd: dict[str, Any] = {f"w{i}": "crm.lead.add" for i in range(3)}
    cmd["u"] = "user.current"
    cmd["d"] = "department.get?ID=$result[u][UF_DEPARTMENT]"
    cmd["after"] = "crm.lead.add"
    p = make_plan(cmd, halt=True)
    assert keys(p) == [["w0", "w1", "w2", "u", "d"], ["after"]]
    assert p.chunks[1].after == {0}


def test_halt_refuses_forward_references() -> None:
    """Rule 6: with halt=True a reference must point backwards."""
    with pytest.raises(InvalidReferenceError, match="forwards"):
        make_plan({"a": ("crm.lead.get", {"id": Ref("b")}), "b": "crm.lead.add"}, halt=True)


# --- properties ------------------------------------------------------------------------------

METHODS = ["crm.lead.add", "crm.lead.get", "user.current", "crm.deal.update", "crm.deal.list"]


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 120))
    cmd: dict[str, Any] = {}
    for i in range(n):
        method = draw(st.sampled_from(METHODS))
        refs = draw(st.lists(st.integers(0, i - 1), max_size=3)) if i else []
        params = {f"p{j}": Ref(f"c{r}")["ID"] for j, r in enumerate(refs)}
        cmd[f"c{i}"] = (method, params)
    # Shuffle the listing order so forward references appear too.
    order = draw(st.permutations(list(cmd)))
    return {k: cmd[k] for k in order}


@settings(max_examples=100, deadline=None)
@given(dags(), st.booleans())
def test_plan_invariants(cmd: dict[str, Any], halt: bool) -> None:
    """Rules 1, 2, 3, 5 hold for random graphs: size, direction, reads-only sharing, determinism."""
    if halt:
        # halt needs backward references: list in a topological order.
        cmd = dict(sorted(cmd.items(), key=lambda kv: int(kv[0][1:])))
    p = make_plan(cmd, halt=halt)
    position = {}
    for c in p.chunks:
        assert 1 <= len(c.members) <= MAX_BATCH  # Rule 1
        for pos, i in enumerate(c.members):
            position[i] = (c.id, pos)
    assert sorted(position) == list(range(len(cmd)))
    for e in p.entries:
        for d in e.deps:
            assert position[d] < position[e.index]  # Rule 2
            if p.server_side(e.index, d):
                assert e.read  # Rule 3
            else:
                assert p.chunk_of[d] in p.chunks[p.chunk_of[e.index]].after
    for c in p.chunks:
        assert all(a < c.id for a in c.after)
    assert keys(make_plan(cmd, halt=halt)) == keys(p)  # Rule 5


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_cycles_are_always_caught(cmd: dict[str, Any], data: st.DataObject) -> None:
    """Adding a back edge that closes a loop always raises DependencyCycleError."""
    ordered = sorted(cmd, key=lambda k: int(k[1:]))
    hi = data.draw(st.integers(0, len(ordered) - 1))
    lo = data.draw(st.integers(0, hi))
    # Make c{lo} refer to c{hi}, and make sure there is a path c{hi} -> ... -> c{lo}.
    method, params = cmd[f"c{hi}"]
    cmd[f"c{hi}"] = (method, {**params, "back": Ref(f"c{lo}")["ID"]})
    method, params = cmd[f"c{lo}"]
    cmd[f"c{lo}"] = (method, {**params, "loop": Ref(f"c{hi}")["ID"]})
    with pytest.raises(DependencyCycleError) as info:
        make_plan(cmd)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]


def _kahn_with_heap(entries: list[Any]) -> list[int]:
    """Textbook Kahn with every ready command in one min-heap: the order the planner keeps."""
    import heapq

    waiting = [len(e.deps) for e in entries]
    users: list[list[int]] = [[] for _ in entries]
    for e in entries:
        for d in e.deps:
            users[d].append(e.index)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return order


@settings(max_examples=100, deadline=None)
@given(dags())
def test_the_order_is_the_earliest_listed_ready_command_first(cmd: dict[str, Any]) -> None:
    """Rule 5's order: the one-sweep topological sort equals Kahn's with a heap of all ready
    commands (the caller's order wherever the references allow)."""
    from bitrix_batch._planner import _topological_order

    entries = parse_commands(cmd, READS)
    assert _topological_order(entries) == _kahn_with_heap(entries)
