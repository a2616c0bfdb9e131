"""Runners: where the dashboard's statements execute.

`DuckRunner` runs them in DuckDB over the analytics replica (analytics/replica.py), each computation staging
its temp tables on its own cursor. `SqlRunner` runs the very same statements as plain SQL on the store through
SQLAlchemy: the benchmark's comparison and the tests' cross-check.

DuckDB's extensions (duckdb-ext-sqlite, duckdb-ext-postgres from PyPI, pinned to duckdb's version) are loaded
from site-packages, so nothing is downloaded at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, text

from doorstep.analytics.errors import AnalyticsError
from doorstep.analytics.sql import Dialect

_PARAM = {"duckdb": re.compile(r"\$([a-z_]+)"), "sql": re.compile(r"(?<![:\w]):([a-z_]+)")}


def extension_directory() -> str:
    import duckdb_ext  # the directory the duckdb-ext-* wheels install into

    return str(Path(next(iter(duckdb_ext.__path__))) / "extensions")


def _used(sql: str, params: dict[str, Any], pattern: re.Pattern[str]) -> dict[str, Any]:
    names = set(pattern.findall(sql))
    missing = names - params.keys()
    if missing:
        raise AnalyticsError(f"query needs parameters {sorted(missing)}")
    return {k: params[k] for k in names}


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, bool | int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def inline_params(sql: str, params: dict[str, Any]) -> str:
    """`sql` with its $parameters written in as literals (a DuckDB view takes no parameters). Strings are
    quoted as SQL string literals (DuckDB has no backslash escapes), so a filter value cannot end the literal."""
    used = _used(sql, params, _PARAM["duckdb"])
    return _PARAM["duckdb"].sub(lambda m: _literal(used[m.group(1)]), sql)


class Runner(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: dict[str, Any]) -> None: ...

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...


class DuckRunner:
    def __init__(self, con: Any, *, dialect: Dialect):
        self.con = con
        self.dialect = dialect

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        if sql.startswith("CREATE OR REPLACE TEMP VIEW"):
            self.con.execute(inline_params(sql, params))
            return
        self.con.execute(sql, _used(sql, params, _PARAM["duckdb"]))

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, _used(sql, params, _PARAM["duckdb"]))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


class SqlRunner:
    """Plain SQL on the store (SQLite or PostgreSQL) via SQLAlchemy. Temp tables live in the connection's
    temporary schema, never in the store's tables."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.dialect = Dialect("sqlite" if conn.dialect.name == "sqlite" else "postgresql")

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        self.conn.execute(text(sql), _used(sql, params, _PARAM["sql"]))

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        result = self.conn.execute(text(sql), _used(sql, params, _PARAM["sql"]))
        return [dict(row._mapping) for row in result]


@contextmanager
def sql_runner(engine: Engine) -> Iterator[SqlRunner]:
    with engine.connect() as conn:
        try:
            yield SqlRunner(conn)
        finally:
            conn.rollback()
