"""Domain events over NATS JetStream: order per key, no double effect on redelivery, dead letters.

Each test uses a stream of its own (unique name and subjects), deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from sqlalchemy import Engine, func, select
from tests.conftest import NATS_URL, make_settings
from tests.support_pipeline import (
    PROBE_HANDLER,
    ProbeHappened,
    assert_per_key_order,
    create_probe_tables,
    effects,
    probe_cleanup,  # noqa: F401 - the fixture, used by pytestmark
    probes,
    publish_probes,
)

from doorstep.app import build_context, build_worker
from doorstep.bus.nats import message_id, runner, subject_prefix
from doorstep.bus.tables import handled_events, outbox
from doorstep.clock import SystemClock
from doorstep.context import AppContext

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.usefixtures("probe_cleanup")]


@pytest.fixture
def stream() -> Iterator[str]:
    name = f"DSTEST_{uuid.uuid4().hex[:12].upper()}"
    yield name

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(name)
        await nc.close()

    asyncio.run(delete())


class Running:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.worker = build_worker(ctx, name="nats-test")
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            runner(self.ctx)(self.worker, self.stop)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert self.error is None, self.error

    def wait_for(self, condition: Callable[[], bool], *, timeout_s: float = 30, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.error is None, self.error
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def nats_ctx(tmp_path: Path, database_url: str, stream: str) -> Iterator[Callable[..., AppContext]]:
    made: list[AppContext] = []

    def make(**overrides: Any) -> AppContext:
        settings = make_settings(
            tmp_path,
            database_url,
            broker_url=NATS_URL,
            nats_stream=stream,
            partitions=4,
            extra_handler_modules=["tests.support_pipeline"],
            worker_poll_interval_s=0.02,
            **overrides,
        )
        ctx = build_context(settings)
        made.append(ctx)
        create_probe_tables(ctx.engine)
        return ctx

    yield make
    for ctx in made:
        ctx.engine.dispose()
        ctx.read_engine.dispose()


def _statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())  # type: ignore[arg-type]


async def _stream_messages(stream: str) -> int:
    nc = await nats.connect(NATS_URL)
    info = await nc.jetstream().stream_info(stream)
    await nc.close()
    return int(info.state.messages)


def test_events_of_a_key_arrive_in_the_order_they_were_recorded(
    nats_ctx: Callable[..., AppContext], stream: str
) -> None:
    ctx = nats_ctx()
    clock = SystemClock()
    events = probes(clock, keys=6, per_key=25)  # type: ignore[arg-type]
    # a few early failures: a nak must not let the next event of the key overtake
    events[0] = ProbeHappened(occurred_at=clock.now(), probe_key="k0", seq=1, fail_times=2)
    with Running(ctx) as running:
        publish_probes(ctx.engine, ctx.bus, clock, events, per_tx=30)
        running.wait_for(lambda: _statuses(ctx.engine) == {"done": 150}, what="all 150 delivered")

    rows = effects(ctx.engine)
    assert len(rows) == 150 and len({r.event_id for r in rows}) == 150
    assert_per_key_order(rows)
    assert asyncio.run(_stream_messages(stream)) == 150  # they really went through the stream
    with ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(handled_events)).scalar_one() == 150
        head = conn.execute(select(outbox).order_by(outbox.c.id).limit(1)).one()
    assert (head.status, head.attempts) == ("done", 3)


def test_a_redelivered_or_republished_event_has_no_second_effect(
    nats_ctx: Callable[..., AppContext], stream: str
) -> None:
    ctx = nats_ctx()
    clock = SystemClock()
    with Running(ctx) as running:
        publish_probes(ctx.engine, ctx.bus, clock, probes(clock, keys=2, per_key=3))  # type: ignore[arg-type]
        running.wait_for(lambda: _statuses(ctx.engine) == {"done": 6}, what="delivery")
        with ctx.engine.connect() as conn:
            row = conn.execute(select(outbox).order_by(outbox.c.id).limit(1)).one()

        async def republish() -> tuple[bool, bool]:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            body = orjson.dumps(
                {
                    "outbox_id": row.id,
                    "event_id": row.event_id,
                    "event_type": row.event_type,
                    "handler": row.handler,
                    "key": row.key,
                    "occurred_at": row.occurred_at.isoformat(),
                    "payload": row.payload,
                }
            )
            subject = f"{subject_prefix(stream)}.{row.partition}"
            same = await js.publish(subject, body, headers={"Nats-Msg-Id": message_id(row)})
            fresh = await js.publish(subject, body, headers={"Nats-Msg-Id": f"{message_id(row)}-again"})
            await nc.close()
            return bool(same.duplicate), bool(fresh.duplicate)

        same_dropped, fresh_dropped = asyncio.run(republish())
        assert (same_dropped, fresh_dropped) == (True, False)  # JetStream dedupes the relay's own id ...
        time.sleep(1.0)  # ... and the consumer takes the other copy, finds it handled, and acks it

    rows = effects(ctx.engine)
    assert len(rows) == 6 and len({r.event_id for r in rows}) == 6
    assert asyncio.run(_stream_messages(stream)) == 7


def test_a_handler_that_keeps_failing_ends_in_a_dead_letter(
    nats_ctx: Callable[..., AppContext], stream: str
) -> None:
    ctx = nats_ctx(
        max_attempts=3, retry_base_s=0.05, retry_max_s=0.2, extra={"probe_broken_keys": "probe:k0"}
    )
    clock = SystemClock()
    with Running(ctx) as running:
        publish_probes(ctx.engine, ctx.bus, clock, probes(clock, keys=2, per_key=2))  # type: ignore[arg-type]
        running.wait_for(lambda: _statuses(ctx.engine) == {"done": 2, "dead": 2}, what="dead letters")

    with ctx.engine.connect() as conn:
        dead = conn.execute(select(outbox).where(outbox.c.status == "dead").order_by(outbox.c.id)).all()
    assert [(r.key, r.handler, r.attempts) for r in dead] == [("probe:k0", PROBE_HANDLER, 3)] * 2
    assert dead[0].last_error.startswith("RuntimeError: probe:k0 is broken")
    assert sorted((r.key, r.seq) for r in effects(ctx.engine)) == [("probe:k1", 1), ("probe:k1", 2)]


def test_doorstep_worker_runs_the_nats_mode_and_stops_cleanly(
    tmp_path: Path, database_url: str, stream: str
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.support_pipeline import probe_bus

    from doorstep.db.engine import create_db_engine

    root = Path(__file__).resolve().parents[2]
    engine = create_db_engine(database_url)
    create_probe_tables(engine)
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}",
        "DOORSTEP_DATABASE_URL": database_url,
        "DOORSTEP_ENV": "test",
        "DOORSTEP_VAR_DIR": str(tmp_path / "var"),
        "DOORSTEP_BROKER_URL": NATS_URL,
        "DOORSTEP_NATS_STREAM": stream,
        "DOORSTEP_PARTITIONS": "4",
        "DOORSTEP_LOG_JSON": "true",
        "DOORSTEP_EXTRA_HANDLER_MODULES": "tests.support_pipeline",
        "DOORSTEP_EXTRA": json.dumps({}),
    }
    with open(tmp_path / "worker.log", "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "doorstep", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        clock = SystemClock()
        publish_probes(engine, probe_bus(4), clock, probes(clock, keys=3, per_key=10))  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while _statuses(engine) != {"done": 30} and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    try:
        assert _statuses(engine) == {"done": 30}
        assert proc.returncode == 0, (tmp_path / "worker.log").read_text()
        rows = effects(engine)
        assert len(rows) == 30 and len({r.event_id for r in rows}) == 30
        assert_per_key_order(rows)
        logged = [
            orjson.loads(line)
            for line in (tmp_path / "worker.log").read_text().splitlines()
            if line.startswith("{")
        ]
        assert any("consuming" in entry["msg"] and entry["logger"] == "doorstep.nats" for entry in logged)
    finally:
        engine.dispose()
