"""The portal's data in SQLite (stdlib): CRM entities, users and departments.

Filtering, ordering and paging are real SQL queries, so a million rows behave like a big
portal. In memory by default; pass a file path to keep the data.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .crm_tables import ENTITIES, EXTRA_TABLES
from .entities import Entity

__all__ = ["Store", "USER_COLUMNS", "DEPARTMENT_COLUMNS"]

USER_COLUMNS = (
    ("ID", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ("ACTIVE", "INTEGER"),
    ("NAME", "TEXT"),
    ("LAST_NAME", "TEXT"),
    ("SECOND_NAME", "TEXT"),
    ("EMAIL", "TEXT"),
    ("WORK_POSITION", "TEXT"),
    ("PERSONAL_GENDER", "TEXT"),
    ("DATE_REGISTER", "TEXT"),
    ("LAST_LOGIN", "TEXT"),
    ("UF_DEPARTMENT", "TEXT"),
    ("XML_ID", "TEXT"),
    ("TIME_ZONE", "TEXT"),
    ("PERSONAL_PROFESSION", "TEXT"),
    ("PERSONAL_BIRTHDAY", "TEXT"),
    ("PERSONAL_PHONE", "TEXT"),
    ("PERSONAL_MOBILE", "TEXT"),
    ("PERSONAL_CITY", "TEXT"),
    ("WORK_PHONE", "TEXT"),
    ("WORK_COMPANY", "TEXT"),
    ("UF_EMPLOYMENT_DATE", "TEXT"),
    ("UF_PHONE_INNER", "TEXT"),
    ("USER_TYPE", "TEXT"),
)
DEPARTMENT_COLUMNS = (
    ("ID", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    ("NAME", "TEXT"),
    ("SORT", "INTEGER"),
    ("PARENT", "INTEGER"),
    ("UF_HEAD", "INTEGER"),
)


class Store:
    """One SQLite connection shared by the emulator's threads under a lock."""

    def __init__(self, database: str = ":memory:", lock: threading.RLock | None = None):
        self.lock = lock or threading.RLock()
        self.db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        #: Derived data the families cache (declared user fields, smart-process types);
        #: whoever changes the source pops the key, and `clear` drops it all.
        self.cache: dict[str, Any] = {}
        self.db.execute("PRAGMA journal_mode=MEMORY")
        self.db.execute("PRAGMA synchronous=OFF")
        self._create()

    def _create(self) -> None:
        #: Columns holding JSON, per table (entity tables made later add theirs).
        self.json_columns: dict[str, frozenset[str]] = {"users": frozenset({"UF_DEPARTMENT"})}
        with self.lock:
            for entity in ENTITIES.values():
                self.create_entity_table(entity)
            for table, (ddl, json_cols) in EXTRA_TABLES.items():
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({ddl})")
                self.json_columns[table] = json_cols
            for table, columns in (("users", USER_COLUMNS), ("departments", DEPARTMENT_COLUMNS)):
                body = ", ".join(f'"{n}" {t}' for n, t in columns)
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")

    def create_entity_table(self, entity: Entity) -> None:
        """The table of one entity (smart-process types make theirs when created)."""
        cols = ["ID INTEGER PRIMARY KEY AUTOINCREMENT"]
        cols += [f'"{f.name}" {f.sql_type}' for f in entity.columns if f.name != "ID"]
        cols.append('"UF" TEXT')
        with self.lock:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {entity.table} ({', '.join(cols)})")
            for name in ("ASSIGNED_BY_ID", "TITLE", "DATE_CREATE", "OWNER_ID", "ENTITY_ID"):
                if name in entity.by_name:
                    self.db.execute(
                        f"CREATE INDEX IF NOT EXISTS ix_{entity.table}_{name.lower()} "
                        f'ON {entity.table}("{name}")'
                    )
        self.json_columns[entity.table] = entity.json_columns

    # -- generic helpers ------------------------------------------------------------------

    def next_sequence(self, name: str, count: int = 1) -> int:
        """Reserve ``count`` numbers of a named sequence; returns the first."""
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            first = (row[0] if row else 0) + 1
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (name, first + count - 1),
            )
            return first

    def insert_row(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row; returns its new ID."""
        names = list(row)
        sql = (
            f"INSERT INTO {table} ({', '.join(f'{chr(34)}{n}{chr(34)}' for n in names)}) "
            f"VALUES ({', '.join('?' * len(names))})"
        )
        with self.lock:
            cursor = self.db.execute(sql, [_db_value(row[n]) for n in names])
            return int(cursor.lastrowid or 0)

    def insert_many(self, table: str, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Bulk insert in one transaction (seeding)."""
        sql = (
            f"INSERT INTO {table} ({', '.join(f'{chr(34)}{n}{chr(34)}' for n in names)}) "
            f"VALUES ({', '.join('?' * len(names))})"
        )
        with self.lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany(sql, ([_db_value(v) for v in r] for r in rows))
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def update_row(self, table: str, ident: int, row: dict[str, Any]) -> bool:
        """Update columns of one row; False when the row does not exist."""
        with self.lock:
            if not row:
                found = self.db.execute(f"SELECT 1 FROM {table} WHERE ID = ?", (ident,))
                return found.fetchone() is not None
            sets = ", ".join(f'"{n}" = ?' for n in row)
            cursor = self.db.execute(
                f"UPDATE {table} SET {sets} WHERE ID = ?",
                [*(_db_value(v) for v in row.values()), ident],
            )
            return cursor.rowcount > 0

    def delete_row(self, table: str, ident: int) -> bool:
        """Delete one row; False when it did not exist."""
        with self.lock:
            cursor = self.db.execute(f"DELETE FROM {table} WHERE ID = ?", (ident,))
            return cursor.rowcount > 0

    def fetch_row(self, table: str, ident: int) -> dict[str, Any] | None:
        """One row by ID, JSON columns decoded."""
        with self.lock:
            row = self.db.execute(f"SELECT * FROM {table} WHERE ID = ?", (ident,)).fetchone()
        return None if row is None else self._decode(row, table)

    def select(
        self,
        table: str,
        where: str = "1",
        args: Sequence[Any] = (),
        order: str = "ID ASC",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Rows matching a WHERE clause, ordered and paged by SQL."""
        sql = f"SELECT * FROM {table} WHERE {where} ORDER BY {order}"
        params = list(args)
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        with self.lock:
            # Plain tuples and the names once: a page of wide records is built several times
            # faster than through sqlite3.Row.
            cursor = self.db.cursor()
            cursor.row_factory = None
            rows = cursor.execute(sql, params).fetchall()
            names = [d[0] for d in cursor.description]
        json_columns = self.json_columns.get(table, frozenset())
        decoded = [(i, name, name in _OBJECT_COLUMNS) for i, name in enumerate(names)
                   if name in json_columns]
        out = []
        for row in rows:
            record = dict(zip(names, row, strict=True))
            for i, name, is_object in decoded:
                raw = row[i]
                record[name] = json.loads(raw) if raw else ({} if is_object else [])
            out.append(record)
        return out

    def count(self, table: str, where: str = "1", args: Sequence[Any] = ()) -> int:
        """How many rows match."""
        with self.lock:
            return int(
                self.db.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE {where}", list(args)
                ).fetchone()[0]
            )

    def entity(self, name: str) -> Entity:
        """An entity definition by name (lead, contact, company, deal)."""
        return ENTITIES[name]

    def clear(self) -> None:
        """Delete all data and restart the ID sequences."""
        with self.lock:
            # Every table there is: modules such as tasks add their own.
            tables = [
                row[0]
                for row in self.db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for table in tables:
                self.db.execute(f'DELETE FROM "{table}"')
            self.db.execute("DELETE FROM sqlite_sequence")
            self.cache.clear()

    def _decode(self, row: sqlite3.Row, table: str) -> dict[str, Any]:
        out = dict(row)
        for name in self.json_columns.get(table, ()):
            raw = out.get(name)
            if raw:
                out[name] = json.loads(raw)
            elif name in out:
                out[name] = {} if name in _OBJECT_COLUMNS else []
        return out

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.db.close()


#: JSON columns that are objects when empty (the rest are lists).
_OBJECT_COLUMNS = frozenset({"UF", "SETTINGS", "PROVIDER_PARAMS", "DATA", "LABELS"})


def _db_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
