"""Group commit of ingest appends, and the fair SQLite write lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, func, insert, select
from tests.support_pipeline import create_probe_tables, probe_counts

from doorstep.db.engine import FairLock, create_db_engine
from doorstep.db.group_commit import GroupCommitter


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    create_probe_tables(engine)
    yield engine
    engine.dispose()


def _row(key: str, *, gate: threading.Event | None = None, fail: bool = False):  # type: ignore[no-untyped-def]
    def write(conn: Connection) -> str:
        if gate is not None:
            gate.wait(10)
        conn.execute(insert(probe_counts).values(key=key, events=1, last_seq=1))
        if fail:
            raise ValueError(f"{key} is refused")
        return key

    return write


def _keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(probe_counts.c.key)).scalars())


def test_writes_queued_while_one_commits_share_the_next_transaction(engine: Engine) -> None:
    writer = GroupCommitter(engine)
    gate = threading.Event()
    try:
        first = writer.submit_future(_row("k00", gate=gate))
        time.sleep(0.1)  # the committer is inside the first write
        rest = [writer.submit_future(_row(f"k{n:02d}")) for n in range(1, 20)]
        gate.set()
        results = [first.result(10)] + [f.result(10) for f in rest]
    finally:
        writer.close()

    assert results == [f"k{n:02d}" for n in range(20)]
    assert writer.groups == 2  # the first alone, then the 19 that queued behind it
    assert _keys(engine) == [f"k{n:02d}" for n in range(20)]


def test_a_failing_write_fails_alone_and_the_rest_of_its_group_commits(engine: Engine) -> None:
    writer = GroupCommitter(engine)
    gate = threading.Event()
    try:
        blocker = writer.submit_future(_row("a", gate=gate))
        time.sleep(0.1)
        good = writer.submit_future(_row("b"))
        bad = writer.submit_future(_row("c", fail=True))
        also_good = writer.submit_future(_row("d"))
        gate.set()
        assert blocker.result(10) == "a" and good.result(10) == "b" and also_good.result(10) == "d"
        with pytest.raises(ValueError, match="c is refused"):
            bad.result(10)
    finally:
        writer.close()

    assert _keys(engine) == ["a", "b", "d"]  # nothing of the failed write is stored


def test_submitting_after_close_is_refused(engine: Engine) -> None:
    writer = GroupCommitter(engine)
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_future(_row("x"))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(probe_counts)).scalar_one() == 0


def test_the_write_lock_serves_threads_in_arrival_order() -> None:
    lock = FairLock()
    order: list[int] = []
    assert lock.acquire(timeout=1)

    def take(n: int) -> None:
        assert lock.acquire(timeout=5)
        order.append(n)
        lock.release()

    threads = [threading.Thread(target=take, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # arrive one after another
    lock.release()
    for thread in threads:
        thread.join()

    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_that_times_out_does_not_stall_the_queue() -> None:
    lock = FairLock()
    assert lock.acquire(timeout=1)
    assert lock.acquire(timeout=0.05) is False  # gave up
    lock.release()
    assert lock.acquire(timeout=0.5)  # the abandoned turn was skipped
    lock.release()
