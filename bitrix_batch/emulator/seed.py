"""Deterministic generated data: the default user and department, and N records on request."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

from .crm_tables import ENTITIES
from .store import Store

__all__ = ["seed_defaults", "seed_entity", "seed_users"]

_FIRST = ("Anna", "Boris", "Chen", "Daria", "Elif", "Farid", "Greta", "Hugo", "Ivan", "Jana")
_LAST = ("Ivanova", "Smith", "Kowalski", "Müller", "Rossi", "Novak", "Silva", "Kim", "Dou")
_WORDS = ("Alpha", "Delta", "Orbit", "Cedar", "Nova", "Vector", "Quartz", "Harbor", "Pine")
_STATUS = {
    "lead": ("STATUS_ID", ("NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK")),
    "deal": ("STAGE_ID", ("NEW", "PREPARATION", "EXECUTING", "WON", "LOSE")),
}


def seed_defaults(store: Store, tz: timezone, now: float) -> None:
    """User 1 and department 1 as in the docs' batch example, if the store is empty."""
    if store.count("users"):
        return
    stamp = datetime.fromtimestamp(now, tz).isoformat(timespec="seconds")
    store.insert_row("departments", {"ID": 1, "NAME": "DEMO", "SORT": 500})
    store.insert_row(
        "users",
        {
            "ID": 1,
            "ACTIVE": 1,
            "NAME": "John",
            "LAST_NAME": "Dou",
            "EMAIL": "my@example.com",
            "DATE_REGISTER": stamp,
            "LAST_LOGIN": stamp,
            "UF_DEPARTMENT": [1],
        },
    )


def seed_users(store: Store, count: int, seed: int, tz: timezone, now: float) -> None:
    """``count`` more users spread over three extra departments."""
    if count <= 0:
        return
    rng = random.Random(f"users:{seed}")
    first_dept = store.count("departments") + 1
    for offset, name in enumerate(("Sales", "Support", "Engineering")):
        store.insert_row(
            "departments",
            {"ID": first_dept + offset, "NAME": name, "SORT": 500 + offset, "PARENT": 1},
        )
    stamp = datetime.fromtimestamp(now, tz).isoformat(timespec="seconds")
    rows = []
    for i in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        rows.append(
            (
                1 if rng.random() > 0.1 else 0,
                first,
                last,
                f"{first.lower()}.{last.lower()}{i}@example.com",
                stamp,
                [first_dept + rng.randrange(3)],
            )
        )
    names = ("ACTIVE", "NAME", "LAST_NAME", "EMAIL", "DATE_REGISTER", "UF_DEPARTMENT")
    store.insert_many("users", names, rows)


def seed_entity(store: Store, name: str, count: int, seed: int, tz: timezone, now: float) -> None:
    """``count`` generated records of a CRM entity, the same for the same seed."""
    if count <= 0:
        return
    entity = ENTITIES[name]
    rng = random.Random(f"{name}:{seed}")
    users = max(1, store.count("users"))
    start = store.count(entity.table)
    columns = [
        "ASSIGNED_BY_ID",
        "CREATED_BY_ID",
        "MODIFY_BY_ID",
        "DATE_CREATE",
        "DATE_MODIFY",
        "OPENED",
    ]
    has_title = "TITLE" in entity.by_name
    has_name = "NAME" in entity.by_name
    status = _STATUS.get(name)
    money = next((f for f in ("OPPORTUNITY", "REVENUE") if f in entity.by_name), None)
    if has_title:
        columns.append("TITLE")
    if has_name:
        columns += ["NAME", "LAST_NAME"]
    if status:
        columns.append(status[0])
    if money:
        columns += [money, "CURRENCY_ID"]
    if "HAS_PHONE" in entity.by_name:
        columns += ["HAS_PHONE", "HAS_EMAIL"]
    semantic = next(
        (f for f in ("STATUS_SEMANTIC_ID", "STAGE_SEMANTIC_ID") if f in entity.by_name), None
    )
    moved = "MOVED_BY_ID" in entity.by_name
    if semantic and status:
        columns.append(semantic)
    if moved:
        columns += ["MOVED_BY_ID", "MOVED_TIME"]
    # The entity's other defaults (IS_MANUAL_OPPORTUNITY, HAS_IMOL, ...), as an add sets them;
    # constant, so the random sequence (and every generated value) stays the same per seed.
    flags = [f for f in ("CLOSED", "IS_NEW") if f in entity.by_name and status]
    columns += flags
    constants = [(k, v) for k, v in entity.defaults if k not in columns and k != semantic]
    columns += [k for k, _ in constants]

    def rows() -> Any:
        # One record per simulated minute back from ``now``, oldest first.
        for i in range(count):
            number = start + i + 1
            stamp = datetime.fromtimestamp(now - (count - i) * 60, tz).isoformat(timespec="seconds")
            user = 1 + rng.randrange(users)
            row: list[Any] = [user, user, user, stamp, stamp, "Y"]
            if has_title:
                row.append(f"{name.title()} {number} {rng.choice(_WORDS)}")
            if has_name:
                row += [rng.choice(_FIRST), rng.choice(_LAST)]
            if status:
                row.append(rng.choice(status[1]))
            if money:
                row += [round(rng.uniform(0, 100000), 2), "RUB"]
            if "HAS_PHONE" in entity.by_name:
                row += ["N", "N"]
            stage = row[columns.index(status[0])] if status else ""
            if semantic and status:
                row.append({"CONVERTED": "S", "WON": "S", "JUNK": "F", "LOSE": "F"}.get(stage, "P"))
            if moved:
                row += [user, stamp]
            if flags:
                final = stage in ("WON", "LOSE")
                row += [
                    ("Y" if final else "N") if f == "CLOSED" else ("Y" if stage == "NEW" else "N")
                    for f in flags
                ]
            row += [v for _, v in constants]
            yield row

    store.insert_many(entity.table, columns, rows())
