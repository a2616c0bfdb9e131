"""The durable pipeline on a real store: outbox atomicity, per-key order, retries and dead letters, the log
projector, replay and the `doorstep events` commands. Runs on SQLite, and on PostgreSQL when configured."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from tests.conftest import make_settings
from tests.support_pipeline import (
    PROBE_HANDLER,
    PROBE_SOURCE,
    ProbeHappened,
    assert_per_key_order,
    create_probe_tables,
    effects,
    probe_bus,
    probe_cleanup,  # noqa: F401 - the fixture, used by pytestmark
    probe_counts,
    probe_effects,
    probes,
    publish_probes,
)
from typer.testing import CliRunner

from doorstep.bus.tables import outbox
from doorstep.bus.worker import DEFERRED_LOG_EVENT, RETRY_LOG_HANDLER, Worker
from doorstep.clock import FixedClock, utcnow
from doorstep.db.engine import create_db_engine
from doorstep.db.migrate import check
from doorstep.db.uow import UnitOfWork
from doorstep.ingest.log import LogEntry, append
from doorstep.ingest.tables import event_log
from doorstep.settings import Settings, get_settings

pytestmark = pytest.mark.usefixtures("probe_cleanup")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    create_probe_tables(engine)
    yield engine
    engine.dispose()


def _worker(engine: Engine, settings: Settings, clock: FixedClock) -> Worker:
    return Worker(engine, bus=probe_bus(), clock=clock, settings=settings, name="test")


def _outbox(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _seqs(engine: Engine) -> list[tuple[str, int]]:
    return [(row.key, row.seq) for row in effects(engine)]


def test_schema_matches_the_tables_after_migrating(database_url: str) -> None:
    check(database_url)  # raises when a table in code has no migration


def test_outbox_rows_land_in_the_same_transaction_as_the_state(engine: Engine, clock: FixedClock) -> None:
    bus = probe_bus()

    with UnitOfWork(engine, bus=bus, clock=clock) as uow:
        uow.conn.execute(insert(probe_counts).values(key="committed", events=1, last_seq=1))
        uow.publish(ProbeHappened(occurred_at=clock.now(), probe_key="a", seq=1))
        uow.commit()
    with pytest.raises(RuntimeError, match="boom"), UnitOfWork(engine, bus=bus, clock=clock) as uow:
        uow.conn.execute(insert(probe_counts).values(key="rolled-back", events=1, last_seq=1))
        uow.publish(ProbeHappened(occurred_at=clock.now(), probe_key="b", seq=1))
        uow.flush_events()  # written inside the transaction, then the use case fails before commit
        raise RuntimeError("boom")

    rows = _outbox(engine)
    assert [(r.key, r.handler, r.status, r.attempts) for r in rows] == [
        ("probe:a", PROBE_HANDLER, "pending", 0)
    ]
    assert rows[0].partition == bus.partition_of("probe:a")
    with engine.connect() as conn:
        assert [r.key for r in conn.execute(select(probe_counts))] == ["committed"]


def test_a_unit_of_work_holds_the_write_lock_only_from_its_first_statement(
    engine: Engine, clock: FixedClock
) -> None:
    """What a use case builds before its first statement (events, rows, their JSON) is built without the write
    lock, which every other writer waits for; from its first statement on, reads and writes are one
    transaction, committed or rolled back together."""
    import threading

    bus = probe_bus()
    other_wrote = threading.Event()

    def other_writer() -> None:
        with engine.begin() as conn:
            conn.execute(insert(probe_counts).values(key="other", events=1, last_seq=1))
        other_wrote.set()

    with UnitOfWork(engine, bus=bus, clock=clock) as uow:
        uow.publish(ProbeHappened(occurred_at=clock.now(), probe_key="a", seq=1))
        writer = threading.Thread(target=other_writer)
        writer.start()
        # with the lock taken on entering, the other writer would wait for this unit of work (30 s on SQLite)
        assert other_wrote.wait(5), "a unit of work that ran no statement yet held the write lock"
        uow.conn.execute(insert(probe_counts).values(key="mine", events=1, last_seq=1))
        uow.commit()
    writer.join()
    with UnitOfWork(engine, bus=bus, clock=clock) as uow:
        uow.conn.execute(insert(probe_counts).values(key="rolled back", events=1, last_seq=1))
        uow.publish(ProbeHappened(occurred_at=clock.now(), probe_key="b", seq=1))
        uow.flush_events()
        uow.rollback()

    with engine.connect() as conn:
        assert sorted(r.key for r in conn.execute(select(probe_counts))) == ["mine", "other"]
    assert [r.key for r in _outbox(engine)] == ["probe:a"]


def test_an_event_without_subscribers_writes_no_outbox_row(engine: Engine, clock: FixedClock) -> None:
    from doorstep.bus.registry import Bus

    with UnitOfWork(engine, bus=Bus(), clock=clock) as uow:
        uow.publish(ProbeHappened(occurred_at=clock.now(), probe_key="a", seq=1))
        uow.commit()

    assert _outbox(engine) == []


def test_a_failing_head_holds_back_its_key_while_other_keys_proceed(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, database_url, retry_base_s=10.0, retry_max_s=600.0)
    worker = _worker(engine, settings, clock)
    publish_probes(
        engine,
        worker.bus,
        clock,
        [
            ProbeHappened(occurred_at=clock.now(), probe_key="slow", seq=1, fail_times=2),
            ProbeHappened(occurred_at=clock.now(), probe_key="fast", seq=1),
            ProbeHappened(occurred_at=clock.now(), probe_key="slow", seq=2),
            ProbeHappened(occurred_at=clock.now(), probe_key="fast", seq=2),
        ],
    )

    assert worker.deliver_outbox_batch() == 3  # slow#1 fails; slow#2 waits behind it; fast#1, fast#2 done
    assert _seqs(engine) == [("probe:fast", 1), ("probe:fast", 2)]
    assert worker.deliver_outbox_batch() == 0  # slow#1 is backing off, and slow#2 must not overtake it

    clock.advance(seconds=13)  # first retry after 10 s (+-20 % jitter)
    assert worker.deliver_outbox_batch() == 1  # attempt 2 fails again
    assert _seqs(engine) == [("probe:fast", 1), ("probe:fast", 2)]
    clock.advance(seconds=13)
    assert worker.deliver_outbox_batch() == 0  # second delay is 20 s +-20 %: not due yet
    clock.advance(seconds=12)
    assert worker.deliver_outbox_batch() == 2  # attempt 3 succeeds, then slow#2 in the same batch

    assert _seqs(engine) == [("probe:fast", 1), ("probe:fast", 2), ("probe:slow", 1), ("probe:slow", 2)]
    slow_head = next(r for r in _outbox(engine) if r.key == "probe:slow" and r.payload["seq"] == 1)
    assert (slow_head.status, slow_head.attempts, slow_head.last_error) == ("done", 3, None)
    assert worker.stats.retried == 2


def test_retries_back_off_then_the_row_is_dead_lettered_with_its_error(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    settings = make_settings(
        tmp_path,
        database_url,
        retry_base_s=1.0,
        retry_max_s=3.0,
        max_attempts=4,
        extra={"probe_broken_keys": "probe:bad"},
    )
    worker = _worker(engine, settings, clock)
    publish_probes(
        engine,
        worker.bus,
        clock,
        [
            ProbeHappened(occurred_at=clock.now(), probe_key="bad", seq=1),
            ProbeHappened(occurred_at=clock.now(), probe_key="bad", seq=2),
        ],
    )
    delays = []
    for _ in range(3):
        start = clock.now()
        assert worker.deliver_outbox_batch() == 1
        head = _outbox(engine)[0]
        assert head.status == "pending"
        delays.append((head.available_at - start).total_seconds())
        clock.at = head.available_at

    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4 and 2.4 <= delays[2] <= 3.6  # capped at 3 s
    assert worker.deliver_outbox_batch() == 1  # fourth attempt: dead
    head, second = _outbox(engine)
    assert (head.status, head.attempts) == ("dead", 4)
    assert head.last_error.startswith("RuntimeError: probe:bad is broken")
    assert "record_probe" in head.last_error  # the traceback tail says where
    assert second.status == "pending" and second.attempts == 0
    assert worker.stats.dead == 1
    assert effects(engine) == []


def test_permanent_errors_and_unknown_handlers_dead_letter_at_once(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    worker = _worker(engine, make_settings(tmp_path, database_url), clock)
    publish_probes(engine, worker.bus, clock, [ProbeHappened(occurred_at=clock.now(), probe_key="a", seq=1)])
    worker.bus.handlers.pop(PROBE_HANDLER)

    worker.drain()

    (row,) = _outbox(engine)
    assert (row.status, row.attempts) == ("dead", 1)
    assert "no handler registered as 'probe.record'" in row.last_error


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[dict[str, str]]:
    env = {
        "DOORSTEP_DATABASE_URL": database_url,
        "DOORSTEP_ENV": "test",
        "DOORSTEP_VAR_DIR": str(tmp_path / "var"),
        "DOORSTEP_EXTRA_HANDLER_MODULES": "tests.support_pipeline",
        "DOORSTEP_LOG_JSON": "false",
        "COLUMNS": "250",  # rich tables wide enough to show whole error lines
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _cli(*args: str) -> Any:
    from doorstep.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_dead_letters_are_listed_and_retried_from_the_cli(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock, cli_env: dict[str, str]
) -> None:
    broken = make_settings(tmp_path, database_url, max_attempts=2, extra={"probe_broken_keys": "probe:a"})
    worker = _worker(engine, broken, clock)
    publish_probes(
        engine,
        worker.bus,
        clock,
        [
            ProbeHappened(occurred_at=clock.now(), probe_key="a", seq=1),
            ProbeHappened(occurred_at=clock.now(), probe_key="b", seq=1),
        ],
    )
    worker.drain()
    dead_id = next(r.id for r in _outbox(engine) if r.status == "dead")

    listing = _cli("events", "dead")
    assert "ProbeHappened" in listing.output and "probe:a" in listing.output
    assert "RuntimeError: probe:a is broken" in listing.output
    assert "probe:b" not in listing.output  # delivered, not dead

    retried = _cli("events", "dead", "retry", str(dead_id))
    assert "1 dead letter(s) queued again" in retried.output
    row = next(r for r in _outbox(engine) if r.id == dead_id)
    assert (row.status, row.attempts) == ("pending", 0)

    clock.at = utcnow() + timedelta(seconds=1)  # the retry is due from the real time it was asked for
    fixed = _worker(engine, make_settings(tmp_path, database_url), clock)  # the fix is deployed
    assert fixed.drain() == 1
    assert sorted(_seqs(engine)) == [("probe:a", 1), ("probe:b", 1)]
    assert "no dead letters" in _cli("events", "dead").output
    assert "outbox_dead      0" in _cli("events", "stats").output


def _append_probe_log(
    engine: Engine, clock: FixedClock, items: list[tuple[str, str, dict[str, Any]]]
) -> None:
    with engine.begin() as conn:
        append(
            conn,
            [
                LogEntry(PROBE_SOURCE, message_id, "probe", None, key, clock.now(), payload)
                for message_id, key, payload in items
            ],
            received_at=clock.now(),
        )


def _counts(engine: Engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        return {r.key: (r.events, r.last_seq) for r in conn.execute(select(probe_counts))}


def test_replay_rebuilds_projections_from_the_log(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock, cli_env: dict[str, str]
) -> None:
    worker = _worker(engine, make_settings(tmp_path, database_url), clock)
    _append_probe_log(engine, clock, [(f"m{n}", f"user:{n % 3}", {"seq": n}) for n in range(1, 10)])
    worker.drain()
    projected = _counts(engine)
    assert projected == {"user:0": (3, 9), "user:1": (3, 7), "user:2": (3, 8)}
    with engine.begin() as conn:  # the projection drifts (a bug, a manual edit ...)
        conn.execute(probe_counts.update().where(probe_counts.c.key == "user:1").values(events=99))
        conn.execute(probe_counts.delete().where(probe_counts.c.key == "user:2"))

    result = _cli("events", "replay", "--yes", "--source", "probe")

    assert "emptied: probe_counts\n" in result.output  # only the tables of the chosen source
    assert "replayed 9 log events" in result.output
    assert _counts(engine) == projected


def test_a_failing_log_event_is_retried_through_the_outbox_and_its_key_waits(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    worker = _worker(engine, make_settings(tmp_path, database_url, max_attempts=3), clock)
    _append_probe_log(
        engine,
        clock,
        [
            ("m1", "user:a", {"seq": 1, "fail": True}),
            ("m2", "user:b", {"seq": 1}),
            ("m3", "user:a", {"seq": 2}),
        ],
    )

    assert worker.project_log_batch() == 3
    assert _counts(engine) == {"user:b": (1, 1)}  # user:a#2 waits behind the failed user:a#1
    deferred = _outbox(engine)
    assert [(r.handler, r.event_type, r.key, r.payload["message_id"], r.attempts) for r in deferred] == [
        (RETRY_LOG_HANDLER, DEFERRED_LOG_EVENT, "user:a", "m1", 1),
        (RETRY_LOG_HANDLER, DEFERRED_LOG_EVENT, "user:a", "m3", 0),
    ]
    assert deferred[0].last_error.startswith("RuntimeError: cannot project log row m1")

    worker.drain()

    first, second = _outbox(engine)
    assert (first.status, first.attempts) == ("dead", 3)  # visible in `doorstep events dead`
    assert (second.status, second.attempts) == ("done", 1)  # went on once its predecessor was dead-lettered
    assert _counts(engine) == {"user:b": (1, 1), "user:a": (1, 2)}


def test_a_log_event_that_fails_once_is_projected_by_its_retry(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    worker = _worker(engine, make_settings(tmp_path, database_url), clock)
    _append_probe_log(
        engine, clock, [("m1", "user:a", {"seq": 1, "fail": True}), ("m2", "user:a", {"seq": 2})]
    )
    worker.project_log_batch()
    with engine.begin() as conn:  # the cause is fixed (here: the payload), the retry succeeds
        conn.execute(event_log.update().where(event_log.c.message_id == "m1").values(payload={"seq": 1}))

    worker.drain()

    assert _counts(engine) == {"user:a": (2, 2)}  # in log order: last_seq is 2
    assert [r.status for r in _outbox(engine)] == ["done", "done"]


@pytest.mark.postgres
def test_projector_never_skips_a_log_row_whose_id_commits_late(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: ids commit in order")
    worker = _worker(engine, make_settings(tmp_path, database_url), clock)
    early = engine.connect()
    late = engine.connect()
    try:
        early_tx = early.begin()
        early.exec_driver_sql("SELECT pg_current_xact_id()")  # older transaction id, its row comes later
        late_tx = late.begin()
        append(
            late,
            [LogEntry(PROBE_SOURCE, "m-late", "probe", None, "user:x", clock.now(), {"seq": 1})],
            received_at=clock.now(),
        )  # takes the smaller log id ...
        append(
            early,
            [LogEntry(PROBE_SOURCE, "m-early", "probe", None, "user:y", clock.now(), {"seq": 1})],
            received_at=clock.now(),
        )
        early_tx.commit()  # ... and the bigger id commits first
        assert worker.project_log_batch() == 1  # m-early (its transaction is done)

        _append_probe_log(engine, clock, [("m-after", "user:z", {"seq": 1})])  # newer than `late`: waits
        assert worker.project_log_batch() == 0  # everything else is younger than the open transaction
        late_tx.commit()
        assert worker.project_log_batch() == 2
    finally:
        early.close()
        late.close()

    with engine.connect() as conn:
        ids = dict(conn.execute(select(event_log.c.message_id, event_log.c.id)).all())
    assert ids["m-late"] < ids["m-early"]  # the hazard really happened
    assert _counts(engine) == {"user:x": (1, 1), "user:y": (1, 1), "user:z": (1, 1)}
    assert worker.project_log_batch() == 0


def test_many_rows_of_one_key_are_delivered_in_order_in_few_batches(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    worker = _worker(engine, make_settings(tmp_path, database_url, worker_batch_size=100), clock)
    publish_probes(engine, worker.bus, clock, probes(clock, keys=2, per_key=150))

    rounds = 0
    while worker.deliver_outbox_batch():
        rounds += 1

    assert rounds == 3  # 300 rows, 100 a batch: a key's later rows ride along with its head
    rows = effects(engine)
    assert len(rows) == 300
    assert_per_key_order(rows)


def test_stats_count_the_log_and_the_outbox(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    from doorstep.bus.admin import stats

    worker = _worker(
        engine,
        make_settings(tmp_path, database_url, max_attempts=1, extra={"probe_broken_keys": "probe:k0"}),
        clock,
    )
    publish_probes(engine, worker.bus, clock, probes(clock, keys=2, per_key=2))
    _append_probe_log(engine, clock, [("m1", "user:a", {"seq": 1}), ("m2", "user:a", {"seq": 2})])
    with engine.connect() as conn:
        before = stats(conn)
    worker.drain()
    with engine.connect() as conn:
        after = stats(conn)

    assert before == {
        "log_events": 2,
        "log_lag": 2,
        "outbox_pending": 4,
        "outbox_relayed": 0,
        "outbox_done": 0,
        "outbox_dead": 0,
    }
    assert after == {
        "log_events": 2,
        "log_lag": 0,
        "outbox_pending": 0,
        "outbox_relayed": 0,
        "outbox_done": 2,
        "outbox_dead": 2,
    }
    assert _count(engine, probe_effects) == 2


@pytest.mark.postgres
def test_an_open_transaction_in_another_database_does_not_hold_the_projector_back(
    tmp_path: Path, database_url: str, engine: Engine, clock: FixedClock
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    worker = _worker(engine, make_settings(tmp_path, database_url), clock)
    other = create_db_engine(database_url.rsplit("/", 1)[0] + "/postgres")
    try:
        with other.connect() as conn:
            conn.exec_driver_sql("SELECT pg_current_xact_id()")  # an older transaction id, left open
            _append_probe_log(engine, clock, [("m1", "user:a", {"seq": 1})])

            assert worker.project_log_batch() == 1
    finally:
        other.dispose()
    assert _counts(engine) == {"user:a": (1, 1)}


def test_the_per_key_checks_read_only_open_rows_through_their_partial_index(
    engine: Engine, tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    """The per-key checks go through the partial index of open rows (`ix_outbox_key_order`), which SQLite uses
    only when a query's condition implies the index's own: a check spelled otherwise (`status IN (...)`) would
    read every pending row of every key instead, or the whole outbox."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's planner: PostgreSQL plans by statistics, and a small table is scanned anyway")
    from sqlalchemy import event

    settings = make_settings(tmp_path, database_url)
    worker = _worker(engine, settings, clock)
    publish_probes(engine, probe_bus(), clock, probes(clock, keys=3, per_key=2, fail_times=1))
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if '"key"' in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))  # the queries that look rows up by key

    event.listen(engine, "before_cursor_execute", capture)
    try:
        worker.drain()
        clock.advance(seconds=3600)
        worker.drain()
        with engine.connect() as conn:
            worker._keys_awaiting_retry(conn, {"k0", "k1"})
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert _count(engine, probe_effects) == 6
    assert any("NOT (EXISTS" in sql for sql, _ in statements)  # the claim with its per-key check
    assert any(" IN (" in sql and "handler = " in sql for sql, _ in statements)  # the retry-log check
    with engine.connect() as conn:
        for sql, parameters in statements:
            plan = [
                str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()
            ]
            assert not [step for step in plan if step.startswith("SCAN outbox")], f"{sql}\n{plan}"
            assert any("ix_outbox_key_order" in step for step in plan), f"{sql}\n{plan}"
