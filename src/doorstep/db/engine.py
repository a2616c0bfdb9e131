"""Engines for SQLite (embedded, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import threading
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
        _configure_sqlite(engine, begin="BEGIN" if for_reads else "BEGIN IMMEDIATE", path=path or "")
        return engine
    return create_engine(
        url,
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


# SQLite has one writer at a time. Threads of one process queue for it on a lock of ours: the next writer
# starts the moment the previous one commits, where SQLite's busy handler would sleep for milliseconds.
WRITE_LOCK_TIMEOUT_S = 30.0  # then fall through to SQLite's own busy handling (and its error)


BACKGROUND_MAX_WAIT_S = 0.25  # a background writer yields to requests, but gets a turn at least this often

_thread_role = threading.local()


def mark_background_thread() -> None:
    """The calling thread's SQLite writes (the in-process worker's) give way to request threads'."""
    _thread_role.is_background = True


def _is_background_thread() -> bool:
    return bool(getattr(_thread_role, "is_background", False))


class FairLock:
    """First come, first served: a busy thread cannot starve the others, as it can with threading.Lock,
    which hands the lock to whoever asks first after a release. Background writers (the in-process worker)
    wait until no request thread is queued, for at most BACKGROUND_MAX_WAIT_S: ingest stays fast under
    load and the projection catches up in the gaps (its lag shows in /metrics)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def acquire(self, timeout: float, *, background: bool = False) -> bool:
        with self._cond:
            if background:  # queue only once the lock is free and no request waits (or waited long enough)
                self._cond.wait_for(
                    lambda: self._serving == self._next_ticket, timeout=min(timeout, BACKGROUND_MAX_WAIT_S)
                )
            ticket = self._next_ticket
            self._next_ticket += 1
            if self._cond.wait_for(lambda: self._serving == ticket, timeout=timeout):
                return True
            # gave up: pass our turn on when it comes, so the queue never stalls on us
            self._abandoned.add(ticket)
            self._skip_abandoned()
            return False

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._skip_abandoned()
            self._cond.notify_all()

    def _skip_abandoned(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
            self._cond.notify_all()


_WRITE_LOCKS: dict[str, FairLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: str) -> FairLock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(path, FairLock())


def _configure_sqlite(engine: Engine, *, begin: str, path: str) -> None:
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

    is_writer = begin == "BEGIN IMMEDIATE" and path not in ("", ":memory:")
    lock = _write_lock(path) if is_writer else None

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: avoids SQLITE_BUSY upgrade deadlocks between writers.
        if lock is not None and lock.acquire(
            timeout=WRITE_LOCK_TIMEOUT_S, background=_is_background_thread()
        ):
            conn.info["doorstep_write_lock"] = lock
        try:
            conn.exec_driver_sql(begin)
        except BaseException:
            _release(conn)
            raise

    if lock is not None:
        event.listen(engine, "commit", _release)
        event.listen(engine, "rollback", _release)


def _release(conn: Any) -> None:
    held = conn.info.pop("doorstep_write_lock", None)
    if held is not None:
        held.release()
