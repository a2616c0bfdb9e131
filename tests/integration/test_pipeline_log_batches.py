"""Batch projections: a run of log rows of one source goes to the source's batch form in one call; when it
fails, the rows go one by one so only the bad row is deferred for retry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, text
from tests.conftest import make_settings

from doorstep.bus.registry import Bus, HandlerContext
from doorstep.bus.tables import outbox
from doorstep.bus.worker import RETRY_LOG_HANDLER, Worker
from doorstep.clock import FixedClock
from doorstep.db.engine import create_db_engine
from doorstep.ingest.log import LogEntry, append

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _log(engine: Any, source: str, *bodies: dict[str, Any]) -> None:
    with engine.begin() as conn:
        append(
            conn,
            [LogEntry(source, f"{source}-{b['n']}", "probe", None, f"k{b['n']}", AT, b) for b in bodies],
            received_at=AT,
        )


def _worker(tmp_path: Any, url: str, bus: Bus) -> Worker:
    engine = create_db_engine(url)
    return Worker(engine, bus=bus, clock=FixedClock(AT), settings=make_settings(tmp_path, url))


def test_a_run_of_one_source_is_projected_in_one_batch_call_in_log_order(
    tmp_path: Any, sqlite_url: str
) -> None:
    calls: list[list[int]] = []
    singles: list[int] = []
    bus = Bus()
    bus.on_log(
        "probe",
        lambda row, ctx: singles.append(row.payload["n"]),
        batch=lambda rows, ctx: calls.append([r.payload["n"] for r in rows]),
    )
    bus.on_log("other", lambda row, ctx: singles.append(-row.payload["n"]))
    worker = _worker(tmp_path, sqlite_url, bus)
    _log(worker.engine, "probe", {"n": 1}, {"n": 2}, {"n": 3})
    _log(worker.engine, "other", {"n": 4})
    _log(worker.engine, "probe", {"n": 5})

    worker.project_log_batch()

    assert calls == [[1, 2, 3]]
    assert singles == [-4, 5]  # a run of one needs no batch call


def test_a_failing_batch_falls_back_to_rows_and_defers_only_the_bad_one(
    tmp_path: Any, sqlite_url: str
) -> None:
    applied: list[int] = []

    def one(row: Any, ctx: HandlerContext) -> None:
        if row.payload.get("bad"):
            raise ValueError("unreadable scan")
        applied.append(row.payload["n"])

    def many(rows: list[Any], ctx: HandlerContext) -> None:
        for row in rows:
            one(row, ctx)  # raises on the bad row, before the batch is committed

    bus = Bus()
    bus.on_log("probe", one, batch=many)
    worker = _worker(tmp_path, sqlite_url, bus)
    _log(worker.engine, "probe", {"n": 1}, {"n": 2, "bad": True}, {"n": 3})

    worker.project_log_batch()

    assert applied == [1, 1, 3]  # 1 once in the rolled-back batch attempt, then each good row once
    with worker.engine.connect() as conn:
        deferred = conn.execute(
            select(outbox.c.handler, outbox.c.key).where(outbox.c.status == "pending")
        ).all()
    assert deferred == [(RETRY_LOG_HANDLER, "k2")]


def test_a_run_of_a_source_with_only_a_row_projection_goes_in_one_savepoint(
    tmp_path: Any, sqlite_url: str
) -> None:
    """One savepoint a run, not one a row: those (and a unit of work a row) were a quarter of the Segment
    projection's time."""
    seen: list[int] = []
    bus = Bus()
    bus.on_log("probe", lambda row, ctx: seen.append(row.payload["n"]))
    worker = _worker(tmp_path, sqlite_url, bus)
    _log(worker.engine, "probe", *({"n": n} for n in range(1, 6)))
    savepoints: list[str] = []
    event.listen(
        worker.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: (
            savepoints.append(statement) if statement.startswith("SAVEPOINT") else None
        ),
    )

    assert worker.project_log_batch() == 5

    assert seen == [1, 2, 3, 4, 5]
    assert len(savepoints) == 1


def test_a_failing_row_in_a_run_rolls_the_run_back_and_only_it_is_deferred(
    tmp_path: Any, sqlite_url: str
) -> None:
    bus = Bus()

    def one(row: Any, ctx: HandlerContext) -> None:
        if row.payload.get("bad"):
            raise ValueError("unreadable call")
        ctx.uow.conn.execute(text("INSERT INTO probe_effects (n) VALUES (:n)"), {"n": row.payload["n"]})

    bus.on_log("probe", one)
    worker = _worker(tmp_path, sqlite_url, bus)
    with worker.engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe_effects (n INTEGER)"))
    _log(worker.engine, "probe", {"n": 1}, {"n": 2, "bad": True}, {"n": 3})

    assert worker.project_log_batch() == 3

    with worker.engine.connect() as conn:
        effects = conn.execute(text("SELECT n FROM probe_effects ORDER BY rowid")).scalars().all()
        deferred = conn.execute(
            select(outbox.c.handler, outbox.c.key).where(outbox.c.status == "pending")
        ).all()
    assert effects == [1, 3]  # the run's first try of row 1 was rolled back with it
    assert deferred == [(RETRY_LOG_HANDLER, "k2")]
