"""Engines for SQLite (embedded, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from doorstep.db.types import json_default

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking between processes
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


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

    def has_waiters(self) -> bool:
        """Whether a thread besides the holder queues for the lock (read without the guard: a hint)."""
        return self._next_ticket - self._serving > 1

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


class FileWriteLock:
    """The SQLite write lock across processes: an OS lock (flock) on a file beside the database. SQLite's own
    busy handler sleeps between retries (1, 2, 5, 10 ... 100 ms), so a process that finds the database locked
    loses milliseconds after the holder has committed; a process blocked in flock is woken by the kernel the
    moment the holder releases. Each process holds one open file per database (flock belongs to the open
    file, so a forked child opens its own); the kernel drops the lock when the holder exits, however it ends.
    Only writers take it: WAL readers never wait for writers. A wait longer than the timeout gives up, and the
    writer falls through to SQLite's busy handling (and its error), as before. Correctness never rests on it:
    BEGIN IMMEDIATE still takes SQLite's own lock, so a writer without it (another program, a timed-out wait)
    is merely slower."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._guard = threading.Lock()
        self._pid = -1
        self._fd: int | None = None
        self._broken = False  # the lock file cannot be opened: SQLite's own locking only
        # a timed-out wait that still sits in flock: its thread lets go when it gets the lock, no one asks meanwhile
        self._pending_wait = False

    def _file(self) -> int | None:
        pid = os.getpid()
        if self._pid != pid:  # first use, or a forked child: the inherited file would share the parent's lock
            self._guard = threading.Lock()
            self._pid, self._fd, self._pending_wait = pid, None, False
        if self._fd is None and not self._broken:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError:
                logger.warning(
                    "cannot open %s: SQLite writers in several processes wait in its busy handler", self.path
                )
                self._broken = True
        return self._fd

    def acquire(self, timeout: float) -> bool:
        """True if this process now holds the lock. The caller holds the process's FairLock, so no other
        thread of this process asks at the same time."""
        fd = self._file()
        if fd is None or self._pending_wait:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        # held by another process: block in the kernel (flock releases the GIL), in a thread so we can give up
        got = threading.Event()
        state = {"abandoned": False}
        guard = self._guard

        def wait() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                with guard:
                    self._pending_wait = False
                return
            with guard:
                if state["abandoned"]:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    self._pending_wait = False
                    return
                got.set()

        self._pending_wait = True
        threading.Thread(target=wait, name="sqlite-write-lock", daemon=True).start()
        if got.wait(timeout):
            self._pending_wait = False
            return True
        with guard:
            if got.is_set():  # it came just as we gave up
                self._pending_wait = False
                return True
            state["abandoned"] = True  # the thread lets go when it gets the lock; until then no one asks
        return False

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)


_WRITE_LOCKS: dict[str, FairLock] = {}
_FILE_LOCKS: dict[str, FileWriteLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


_WAL_SYNCS: dict[str, WalSync] = {}


def _wal_sync(path: str) -> WalSync:
    """One per database file and process, however many engines write to it."""
    with _WRITE_LOCKS_GUARD:
        return _WAL_SYNCS.setdefault(path, WalSync(path))


def _write_lock(path: str) -> FairLock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(path, FairLock())


def writers_waiting(engine: Engine) -> Callable[[], bool]:
    """A probe: does another thread of this process wait for the write lock of `engine`'s SQLite database?
    A long writer (the in-process worker) checks it between rows and commits early to let that one in.
    Always False elsewhere (PostgreSQL has no single write lock; other processes' writers are not seen)."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return lambda: False
    return _write_lock(os.path.abspath(path)).has_waiters


def _file_write_lock(path: str) -> FileWriteLock | None:
    """The cross-process lock for the database at `path`; None where the OS has no flock (Windows)."""
    if fcntl is None:
        return None
    lock_path = os.path.abspath(path) + "-writelock"
    with _WRITE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(lock_path, FileWriteLock(lock_path))


def _configure_sqlite(engine: Engine, *, begin: str, path: str) -> None:
    is_writer = begin == "BEGIN IMMEDIATE" and path not in ("", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is disabled so BEGIN IMMEDIATE below is honoured
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        if is_writer and mode is not None and str(mode[0]).lower() == "wal":
            # A commit is on disk before it returns, as with synchronous=FULL, but the WAL's fsync is ours, run
            # once the write lock is let go (WalSync): with FULL, SQLite fsyncs inside COMMIT, and a slow
            # fsync (100-700 ms on a busy VM disk) held every other writer of every process waiting.
            cursor.execute("PRAGMA synchronous=NORMAL")
            _record.info[_WAL_SYNC] = True
        else:
            # FULL: a commit is on disk (WAL fsync) before we acknowledge an event
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    if not is_writer:

        @event.listens_for(engine, "begin")
        def _on_begin_unlocked(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return
    lock = _write_lock(os.path.abspath(path))  # one key per file, however the URL spells it
    file_lock = _file_write_lock(path)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the locks up front (this process's, then the one across processes): avoids SQLITE_BUSY
        # upgrade deadlocks between writers, and no writer sleeps in SQLite's busy handler.
        if lock.acquire(timeout=WRITE_LOCK_TIMEOUT_S, background=_is_background_thread()):
            # without our turn here, another thread of this process may hold the file lock: not ours to take
            held_file = (
                file_lock if file_lock is not None and file_lock.acquire(WRITE_LOCK_TIMEOUT_S) else None
            )
            conn.info[_HELD] = (lock, held_file)
        try:
            conn.exec_driver_sql(begin)
        except BaseException:
            _release(conn.info)
            raise

    # The locks go only once COMMIT or ROLLBACK has run: SQLAlchemy's commit and rollback events fire before
    # them, and a writer let in then would find the database still locked (the commit's fsync) and sleep.
    dialect = engine.dialect
    wal = _wal_sync(os.path.abspath(path))
    dialect.do_commit = _releasing(dialect.do_commit, then_sync=wal)  # type: ignore[method-assign]
    dialect.do_rollback = _releasing(dialect.do_rollback)  # type: ignore[method-assign]

    # No ROLLBACK runs on a connection that is invalidated (lost): let go of the locks as it goes.
    @event.listens_for(engine.pool, "invalidate")
    def _on_invalidate(_dbapi_connection: Any, record: Any, _exc: Any) -> None:
        _release(record.info)

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        _release(record.info)  # a safety net: nothing is checked in mid-transaction


_HELD = "doorstep_write_lock"
# on a writer connection's record: it runs with synchronous=NORMAL, and WalSync makes its commits durable
_WAL_SYNC = "doorstep_wal_sync"


_BACKGROUND_COMMITS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "doorstep_background_commits", default=False
)


@contextmanager
def background_commits() -> Iterator[None]:
    """Commits in this block acknowledge nothing to anyone (the outbox worker, the sender): on SQLite they
    return without waiting for the disk, and a thread flushes them within moments (WalSync). A crash of the
    machine in between loses only such commits, newest first, and their work is done again: the outbox rows
    they completed are pending again, a message they recorded as sent is sent again (at least once, as when a
    sender dies between handing a message over and recording it). PostgreSQL's synchronous_commit=off makes
    the same trade; commits outside the block (ingest, the API) still return only once on disk."""
    token = _BACKGROUND_COMMITS.set(True)
    try:
        yield
    finally:
        _BACKGROUND_COMMITS.reset(token)


class WalSync:
    """Durable commits, outside the write lock, for one database file in one process.

    A commit in WAL mode with synchronous=NORMAL has written its frames but not flushed them; one fsync of the
    WAL file then makes it durable, and every commit before it (frames are appended in commit order, and the
    file's fsync covers them all). SQLite itself still syncs the WAL before each checkpoint, so the database
    file never gets frames the log could lose. A foreground commit fsyncs before it returns; a background one
    (`background_commits`) leaves the fsync to this object's thread, at once and off its path: on this
    project's VM disk every fsync of every process stalls together for 100-500 ms every few seconds, and the
    worker or the sender waiting through each stall was most of the pipeline's tail latency. The thread ends
    after a few idle seconds and starts again on demand; the file is opened for each fsync, so no descriptor
    outlives the log or the database.

    Checkpoints stay SQLite's own, inside the COMMIT that crosses 1,000 pages, under the write lock. Tried
    and left out (2026-12-03): checkpoints by this thread, without the lock, never let the log restart under
    a steady load (writers keep appending while a PASSIVE checkpoint copies), and it grew by 30 MB a second."""

    IDLE_S = 5.0

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.wal_path = db_path + "-wal"
        self._guard = threading.Lock()
        self._unsynced = False  # a background commit waits for the thread's fsync
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def committed(self, *, background: bool) -> None:
        """After a COMMIT, with the write lock already let go."""
        if not background:
            self.fsync()
            return
        with self._guard:
            self._unsynced = True
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sqlite-flush", daemon=True)
                self._thread.start()

    def fsync(self) -> None:
        try:
            fd = os.open(self.wal_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return  # no log: nothing of ours can be in one (the connection is not in WAL mode)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _run(self) -> None:
        while True:
            if not self._wake.wait(self.IDLE_S):
                with self._guard:  # committed() sets the event under the guard: no wake-up is missed
                    if not self._wake.is_set():
                        self._thread = None
                        return
            self._wake.clear()
            with self._guard:
                unsynced, self._unsynced = self._unsynced, False
            if unsynced:
                try:
                    self.fsync()
                except OSError:  # the database went away: nothing left to make durable
                    logger.debug("flushing %s failed", self.db_path, exc_info=True)


def _releasing(finish: Any, *, then_sync: WalSync | None = None) -> Any:
    def finish_then_release(dbapi_connection: Any) -> None:
        try:
            info = dbapi_connection.info
        except NotImplementedError:  # the ad hoc connection SQLAlchemy uses while it first connects
            info = None
        try:
            finish(dbapi_connection)
        finally:
            if info is not None:
                _release(info)
        if then_sync is not None and info is not None and info.get(_WAL_SYNC):
            then_sync.committed(background=_BACKGROUND_COMMITS.get())

    return finish_then_release


def _release(info: dict[Any, Any]) -> None:
    held = info.pop(_HELD, None)
    if held is not None:
        lock, file_lock = held
        try:
            if file_lock is not None:
                file_lock.release()
        finally:
            lock.release()
