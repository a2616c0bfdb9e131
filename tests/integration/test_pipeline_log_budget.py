"""The in-process worker shares SQLite's one write lock with ingest requests, so its log projection holds it
only so long: it commits early once a time budget is spent, or as soon as a request's writer queues for the
lock, and picks up where it stopped in the next transaction."""

from __future__ import annotations

import threading
import time
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from tests.conftest import make_settings

import doorstep.bus.worker as worker_module
from doorstep.app import BUSY_BATCH_SIZE, BUSY_LOG_PACE, IDLE_LOG_PACE, InProcessWorker, build_context
from doorstep.bus.registry import Bus, HandlerContext
from doorstep.bus.worker import PROJECTOR, LogPace, Worker
from doorstep.clock import FixedClock
from doorstep.db.engine import create_db_engine, writers_waiting
from doorstep.ingest.log import LogEntry, append
from doorstep.ingest.tables import log_offsets

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _worker(tmp_path: Path, url: str, bus: Bus) -> Worker:
    return Worker(create_db_engine(url), bus=bus, clock=FixedClock(AT), settings=make_settings(tmp_path, url))


def _log(engine: Any, n: int) -> None:
    with engine.begin() as conn:
        entries = [LogEntry("probe", f"m-{i}", "probe", None, f"k{i}", AT, {"n": i}) for i in range(1, n + 1)]
        append(conn, entries, received_at=AT)


def _offset(engine: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(log_offsets.c.position).where(log_offsets.c.consumer == PROJECTOR)).scalar()
        )


class Request:
    """A request's write, on an engine of its own on the same file: it queues for the write lock the
    projection holds, as an ingest commit does."""

    def __init__(self, url: str) -> None:
        self.engine = create_db_engine(url)
        self.waits = writers_waiting(self.engine)
        self.done = threading.Event()

    def arrive(self) -> None:
        """Starts the request and returns once it queues for the lock."""
        threading.Thread(target=self._write, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.waits() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.waits(), "the request never queued for the write lock"

    def _write(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("SELECT 1"))
        self.done.set()


def test_a_log_batch_with_a_budget_commits_once_it_is_spent_and_the_next_goes_on_from_there(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]  # the worker's clock for budgets, moved on 10 ms by each row projected
    monkeypatch.setattr(
        worker_module, "time", types.SimpleNamespace(perf_counter=lambda: now[0], monotonic=time.monotonic)
    )
    projected: list[int] = []

    def project(row: Any, ctx: HandlerContext) -> None:
        projected.append(row.payload["n"])
        now[0] += 0.010

    bus = Bus()
    bus.on_log("probe", project)
    worker = _worker(tmp_path, database_url, bus)
    _log(worker.engine, 8)

    assert (
        worker.project_log_batch(pace=LogPace(budget_s=0.025)) == 3
    )  # 10, 20, 30 ms: the third row spends the budget
    assert projected == [1, 2, 3]
    first_three = _offset(worker.engine)
    assert worker.project_log_batch(pace=LogPace(budget_s=0.025)) == 3
    assert projected == [1, 2, 3, 4, 5, 6]  # on from where it stopped, each row once
    assert _offset(worker.engine) > first_three
    assert worker.project_log_batch() == 2  # no budget: the rest in one go
    assert projected == [1, 2, 3, 4, 5, 6, 7, 8]
    assert worker.project_log_batch(pace=LogPace(budget_s=0.025)) == 0
    worker.engine.dispose()


def test_a_log_batch_that_yields_to_writers_commits_as_soon_as_a_request_waits_for_the_write_lock(
    tmp_path: Path, sqlite_url: str
) -> None:
    bus = Bus()
    request = Request(sqlite_url)
    projected: list[int] = []

    def project(row: Any, ctx: HandlerContext) -> None:
        projected.append(row.payload["n"])
        if row.payload["n"] == 2:  # a request arrives while the projection holds the lock
            request.arrive()
            assert not request.done.is_set()

    bus.on_log("probe", project)
    worker = _worker(tmp_path, sqlite_url, bus)
    _log(worker.engine, 6)

    # committed after the row the request came in
    assert worker.project_log_batch(pace=LogPace(yield_after_s=0.0)) == 2
    assert request.done.wait(10)
    assert not request.waits()
    assert worker.project_log_batch(pace=LogPace(yield_after_s=0.0)) == 4
    assert projected == [1, 2, 3, 4, 5, 6]
    worker.engine.dispose()
    request.engine.dispose()


def test_without_yielding_the_projection_keeps_the_lock_for_its_whole_batch(
    tmp_path: Path, sqlite_url: str
) -> None:
    bus = Bus()
    request = Request(sqlite_url)

    def project(row: Any, ctx: HandlerContext) -> None:
        if row.payload["n"] == 1:
            request.arrive()

    bus.on_log("probe", project)
    worker = _worker(tmp_path, sqlite_url, bus)
    _log(worker.engine, 5)

    assert worker.project_log_batch() == 5
    assert request.done.wait(10)
    worker.engine.dispose()
    request.engine.dispose()


def test_the_in_process_worker_projects_in_short_transactions_while_requests_arrive_and_longer_ones_after(
    tmp_path: Path, sqlite_url: str
) -> None:
    ctx = build_context(make_settings(tmp_path, sqlite_url))
    in_process = InProcessWorker(ctx)
    calls: list[tuple[Any, dict[str, Any]]] = []

    class Recording:
        settings = in_process.worker.settings

        def run_once(self, limit: Any = None, **kwargs: Any) -> int:
            calls.append((limit, kwargs))
            if len(calls) == 1:
                in_process.last_woken = float("-inf")  # no request since: the next round is an idle one
            else:
                in_process.stop.set()
            return 1

    in_process.worker = Recording()  # type: ignore[assignment]
    ctx.services["wake_worker"]()  # what an ingest append calls
    in_process.start()
    in_process.thread.join(10)

    assert calls == [
        (BUSY_BATCH_SIZE, {"log_pace": BUSY_LOG_PACE}),
        (None, {"log_pace": IDLE_LOG_PACE}),
    ]
    in_process.close()
    ctx.engine.dispose()
    ctx.read_engine.dispose()


@pytest.mark.postgres
def test_writers_waiting_is_never_true_on_postgresql(postgres_migrated: str) -> None:
    engine = create_db_engine(postgres_migrated)
    assert writers_waiting(engine)() is False
    engine.dispose()


def test_a_waiting_writer_is_let_in_only_once_the_transaction_has_gone_on_its_yield_after_time(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream of requests must not cut the projection into a transaction a row: it yields only after a while."""
    now = [0.0]  # moved on 10 ms by each row projected
    monkeypatch.setattr(
        worker_module, "time", types.SimpleNamespace(perf_counter=lambda: now[0], monotonic=time.monotonic)
    )
    bus = Bus()
    request = Request(sqlite_url)

    def project(row: Any, ctx: HandlerContext) -> None:
        now[0] += 0.010
        if row.payload["n"] == 1:  # a request waits from the first row on
            request.arrive()

    bus.on_log("probe", project)
    worker = _worker(tmp_path, sqlite_url, bus)
    _log(worker.engine, 8)

    # 10, 20, 30, 40 ms: then it lets the request in
    assert worker.project_log_batch(pace=LogPace(yield_after_s=0.035)) == 4
    assert request.done.wait(10)
    worker.engine.dispose()
    request.engine.dispose()


def test_a_paced_round_cut_short_looks_at_the_outbox_at_most_every_so_often(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While requests stream in, paced rounds come every few ms; looking at the outbox in each was a sixth of
    the in-process worker's time, so a round that stopped short of the log's end looks only now and then."""
    delivered: list[str] = []
    bus = Bus()
    bus.on_log("probe", lambda row, ctx: None)
    bus.handlers["probe.seen"] = lambda envelope, ctx: delivered.append(envelope.event_id)
    worker = _worker(tmp_path, sqlite_url, bus)
    worker.delivers_outbox = True
    _log(worker.engine, 6)
    pace = LogPace(budget_s=0.0)  # a row a round: each round stops short of the log's end

    def queue_outbox_row(event_id: str) -> None:
        with worker.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO outbox (event_id, event_type, handler, key, partition, payload, occurred_at,"
                    " created_at, status, attempts, available_at)"
                    " VALUES (:id, 'Probe', 'probe.seen', 'k', 0, '{}', :at, :at, 'pending', 0, :at)"
                ),
                {"id": event_id, "at": AT.replace(tzinfo=None)},
            )

    queue_outbox_row("e1")
    assert worker.run_once(log_pace=pace) == 2  # a log row, and the outbox looked at: e1
    queue_outbox_row("e2")
    assert worker.run_once(log_pace=pace) == 1  # cut short again, moments later: the outbox waits
    assert delivered == ["e1"]
    worker._outbox_looked -= worker_module.OUTBOX_PACED_EVERY_S  # as if that while had passed
    assert worker.run_once(log_pace=pace) == 2
    assert delivered == ["e1", "e2"]
    worker.engine.dispose()
