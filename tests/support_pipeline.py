"""Pipeline test support: a probe event, handlers that record their effects in a table of their own, and
helpers. Worker subprocesses load it with DOORSTEP_EXTRA_HANDLER_MODULES=tests.support_pipeline.

Handler knobs come from settings.extra (DOORSTEP_EXTRA as JSON): probe_sleep_s (per event, so a batch is in
flight long enough to kill it), probe_started_file (each delivery attempt appends the event id there,
outside the transaction, so a test can show work that was rolled back), probe_broken_keys (comma-separated
event keys whose deliveries fail until the setting changes).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)

from doorstep.bus.messages import DomainEvent, Envelope
from doorstep.bus.registry import Bus, HandlerContext
from doorstep.clock import Clock
from doorstep.db.uow import UnitOfWork

PROBE_HANDLER = "probe.record"
PROBE_SOURCE = "probe"

probe_metadata = MetaData()
# One row per handler call that committed: a double effect shows as two rows with the same event_id.
probe_effects = Table(
    "probe_effects",
    probe_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("key", String(100), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("pid", Integer, nullable=False),  # which worker process
)
# A projection of the probe log source: events seen per key (rebuilt by replay).
probe_counts = Table(
    "probe_counts",
    probe_metadata,
    Column("key", String(100), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
)


@dataclass(frozen=True, kw_only=True)
class ProbeHappened(DomainEvent):
    probe_key: str
    seq: int
    fail_times: int = 0  # the handler fails this many attempts, then succeeds

    @property
    def key(self) -> str:
        return f"probe:{self.probe_key}"


def record_probe(envelope: Envelope, ctx: HandlerContext) -> None:
    started = ctx.settings.extra.get("probe_started_file")
    if started:
        with open(started, "a") as fh:
            fh.write(envelope.event_id + "\n")
    sleep_s = float(ctx.settings.extra.get("probe_sleep_s", "0"))
    if sleep_s:
        time.sleep(sleep_s)
    if envelope.attempt <= int(envelope.payload.get("fail_times", 0)):
        raise RuntimeError(f"probe {envelope.payload['seq']} fails on attempt {envelope.attempt}")
    if envelope.key in ctx.settings.extra.get("probe_broken_keys", "").split(","):
        raise RuntimeError(f"{envelope.key} is broken")
    ctx.uow.conn.execute(
        insert(probe_effects).values(
            event_id=envelope.event_id, key=envelope.key, seq=envelope.payload["seq"], pid=os.getpid()
        )
    )


def project_probe(row: Any, ctx: HandlerContext) -> None:
    """Log projection: counts events per key; a payload with "fail": true raises."""
    if row.payload.get("fail"):
        raise RuntimeError(f"cannot project log row {row.message_id}")
    conn = ctx.uow.conn
    key = row.partition_key
    seq = int(row.payload.get("seq", 0))
    updated = conn.execute(
        update(probe_counts)
        .where(probe_counts.c.key == key)
        .values(events=probe_counts.c.events + 1, last_seq=seq)
    ).rowcount
    if not updated:
        conn.execute(insert(probe_counts).values(key=key, events=1, last_seq=seq))


def register(bus: Bus) -> None:
    bus.subscribe(ProbeHappened, PROBE_HANDLER, record_probe)
    if PROBE_SOURCE not in bus.log_handlers:
        bus.on_log(PROBE_SOURCE, project_probe, tables=["probe_counts"])


def probe_bus(partitions: int = 16) -> Bus:
    bus = Bus(partitions=partitions)
    register(bus)
    return bus


def create_probe_tables(engine: Engine) -> None:
    """Creates the probe tables afresh in a test database."""
    probe_metadata.drop_all(engine)
    probe_metadata.create_all(engine)
    with engine.begin() as conn:
        for t in reversed(probe_metadata.sorted_tables):
            conn.execute(delete(t))


def publish_probes(
    engine: Engine, bus: Bus, clock: Clock, events: list[ProbeHappened], *, per_tx: int = 500
) -> None:
    for start in range(0, len(events), per_tx):
        with UnitOfWork(engine, bus=bus, clock=clock) as uow:
            for event in events[start : start + per_tx]:
                uow.publish(event)
            uow.commit()


def probes(clock: Clock, *, keys: int, per_key: int, **fields: Any) -> list[ProbeHappened]:
    """per_key events for each of `keys` keys, interleaved (k0#1, k1#1, ..., k0#2, ...)."""
    return [
        ProbeHappened(occurred_at=clock.now(), probe_key=f"k{k}", seq=n, **fields)
        for n in range(1, per_key + 1)
        for k in range(keys)
    ]


def effects(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(probe_effects).order_by(probe_effects.c.id)).all())


def effect_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(probe_effects)).scalar_one())


def assert_per_key_order(rows: list[Any]) -> None:
    """Effects (in commit order) of each key have strictly increasing seq."""
    last: dict[str, int] = {}
    for row in rows:
        assert row.seq > last.get(row.key, 0), f"{row.key}: seq {row.seq} after {last.get(row.key)}"
        last[row.key] = row.seq
