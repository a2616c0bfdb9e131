"""The SQLite write lock: this process's FairLock, the flock across processes, and when both are let go."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from tests.support_processes import wait_for

from doorstep.db import engine as db_engine
from doorstep.db.engine import FileWriteLock, create_db_engine


def _lock_path(db: Path) -> str:
    return os.path.abspath(db) + "-writelock"


def _taken_elsewhere(db: Path) -> bool:
    """Whether the write lock is held, asked through a file of our own (flock conflicts between open files,
    even within one process, as between processes)."""
    fd = os.open(_lock_path(db), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the file drops a lock it took
    return False


def _create_table(url: str) -> None:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS probe (who TEXT NOT NULL, n INTEGER NOT NULL)"))
    engine.dispose()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lock.db"
    _create_table(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(db: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{db}")
    yield engine
    engine.dispose()


def test_a_write_transaction_holds_the_lock_across_processes_until_it_ends(db: Path, engine: Engine) -> None:
    assert not _taken_elsewhere(db)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe VALUES ('a', 1)"))
        assert _taken_elsewhere(db)
    assert not _taken_elsewhere(db)

    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO probe VALUES ('a', 2)"))
        assert _taken_elsewhere(db)
        raise RuntimeError("roll back")
    assert not _taken_elsewhere(db)  # released on rollback too


def test_readers_do_not_take_the_lock(db: Path) -> None:
    reader = create_db_engine(f"sqlite:///{db}", for_reads=True)
    fd = os.open(_lock_path(db), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" is writing
    counts: list[int] = []
    try:

        def read() -> None:
            with reader.connect() as conn:
                counts.append(conn.execute(text("SELECT count(*) FROM probe")).scalar_one())

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(10)
        assert counts == [0]
    finally:
        os.close(fd)
        reader.dispose()


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_the_locks_are_let_go_only_once_the_transaction_has_ended(
    db: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """SQLAlchemy's commit and rollback events fire before COMMIT/ROLLBACK run: a writer let in then finds the
    database still locked (the commit's fsync) and sleeps in SQLite's busy handler."""
    lock = db_engine._write_lock(str(db))
    in_transaction_at_release: list[bool] = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        original = lock.release

        def release() -> None:
            in_transaction_at_release.append(raw.in_transaction)
            original()

        monkeypatch.setattr(lock, "release", release)
        transaction = conn.begin()
        conn.execute(text("INSERT INTO probe VALUES ('a', 1)"))
        transaction.commit() if ending == "commit" else transaction.rollback()

    assert in_transaction_at_release == [False]
    assert not _taken_elsewhere(db)


def test_an_invalidated_connection_lets_go_of_the_locks(db: Path, engine: Engine) -> None:
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO probe VALUES ('a', 1)"))
    assert _taken_elsewhere(db)
    conn.invalidate()
    assert not _taken_elsewhere(db)
    conn.close()
    with engine.begin() as other:  # and this process's lock is free: the next writer goes at once
        other.execute(text("INSERT INTO probe VALUES ('b', 1)"))


def _write_rows(url: str, who: str, n: int) -> None:
    engine = create_db_engine(url)
    for _ in range(n):
        with engine.begin() as conn:
            # read-then-write: correct only if no other process writes in between
            last = conn.execute(text("SELECT coalesce(max(n), 0) FROM probe")).scalar_one()
            conn.execute(text("INSERT INTO probe VALUES (:who, :n)"), {"who": who, "n": last + 1})
    engine.dispose()


def test_writers_in_two_processes_are_serialised(db: Path) -> None:
    url = f"sqlite:///{db}"
    mp = multiprocessing.get_context("spawn")
    processes = [mp.Process(target=_write_rows, args=(url, who, 200)) for who in ("p1", "p2")]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0]

    with sqlite3.connect(db) as raw:
        numbers = [n for (n,) in raw.execute("SELECT n FROM probe ORDER BY n")]
        by_process = dict(raw.execute("SELECT who, count(*) FROM probe GROUP BY who").fetchall())
    assert numbers == list(range(1, 401))  # no two transactions read the same max
    assert by_process == {"p1": 200, "p2": 200}


def _hold_and_die(url: str, holding: object) -> None:
    engine = create_db_engine(url)
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO probe VALUES ('dead', 1)"))
    holding.set()  # type: ignore[attr-defined]
    os.kill(os.getpid(), signal.SIGKILL)  # dies mid-transaction, holding the write lock


def test_a_writer_that_dies_holding_the_lock_frees_it(db: Path, engine: Engine) -> None:
    mp = multiprocessing.get_context("spawn")
    holding = mp.Event()
    process = mp.Process(target=_hold_and_die, args=(f"sqlite:///{db}", holding))
    process.start()
    assert holding.wait(60)
    process.join(60)
    assert process.exitcode == -signal.SIGKILL

    assert not _taken_elsewhere(db)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe VALUES ('alive', 1)"))
        rows = conn.execute(text("SELECT who FROM probe")).scalars().all()
    assert rows == ["alive"]  # the dead writer's transaction never committed


def test_a_wait_that_times_out_gives_up_and_lets_go_when_the_lock_comes(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db-writelock")
    lock = FileWriteLock(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process holds it
    try:
        assert lock.acquire(timeout=0.05) is False
        assert lock.acquire(timeout=0.05) is False  # the abandoned wait is still pending: no second waiter
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    # the abandoned wait gets the lock and lets go of it, so it is free for everyone again
    wait_for(lambda: not lock._pending_wait, timeout_s=10, what="the abandoned wait to finish")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: the abandoned wait did not keep it
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    assert lock.acquire(timeout=1)
    lock.release()


def test_a_waiter_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db-writelock")
    lock = FileWriteLock(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(lock.acquire(timeout=30)))
    waiter.start()
    wait_for(lambda: lock._pending_wait, timeout_s=10, what="the waiter to block")
    assert result == []
    fcntl.flock(fd, fcntl.LOCK_UN)
    waiter.join(30)
    assert result == [True]
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the waiter holds it now
    lock.release()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def _acquire_in_child(lock: FileWriteLock, conn: object) -> None:
    conn.send(lock.acquire(timeout=0.2))  # type: ignore[attr-defined]


def test_a_forked_child_does_not_share_the_parents_lock(tmp_path: Path) -> None:
    lock = FileWriteLock(str(tmp_path / "x.db-writelock"))
    assert lock.acquire(timeout=1)
    try:
        mp = multiprocessing.get_context("fork")
        parent_end, child_end = mp.Pipe()
        child = mp.Process(target=_acquire_in_child, args=(lock, child_end))
        child.start()
        child.join(30)
        # the inherited file would have said yes (flock belongs to the open file, which fork shares)
        assert parent_end.recv() is False
    finally:
        lock.release()


def test_engines_that_spell_the_path_differently_queue_on_one_lock(
    db: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two locks for one file in one process would both let a writer through to the shared flock (the same
    open file says yes twice), and the second would sleep in SQLite's busy handler after all."""
    monkeypatch.chdir(db.parent)
    relative = create_db_engine(f"sqlite:///{db.name}")
    lock = db_engine._write_lock(str(db))
    done: list[int] = []

    def write() -> None:
        with relative.begin() as conn:
            conn.execute(text("INSERT INTO probe VALUES ('relative', 1)"))
        done.append(1)

    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO probe VALUES ('absolute', 1)"))
            thread = threading.Thread(target=write)
            thread.start()
            # the second writer queues behind the first on the same lock (a ticket taken, not served)
            wait_for(
                lambda: lock._next_ticket - lock._serving == 2,
                timeout_s=10,
                what="the second writer to queue",
            )
            assert done == []
        thread.join(30)
        assert done == [1]
    finally:
        relative.dispose()


# ---- durable commits, flushed outside the lock ----------------------------------------------------------


def test_a_commit_is_flushed_to_disk_after_the_lock_is_let_go_and_before_it_returns(
    db: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers run with synchronous=NORMAL (SQLite does not fsync inside COMMIT, under the lock every writer
    queues on); the commit then fsyncs the write-ahead log itself, lock already free, before it returns."""
    wal = str(db) + "-wal"
    synced: list[tuple[bool, bool]] = []  # (the lock was free, the descriptor is the WAL file)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((not _taken_elsewhere(db), os.fstat(fd).st_ino == os.stat(wal).st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
        conn.execute(text("INSERT INTO probe VALUES ('a', 1)"))
        assert synced == []
    assert synced == [(True, True)]  # once, on the log, with the lock free, before the commit returned

    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO probe VALUES ('a', 2)"))
        raise RuntimeError("roll back")
    assert len(synced) == 1  # a rollback has nothing to make durable

    reader = create_db_engine(f"sqlite:///{db}", for_reads=True)
    try:
        with reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM probe")).scalar_one() == 1
    finally:
        reader.dispose()
    assert len(synced) == 1  # nor does a reader


def test_background_commits_return_without_the_disk_and_are_flushed_by_a_thread_soon_after(
    db: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's and the sender's commits acknowledge nothing: they return without their fsync, which the
    database's flush thread runs at once, off their path."""
    synced_in: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_in.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with db_engine.background_commits(), engine.begin() as conn:
        conn.execute(text("INSERT INTO probe VALUES ('worker', 1)"))
    wait_for(lambda: synced_in == ["sqlite-flush"], timeout_s=5, what="the flush thread's fsync")

    with engine.begin() as conn:  # outside the block: durable before it returns, as before
        conn.execute(text("INSERT INTO probe VALUES ('api', 1)"))
    assert synced_in == ["sqlite-flush", threading.current_thread().name]
