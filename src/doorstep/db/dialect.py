"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def insert_ignore(conn: Connection, table: Table, *, index_elements: list[str] | None = None) -> Any:
    """INSERT that skips rows violating a unique constraint (idempotent appends)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=index_elements)


def upsert(conn: Connection, table: Table, *, index_elements: list[str], update_columns: list[str]) -> Any:
    """INSERT ... ON CONFLICT (index_elements) DO UPDATE SET the given columns from the new row."""
    stmt = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    return stmt.on_conflict_do_update(
        index_elements=index_elements, set_={c: stmt.excluded[c] for c in update_columns}
    )
