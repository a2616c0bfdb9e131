"""The analytical engine: DuckDB reading the store through its sqlite/postgres scanners, never writing to it.

The scanners come from PyPI (duckdb-ext-sqlite, duckdb-ext-postgres, pinned to duckdb's version) and are
loaded from site-packages, so nothing is downloaded at run time. The store is attached READ_ONLY; each
computation stages its temp tables inside a DuckDB connection taken from a small pool.

`SqlRunner` runs the very same statements as plain SQL on the store through SQLAlchemy: the benchmark's
comparison and the tests' cross-check.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from doorstep.analytics.errors import AnalyticsError
from doorstep.analytics.sql import Dialect
from doorstep.db.engine import normalise_url

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


class Runner(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: dict[str, Any]) -> None: ...

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...


class DuckRunner:
    """`pushdown`: the store is SQLite, so the period's rows are first copied in through `sqlite_query`."""

    def __init__(self, con: Any, *, pushdown: bool = False, types: dict[str, dict[str, str]] | None = None):
        self.con = con
        self.pushdown = pushdown
        self.types = types or {}
        self.dialect = Dialect("duckdb", "src_" if pushdown else "store.")

    def execute(self, sql: str, params: dict[str, Any]) -> None:
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


class DuckEngine:
    """A pool of DuckDB connections, each with the store attached read-only."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 2,
        threads: int | None = None,
        memory_limit: str | None = None,
        pushdown: bool = False,
    ):
        self.database_url = normalise_url(database_url)
        self.pool_size = pool_size
        self.threads = threads
        self.memory_limit = memory_limit
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._closed = False
        # Pushdown (SQLite stores only) copies just the period's rows in through sqlite_query. Off by default:
        # on the 1M-order benchmark store it was slower than scanning (see bench/RESULTS_dashboard.md).
        self.pushdown = pushdown and self.database_url.startswith("sqlite")
        self._column_types: dict[str, dict[str, str]] | None = None

    def _attach_sql(self) -> str:
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            path = url.database
            if not path or path == ":memory:":
                raise AnalyticsError("DuckDB cannot read an in-memory SQLite store: use a file database")
            return f"ATTACH '{_quote(str(Path(path).resolve()))}' AS store (TYPE sqlite, READ_ONLY)"
        if url.get_backend_name() == "postgresql":
            parts = {
                "host": url.host,
                "port": url.port,
                "dbname": url.database,
                "user": url.username,
                "password": url.password,
            }
            dsn = " ".join(f"{k}={v}" for k, v in parts.items() if v)
            return f"ATTACH '{_quote(dsn)}' AS store (TYPE postgres, READ_ONLY)"
        raise AnalyticsError(f"DuckDB cannot read a {url.get_backend_name()} store")

    def _connect(self) -> Any:
        import duckdb

        config: dict[str, Any] = {
            "extension_directory": extension_directory(),
            "autoinstall_known_extensions": False,
        }
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        con = duckdb.connect(":memory:", config=config)
        is_sqlite = self.database_url.startswith("sqlite")
        con.execute("LOAD sqlite" if is_sqlite else "LOAD postgres")
        con.execute(self._attach_sql())
        return con

    @contextmanager
    def runner(self) -> Iterator[DuckRunner]:
        if self._closed:
            raise AnalyticsError("the analytics engine is closed")
        try:
            con = self._pool.get_nowait()
        except queue.Empty:
            con = self._connect()
            with self._lock:
                self._created += 1
        ok = False
        try:
            yield DuckRunner(con, pushdown=self.pushdown, types=self._types(con))
            ok = True
        finally:
            if ok and not self._closed and self._pool.qsize() < self.pool_size:
                self._pool.put(con)
            else:
                con.close()

    def _types(self, con: Any) -> dict[str, dict[str, str]]:
        """Column types of the source tables as DuckDB reads them from the store (read once)."""
        if not self.pushdown:
            return {}
        if self._column_types is None:
            from doorstep.analytics.sql import SOURCE_COLUMNS

            self._column_types = {
                table: {name: kind for name, kind, *_ in con.execute(f"DESCRIBE store.{table}").fetchall()}
                for table in SOURCE_COLUMNS
            }
        return self._column_types

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break


def _quote(value: str) -> str:
    return value.replace("'", "''")
