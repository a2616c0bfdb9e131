"""Real worker processes: SIGKILL in the middle of a batch, and several workers sharing one outbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from tests.support_pipeline import (
    PROBE_HANDLER,
    assert_per_key_order,
    create_probe_tables,
    effect_count,
    effects,
    probe_bus,
    probe_cleanup,  # noqa: F401 - the fixture, used by pytestmark
    probes,
    publish_probes,
)
from tests.support_processes import stop_process, wait_for

from doorstep.bus.registry import Bus
from doorstep.bus.tables import outbox
from doorstep.clock import SystemClock
from doorstep.db.engine import create_db_engine

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("probe_cleanup")]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """For reads while workers run (on SQLite a write engine would queue behind the worker's batch)."""
    writer = create_db_engine(database_url)
    create_probe_tables(writer)
    writer.dispose()
    engine = create_db_engine(database_url, for_reads=True)
    yield engine
    engine.dispose()


@pytest.fixture
def writer(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def _start_worker(database_url: str, tmp_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "DOORSTEP_DATABASE_URL": database_url,
        "DOORSTEP_ENV": "test",
        "DOORSTEP_VAR_DIR": str(tmp_path / "var"),
        "DOORSTEP_EXTRA_HANDLER_MODULES": "tests.support_pipeline",
        "DOORSTEP_EXTRA": json.dumps(extra),
        "DOORSTEP_WORKER_BATCH_SIZE": "50",
        "DOORSTEP_WORKER_POLL_INTERVAL_S": "0.02",
        "DOORSTEP_RETRY_BASE_S": "0.05",
        "DOORSTEP_LOG_JSON": "false",
        "DOORSTEP_BROKER_URL": "",
    }
    with open(tmp_path / f"worker-{time.monotonic_ns()}.log", "wb") as log:  # the child keeps its own fd
        return subprocess.Popen(
            [sys.executable, "-m", "doorstep", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.status != "done")
            ).scalar_one()
        )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_no_effect(
    tmp_path: Path, database_url: str, engine: Engine, writer: Engine
) -> None:
    total = 300
    clock = SystemClock()
    bus: Bus = probe_bus()
    publish_probes(writer, bus, clock, probes(clock, keys=10, per_key=total // 10))  # type: ignore[arg-type]
    started = tmp_path / "started.txt"

    first = _start_worker(database_url, tmp_path, probe_sleep_s="0.01", probe_started_file=str(started))
    try:
        # kill once a batch has committed and the next one is well under way (started, not committed)
        wait_for(
            lambda: effect_count(engine) >= 50 and len(_lines(started)) >= effect_count(engine) + 10,
            timeout_s=60,
            what="a batch in flight",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop_process(first)
    assert first.returncode == -signal.SIGKILL
    committed = effect_count(engine)
    in_flight = set(_lines(started)) - {row.event_id for row in effects(engine)}
    assert committed < total
    assert len(in_flight) >= 10  # handlers ran for these, but their transaction died with the process

    second = _start_worker(database_url, tmp_path, probe_sleep_s="0.001", probe_started_file=str(started))
    try:
        wait_for(lambda: _pending(engine) == 0, timeout_s=120, what="the restarted worker to finish")
    finally:
        stop_process(second)

    rows = effects(engine)
    assert len(rows) == total  # every event handled ...
    assert len({row.event_id for row in rows}) == total  # ... and none twice
    assert_per_key_order(rows)
    attempts = _lines(started)
    assert in_flight <= {event_id for event_id in attempts if attempts.count(event_id) == 2}  # redone once
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
    assert statuses == {"done": total}


def test_several_workers_share_the_outbox_each_row_once_in_key_order(
    tmp_path: Path, database_url: str, engine: Engine, writer: Engine
) -> None:
    total = 3000
    clock = SystemClock()
    bus = probe_bus()
    # many keys: a worker can only take keys no other worker holds, so few keys would serialise them
    events = probes(clock, keys=300, per_key=total // 300)  # type: ignore[arg-type]
    workers = [_start_worker(database_url, tmp_path, probe_sleep_s="0.0005") for _ in range(3)]
    try:
        publish_probes(writer, bus, clock, events, per_tx=100)  # while the workers run
        wait_for(lambda: _pending(engine) == 0, timeout_s=180, what="the workers to finish")
    finally:
        for proc in workers:
            stop_process(proc)

    rows = effects(engine)
    assert len(rows) == total
    assert len({row.event_id for row in rows}) == total
    assert_per_key_order(rows)
    per_worker = {pid: sum(1 for row in rows if row.pid == pid) for pid in {row.pid for row in rows}}
    if engine.dialect.name == "postgresql":  # SQLite has one writer at a time: sharing is not the point there
        assert len(per_worker) >= 2, per_worker  # the load was shared
    with engine.connect() as conn:
        handlers = set(conn.execute(select(outbox.c.handler).distinct()).scalars())
    assert handlers == {PROBE_HANDLER}
