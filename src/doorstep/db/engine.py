"""Engines for SQLite (embedded, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from doorstep.db.types import json_default


def normalise_url(url: str) -> str:
    """Accepts postgres:// and postgresql:// and routes both to the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=json_default).decode()


def create_db_engine(url: str, *, pool_size: int = 10, for_reads: bool = False) -> Engine:
    """`for_reads` engines start deferred transactions on SQLite, so readers never queue behind writers."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if path in (None, "", ":memory:") else None,
        )
        _configure_sqlite(engine, begin="BEGIN" if for_reads else "BEGIN IMMEDIATE")
        return engine
    return create_engine(
        url,
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def _configure_sqlite(engine: Engine, *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is disabled so BEGIN IMMEDIATE below is honoured
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsync) before we acknowledge an event
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: avoids SQLITE_BUSY upgrade deadlocks between writers.
        conn.exec_driver_sql(begin)
