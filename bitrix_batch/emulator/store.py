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

from .entities import ENTITIES, Entity

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
        self.db.execute("PRAGMA journal_mode=MEMORY")
        self.db.execute("PRAGMA synchronous=OFF")
        self._create()

    def _create(self) -> None:
        with self.lock:
            for entity in ENTITIES.values():
                cols = ["ID INTEGER PRIMARY KEY AUTOINCREMENT"]
                cols += [f'"{f.name}" {f.sql_type}' for f in entity.fields if f.name != "ID"]
                cols.append('"UF" TEXT')
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {entity.table} ({', '.join(cols)})")
                for name in ("ASSIGNED_BY_ID", "TITLE", "DATE_CREATE"):
                    if name in entity.by_name:
                        self.db.execute(
                            f"CREATE INDEX IF NOT EXISTS ix_{entity.table}_{name} "
                            f'ON {entity.table}("{name}")'
                        )
            for table, columns in (("users", USER_COLUMNS), ("departments", DEPARTMENT_COLUMNS)):
                body = ", ".join(f'"{n}" {t}' for n, t in columns)
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")

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
        return None if row is None else _decode(row, table)

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
            rows = self.db.execute(sql, params).fetchall()
        return [_decode(r, table) for r in rows]

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

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.db.close()


#: Columns holding JSON, per table.
_JSON_COLUMNS: dict[str, frozenset[str]] = {
    **{
        e.table: frozenset({"UF", *(f.name for f in e.fields if f.is_multifield)})
        for e in ENTITIES.values()
    },
    "users": frozenset({"UF_DEPARTMENT"}),
}


def _db_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _decode(row: sqlite3.Row, table: str) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON_COLUMNS.get(table, frozenset()).intersection(out):
        raw = out[name]
        out[name] = json.loads(raw) if raw else ([] if name != "UF" else {})
    return out
