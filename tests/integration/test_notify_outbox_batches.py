"""Batch delivery of the outbox on a real store: a run of rows handed to a handler's batch form (or to the
handler row after row in one savepoint) leaves exactly what delivering the rows one at a time leaves; a bad
row inside a run is retried alone and holds back only its own key. Runs on SQLite, and PostgreSQL when
configured."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from tests.conftest import make_settings
from tests.support_notify import NOW, add_customer, add_order, order_placed, publish
from tests.support_pipeline import (
    PROBE_HANDLER,
    ProbeHappened,
    assert_per_key_order,
    create_probe_tables,
    effects,
    probe_cleanup,  # noqa: F401 - the fixture, used below
    probes,
    publish_probes,
    record_probe,
)

from doorstep.app import build_context
from doorstep.bus.messages import DomainEvent, Envelope
from doorstep.bus.registry import Bus, HandlerContext, PrepareContext
from doorstep.bus.tables import outbox
from doorstep.bus.worker import Worker
from doorstep.clock import FixedClock
from doorstep.context import AppContext
from doorstep.customers.tables import customers
from doorstep.db.engine import create_db_engine
from doorstep.ids import new_id
from doorstep.notifications.tables import notifications
from doorstep.orders.handlers_chain import StepReached, record_step, record_steps
from doorstep.orders.tables import order_steps, orders
from doorstep.settings import Settings
from doorstep.shipments.events import ShipmentDispatched
from doorstep.shipments.tables import shipments


@pytest.fixture
def app_ctx(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[AppContext]:
    clock.at = NOW
    ctx = build_context(make_settings(tmp_path, database_url), clock=clock)
    yield ctx
    ctx.engine.dispose()
    ctx.read_engine.dispose()


def _worker(ctx: AppContext, *, batch_size: int, read_ahead: bool = False) -> Worker:
    """`read_ahead`: with the read engine, as build_worker makes it (on SQLite the prepare forms run)."""
    settings = ctx.settings.model_copy(update={"worker_batch_size": batch_size})
    return Worker(
        ctx.engine,
        bus=ctx.bus,
        clock=ctx.clock,
        settings=settings,
        services=ctx.services,
        read_engine=ctx.read_engine if read_ahead else None,
    )


# ---- the same events, delivered row by row and in batches ---------------------------------------------------


@dataclass
class World:
    """Customers, orders and a waiting shipment for one delivery, with the names its ids stand for."""

    names: dict[str, str] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)
    shipments: list[str] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)

    def name(self, value: str, label: str) -> str:
        self.names[value] = label
        return value

    def order(self, value: str, label: str) -> str:
        self.orders.append(value)
        return self.name(value, label)


def _world(ctx: AppContext, tag: str) -> World:
    engine, w, at = ctx.engine, World(), ctx.clock.now()
    maya = w.name(add_customer(engine, email=f"maya-{tag}@example.com"), "maya")
    old = w.name(add_customer(engine, email=f"old-{tag}@example.com"), "old")  # merged into ben
    ben = w.name(add_customer(engine, email=f"ben-{tag}@example.com", locale="de"), "ben")
    with engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.id == old).values(merged_into=ben))
    placed = w.order(add_order(engine, maya, external_id=f"#{tag}-1"), "placed")
    merged = w.order(add_order(engine, old, external_id=f"#{tag}-2"), "merged")
    anonymous = w.order(add_order(engine, maya, external_id=f"#{tag}-3"), "anonymous")
    delivered = w.order(add_order(engine, ben, external_id=f"#{tag}-4", status="delivered"), "delivered")
    cancelled = w.order(add_order(engine, ben, external_id=f"#{tag}-5", status="cancelled"), "cancelled")
    awaited = w.order(add_order(engine, maya, external_id=f"#{tag}-6"), "awaited")
    waiting = w.name(new_id(), "waiting_shipment")
    w.shipments.append(waiting)
    with engine.begin() as conn:  # a carrier named order #tag-6 before the order was known
        conn.execute(
            shipments.insert().values(
                id=waiting,
                order_id=None,
                order_ref=f"#{tag}-6",
                carrier="dhl",
                tracking_number=f"TN-{tag}",
                status="InTransit",
                created_at=at,
                updated_at=at,
            )
        )
    w.events = [
        order_placed(placed, maya, at=at, external_id=f"#{tag}-1"),
        order_placed(placed, maya, at=at, external_id=f"#{tag}-1"),  # the same fact again: one message
        order_placed(merged, old, at=at, external_id=f"#{tag}-2"),  # goes to the surviving profile
        order_placed(anonymous, "", at=at, external_id=f"#{tag}-3"),  # the customer found through the order
        order_placed(delivered, ben, at=at, external_id=f"#{tag}-4"),  # status must not move back
        order_placed(cancelled, ben, at=at, external_id=f"#{tag}-5"),
        order_placed(awaited, maya, at=at, external_id=f"#{tag}-6"),  # links the waiting shipment
        # handlers with no batch form (orders.chain_dispatched) share the runs too
        ShipmentDispatched(occurred_at=at, shipment_id=waiting, order_id=awaited, customer_id=maya),
    ]
    for i, event in enumerate(w.events):
        w.name(event.event_id, f"event{i}")
    w.names[tag] = "TAG"  # in the order numbers
    return w


def _effects(engine: Engine, w: World) -> dict[str, list[str]]:
    """Every row the deliveries wrote for this world, with its ids replaced by their names and the ids the
    handlers made up (notification ids, derived events' ids) left out, as sorted JSON lines."""
    with engine.connect() as conn:
        tables = {
            "notifications": conn.execute(
                select(notifications).where(notifications.c.order_id.in_(w.orders))
            ).all(),
            "order_steps": conn.execute(
                select(order_steps).where(order_steps.c.order_id.in_(w.orders))
            ).all(),
            "orders": conn.execute(select(orders).where(orders.c.id.in_(w.orders))).all(),
            "shipments": conn.execute(select(shipments).where(shipments.c.id.in_(w.shipments))).all(),
            "outbox": conn.execute(
                select(outbox).where(outbox.c.key.in_([f"order:{o}" for o in w.orders]))
            ).all(),
        }
    found: dict[str, list[str]] = {}
    for table, rows in tables.items():
        lines = []
        for row in rows:
            values = {
                k: v
                for k, v in row._mapping.items()
                if k
                not in (
                    "id",
                    "done_at",
                    "event_id",
                    "partition",
                    "recorded_at",
                )  # recorded_at: the wall clock
            }
            if table == "shipments":
                values["id"] = row.id
            text = json.dumps(_without_ids(values), sort_keys=True, default=str)
            for value, label in sorted(w.names.items(), key=lambda kv: -len(kv[0])):
                text = text.replace(value, label)
            lines.append(text)
        found[table] = sorted(lines)
    return found


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "event_id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


@pytest.mark.parametrize("read_ahead", [False, True], ids=["in-the-transaction", "read-ahead"])
def test_batch_delivery_leaves_exactly_what_row_by_row_delivery_leaves(
    app_ctx: AppContext, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, read_ahead: bool
) -> None:
    one_by_one = _world(app_ctx, "qqa")
    publish(app_ctx, *one_by_one.events)
    assert _worker(app_ctx, batch_size=1).drain() == 3 * 7 + 2  # 7 OrderPlaced x 3 handlers, 1 dispatch x 2

    batched = _world(app_ctx, "qqb")
    publish(app_ctx, *batched.events)
    worker = _worker(app_ctx, batch_size=100, read_ahead=read_ahead)
    given: list[str] = []  # the handlers whose batch form got something prepared
    for name, batch in list(app_ctx.bus.batch_handlers.items()):

        def spy(envelopes: list[Envelope], ctx: HandlerContext, _n: str = name, _b: Any = batch) -> None:
            if ctx.prepared is not None:
                given.append(_n)
            _b(envelopes, ctx)

        monkeypatch.setitem(app_ctx.bus.batch_handlers, name, spy)
    with caplog.at_level(logging.INFO, logger="doorstep.worker"):
        assert worker.deliver_outbox_batch() == 23
    assert worker.deliver_outbox_batch() == 0
    assert "together failed" not in caplog.text  # every run went through whole, none fell back row by row
    assert "failed" not in caplog.text  # nor did any prepare form
    if read_ahead and app_ctx.engine.dialect.name == "sqlite":
        assert sorted(given) == ["notifications.journey", "orders.chain_placed"]
    else:
        assert given == []  # PostgreSQL has no single write lock to keep short: nothing is read ahead

    expected, got = _effects(app_ctx.engine, one_by_one), _effects(app_ctx.engine, batched)
    for table in expected:
        assert got[table] == expected[table], table
    # and the expectations themselves are the intended ones
    assert len(got["notifications"]) == 7  # one per order placed (6: the repeat deduplicated) + dispatched
    assert any('"customer_id": "ben"' in n and '"merged"' in n for n in got["notifications"])
    assert sum('"step": "placed"' in s for s in got["order_steps"]) == 6
    assert sum('"step": "dispatched"' in s for s in got["order_steps"]) == 1
    statuses = {json.loads(o)["external_id"]: json.loads(o)["status"] for o in got["orders"]}
    assert statuses == {
        "#TAG-1": "placed",
        "#TAG-2": "placed",
        "#TAG-3": "placed",
        "#TAG-4": "delivered",
        "#TAG-5": "cancelled",
        "#TAG-6": "dispatched",
    }
    [shipment] = [json.loads(s) for s in got["shipments"]]
    assert shipment["order_id"] == "awaited"  # linked when its order was placed
    assert all('"status": "done"' in row for row in got["outbox"] if "OrderPlaced" in row)


def test_a_redelivered_batch_queues_no_second_message(app_ctx: AppContext) -> None:
    maya = add_customer(app_ctx.engine)
    placed = add_order(app_ctx.engine, maya, external_id="#1042")
    other = add_order(app_ctx.engine, maya, external_id="#1043")
    publish(
        app_ctx,
        order_placed(placed, maya, at=NOW, external_id="#1042"),
        order_placed(other, maya, at=NOW, external_id="#1043"),
    )
    worker = _worker(app_ctx, batch_size=100)
    assert worker.drain() == 6

    # a worker that died after its handlers ran but before its commit is seen from outside as this: the
    # rows pending again, the handlers' effects of an earlier delivery in place
    with app_ctx.engine.begin() as conn:
        conn.execute(update(outbox).values(status="pending"))
    assert worker.drain() == 6

    with app_ctx.engine.connect() as conn:
        queued = conn.execute(select(notifications.c.order_id, notifications.c.trigger)).all()
        steps = conn.execute(select(order_steps.c.order_id, order_steps.c.step)).all()
    assert sorted(queued) == sorted([(placed, "order_confirmed"), (other, "order_confirmed")])
    assert sorted(steps) == sorted([(placed, "placed"), (other, "placed")])


# ---- record_steps against record_step --------------------------------------------------------------------


def test_record_steps_equals_record_step_one_at_a_time(app_ctx: AppContext) -> None:
    engine, at = app_ctx.engine, NOW
    written = NOW + timedelta(days=1)  # the steps reach us a day after they happened
    maya = add_customer(engine)

    def orders_and_steps(tag: str) -> tuple[dict[str, str], list[StepReached]]:
        ids = {
            "fresh": add_order(engine, maya, external_id=f"#{tag}1"),
            "ahead": add_order(engine, maya, external_id=f"#{tag}2", status="delivered"),
            "cancelled": add_order(engine, maya, external_id=f"#{tag}3", status="cancelled"),
        }
        steps = [
            StepReached(ids["fresh"], maya, "placed", at),
            StepReached(ids["fresh"], maya, "dispatched", at + timedelta(hours=1)),
            StepReached(ids["fresh"], maya, "placed", at + timedelta(hours=2)),  # again: changes nothing
            StepReached(ids["fresh"], maya, "delivered", at + timedelta(hours=3), {"proof_id": "p1"}),
            StepReached(ids["fresh"], maya, "out_for_delivery", at + timedelta(hours=4)),  # late: not back
            StepReached(ids["ahead"], maya, "dispatched", at),  # behind the order's status: not moved back
            StepReached(ids["cancelled"], maya, "dispatched", at),
        ]
        return ids, steps

    def state(ids: dict[str, str]) -> list[Any]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(orders.c.id, orders.c.status, orders.c.updated_at).where(orders.c.id.in_(ids.values()))
            ).all()
            steps = conn.execute(
                select(
                    order_steps.c.order_id,
                    order_steps.c.step,
                    order_steps.c.occurred_at,
                    order_steps.c.detail,
                ).where(order_steps.c.order_id.in_(ids.values()))
            ).all()
        name = {v: k for k, v in ids.items()}
        return sorted((name[r[0]], *r[1:]) for r in rows) + sorted(
            (name[s[0]], s[1], s[2], json.dumps(s[3], sort_keys=True)) for s in steps
        )

    single_ids, single = orders_and_steps("s")
    single_events: list[Any] = []
    with engine.begin() as conn:
        for s in single:
            record_step(
                conn,
                single_events.append,
                order_id=s.order_id,
                customer_id=s.customer_id,
                step=s.step,
                at=s.at,
                now=written,
                detail=s.detail,
            )
    batch_ids, batch = orders_and_steps("b")
    batch_events: list[Any] = []
    with engine.begin() as conn:
        new = record_steps(conn, batch_events.append, batch, now=written)

    assert state(batch_ids) == state(single_ids)
    as_steps = [(e.step, e.occurred_at) for e in single_events]
    assert [(e.step, e.occurred_at) for e in batch_events] == as_steps
    assert [(s.step, s.at) for s in new] == as_steps
    assert dict(state(batch_ids)[i][:2] for i in range(3)) == {
        "ahead": "delivered",
        "cancelled": "cancelled",
        "fresh": "delivered",
    }
    # a moved order says it changed when the steps were written, not when they happened (the replica's marker)
    moved = {r[0]: r[2] for r in state(batch_ids)[:3]}
    assert moved["fresh"] == written
    assert moved["ahead"] != written and moved["cancelled"] != written


# ---- a bad row inside a run ------------------------------------------------------------------------------


def record_probes(envelopes: list[Envelope], ctx: HandlerContext) -> None:
    """A batch form of the probe handler: counts its calls, then does what the handler does row by row."""
    BATCH_CALLS.append(len(envelopes))
    for envelope in envelopes:
        record_probe(envelope, ctx)


BATCH_CALLS: list[int] = []


@pytest.fixture
def probe_engine(database_url: str, probe_cleanup: None) -> Iterator[Engine]:  # noqa: F811
    engine = create_db_engine(database_url)
    create_probe_tables(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("has_batch_form", [True, False], ids=["batch-form", "row-after-row"])
def test_a_bad_row_in_a_run_is_retried_alone_and_holds_back_only_its_key(
    tmp_path: Path, database_url: str, probe_engine: Engine, clock: FixedClock, has_batch_form: bool
) -> None:
    settings: Settings = make_settings(tmp_path, database_url, retry_base_s=10.0, retry_max_s=600.0)
    bus = Bus()
    bus.subscribe(ProbeHappened, PROBE_HANDLER, record_probe, batch=record_probes if has_batch_form else None)
    worker = Worker(probe_engine, bus=bus, clock=clock, settings=settings, name="test")
    BATCH_CALLS.clear()
    publish_probes(
        probe_engine,
        bus,
        clock,
        [
            ProbeHappened(occurred_at=clock.now(), probe_key="bad", seq=1, fail_times=1),
            ProbeHappened(occurred_at=clock.now(), probe_key="good", seq=1),
            ProbeHappened(occurred_at=clock.now(), probe_key="bad", seq=2),
            ProbeHappened(occurred_at=clock.now(), probe_key="good", seq=2),
            ProbeHappened(occurred_at=clock.now(), probe_key="other", seq=1),
        ],
    )

    assert worker.deliver_outbox_batch() == 4  # the run failed; one by one: bad#2 waits, not attempted

    assert ([5] if has_batch_form else []) == BATCH_CALLS
    assert [(r.key, r.seq) for r in effects(probe_engine)] == [
        ("probe:good", 1),
        ("probe:good", 2),
        ("probe:other", 1),
    ]
    with probe_engine.connect() as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
    assert [(r.key, r.status, r.attempts) for r in rows] == [
        ("probe:bad", "pending", 1),
        ("probe:good", "done", 1),
        ("probe:bad", "pending", 0),
        ("probe:good", "done", 1),
        ("probe:other", "done", 1),
    ]
    assert rows[0].available_at > clock.now()  # backing off
    assert "fails on attempt 1" in rows[0].last_error
    assert worker.stats.handled == 3 and worker.stats.retried == 1

    assert worker.deliver_outbox_batch() == 0  # bad#2 stays behind bad#1 while it backs off
    clock.advance(seconds=20)
    assert worker.drain() == 2

    assert_per_key_order(effects(probe_engine))
    assert [(r.key, r.seq) for r in effects(probe_engine)][3:] == [("probe:bad", 1), ("probe:bad", 2)]
    with probe_engine.connect() as conn:
        assert conn.execute(select(outbox.c.status, outbox.c.attempts).order_by(outbox.c.id)).all() == [
            ("done", 2),
            ("done", 1),
            ("done", 1),
            ("done", 1),
            ("done", 1),
        ]


# ---- reading ahead of the write lock (SQLite) -------------------------------------------------------------


def _prepare_probes(envelopes: list[Envelope], ctx: PrepareContext) -> dict[str, Any]:
    PREPARED.append([e.payload["seq"] for e in envelopes])
    hook = ctx.services.get("while_preparing")
    if hook is not None:
        hook()
    return {"seqs": [e.payload["seq"] for e in envelopes]}


def _record_probes_seeing(envelopes: list[Envelope], ctx: HandlerContext) -> None:
    GIVEN.append(ctx.prepared)
    for envelope in envelopes:
        record_probe(envelope, ctx)


PREPARED: list[list[int]] = []
GIVEN: list[Any] = []


def _reading_ahead(tmp_path: Path, database_url: str) -> tuple[Settings, Bus]:
    """Settings and a bus whose probe handler prepares its runs ahead (what it prepared and what its batch
    form was given recorded afresh); skips on PostgreSQL, which has no single write lock to read ahead of."""
    if not database_url.startswith("sqlite"):
        pytest.skip("reading ahead is for SQLite's single write lock")
    bus = Bus()
    bus.subscribe(
        ProbeHappened, PROBE_HANDLER, record_probe, batch=_record_probes_seeing, prepare=_prepare_probes
    )
    PREPARED.clear()
    GIVEN.clear()
    return make_settings(tmp_path, database_url), bus


@pytest.mark.parametrize(
    "meanwhile", ["nothing", "another worker took a row", "a new row came", "prepare fails"]
)
def test_a_run_gets_what_was_prepared_only_when_it_is_the_same_rows(
    tmp_path: Path, database_url: str, probe_engine: Engine, clock: FixedClock, meanwhile: str
) -> None:
    """The worker prepares on a read snapshot before it takes the write lock, then claims again under it:
    a run of the same rows gets the prepared result; a run that changed in between (another worker took a
    row), or whose prepare form failed, is done without, with the same effects."""
    settings, bus = _reading_ahead(tmp_path, database_url)
    publish_probes(
        probe_engine,
        bus,
        clock,
        [ProbeHappened(occurred_at=clock.now(), probe_key=f"k{i}", seq=i) for i in range(4)],
    )
    services: dict[str, Any] = {"while_preparing": lambda: None}
    if meanwhile == "another worker took a row":

        def take_first_row() -> None:
            with probe_engine.begin() as conn:
                first = conn.execute(select(outbox.c.id).order_by(outbox.c.id).limit(1)).scalar_one()
                conn.execute(update(outbox).where(outbox.c.id == first).values(status="done"))

        services["while_preparing"] = take_first_row
    elif meanwhile == "a new row came":

        def publish_one() -> None:
            publish_probes(
                probe_engine, bus, clock, [ProbeHappened(occurred_at=clock.now(), probe_key="late", seq=9)]
            )

        services["while_preparing"] = publish_one
    elif meanwhile == "prepare fails":

        def fail() -> None:
            raise RuntimeError("the read-ahead broke")

        services["while_preparing"] = fail

    read_engine = create_db_engine(database_url, for_reads=True)
    worker = Worker(
        probe_engine, bus=bus, clock=clock, settings=settings, services=services, read_engine=read_engine
    )
    delivered = worker.deliver_outbox_batch()
    read_engine.dispose()

    assert PREPARED == [[0, 1, 2, 3]]  # prepared once, on the snapshot, for the whole run
    if meanwhile == "nothing":
        assert delivered == 4
        assert GIVEN == [{"seqs": [0, 1, 2, 3]}]
        assert [r.seq for r in effects(probe_engine)] == [0, 1, 2, 3]
    elif meanwhile == "a new row came":
        assert delivered == 4  # the new row is not in the snapshot: it waits for the next round
        assert GIVEN == [{"seqs": [0, 1, 2, 3]}]  # so the run under the lock is still the prepared one
        assert worker.deliver_outbox_batch() == 1
        assert [r.seq for r in effects(probe_engine)] == [0, 1, 2, 3, 9]
    elif meanwhile == "another worker took a row":
        assert delivered == 3
        assert GIVEN == [None]  # three rows are not the four prepared for: the batch form reads for itself
        assert [r.seq for r in effects(probe_engine)] == [1, 2, 3]
    else:
        assert delivered == 4
        assert GIVEN == [None]
        assert [r.seq for r in effects(probe_engine)] == [0, 1, 2, 3]


@pytest.mark.parametrize("meanwhile", ["another worker tried a row", "an earlier row of a key was finished"])
def test_the_claim_under_the_lock_reads_again_each_row_that_changed_since_the_snapshot(
    tmp_path: Path, database_url: str, probe_engine: Engine, clock: FixedClock, meanwhile: str
) -> None:
    """Under the lock the worker reads only ids and attempts again and takes the rows from its snapshot: a row
    tried since (other attempts) or one the snapshot did not claim is read whole, never taken stale."""
    settings, bus = _reading_ahead(tmp_path, database_url)
    keys = ["k0", "k1", "k2", "k3"] if meanwhile == "another worker tried a row" else ["k0", "k0", "k1", "k2"]
    publish_probes(
        probe_engine,
        bus,
        clock,
        [ProbeHappened(occurred_at=clock.now(), probe_key=key, seq=i) for i, key in enumerate(keys)],
    )
    with probe_engine.connect() as conn:
        ids = list(conn.execute(select(outbox.c.id).order_by(outbox.c.id)).scalars())
    if meanwhile == "another worker tried a row":

        def try_first_row() -> None:  # a failed attempt whose backoff is over: due again, one attempt more
            with probe_engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.id == ids[0]).values(attempts=1))

        hook = try_first_row
    else:
        with probe_engine.begin() as conn:  # k0's first row backs off, so the snapshot claims neither of k0's
            conn.execute(
                update(outbox)
                .where(outbox.c.id == ids[0])
                .values(available_at=clock.now() + timedelta(hours=1))
            )

        def finish_first_row() -> None:  # then it is finished: k0's second row is due under the lock
            with probe_engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.id == ids[0]).values(status="done"))

        hook = finish_first_row

    read_engine = create_db_engine(database_url, for_reads=True)
    worker = Worker(
        probe_engine,
        bus=bus,
        clock=clock,
        settings=settings,
        services={"while_preparing": hook},
        read_engine=read_engine,
    )
    delivered = worker.deliver_outbox_batch()
    read_engine.dispose()

    # the rows under the lock are not the rows prepared for: the batch form reads for itself
    assert GIVEN == [None]
    with probe_engine.connect() as conn:
        attempts = dict(conn.execute(select(outbox.c.id, outbox.c.attempts)).all())
    if meanwhile == "another worker tried a row":
        assert PREPARED == [[0, 1, 2, 3]]
        assert delivered == 4
        assert [r.seq for r in effects(probe_engine)] == [0, 1, 2, 3]
        assert attempts[ids[0]] == 2
    else:
        assert PREPARED == [[2, 3]]
        assert delivered == 3
        assert [r.seq for r in effects(probe_engine)] == [1, 2, 3]
        assert attempts[ids[1]] == 1


def test_a_prepare_form_needs_a_batch_form() -> None:
    with pytest.raises(ValueError, match="needs a batch form"):
        Bus().subscribe(ProbeHappened, PROBE_HANDLER, record_probe, prepare=_prepare_probes)


# ---- wake-ups after the commit ---------------------------------------------------------------------------


def test_the_sender_is_woken_after_the_commit_that_queued_its_messages(app_ctx: AppContext) -> None:
    maya = add_customer(app_ctx.engine)
    orders_placed = [add_order(app_ctx.engine, maya, external_id=f"#{n}") for n in range(3)]
    publish(
        app_ctx, *(order_placed(o, maya, at=NOW, external_id=f"#{n}") for n, o in enumerate(orders_placed))
    )
    seen_when_woken: list[int] = []

    def wake() -> None:  # what the sender does when woken: look for due messages, from another connection
        with app_ctx.read_engine.connect() as conn:
            seen_when_woken.append(len(conn.execute(select(notifications.c.id)).all()))

    app_ctx.services["wake_sender"] = wake
    assert _worker(app_ctx, batch_size=100).drain() == 9

    assert seen_when_woken == [3]  # once, with the batch's messages already visible


def test_a_commit_of_outbox_rows_wakes_an_idle_worker_of_the_process_at_once(app_ctx: AppContext) -> None:
    settings = app_ctx.settings.model_copy(update={"worker_poll_interval_s": 30.0})
    worker = Worker(app_ctx.engine, bus=app_ctx.bus, clock=app_ctx.clock, settings=settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not app_ctx.bus.outbox_listeners and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the first round found nothing: the worker sleeps for its 30 s poll interval
        maya = add_customer(app_ctx.engine)
        placed = add_order(app_ctx.engine, maya)

        publish(app_ctx, order_placed(placed, maya, at=NOW))

        while worker.stats.handled < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.stats.handled == 3  # long before the poll interval
    finally:
        stop.set()
        worker.wake.set()
        thread.join(timeout=10)
    assert app_ctx.bus.outbox_listeners == []  # a stopped worker is no longer woken


def test_a_backlog_is_claimed_in_growing_batches_and_the_size_falls_back_when_it_clears(
    tmp_path: Path, database_url: str, probe_engine: Engine, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, database_url, worker_batch_size=100)
    bus = Bus()
    bus.subscribe(ProbeHappened, PROBE_HANDLER, record_probe, batch=record_probes)
    worker = Worker(probe_engine, bus=bus, clock=clock, settings=settings, name="test")
    publish_probes(probe_engine, bus, clock, probes(clock, keys=7, per_key=100))

    rounds = [worker.run_once() for _ in range(5)]

    assert rounds == [100, 200, 400, 0, 0]  # 700 rows: each full claim doubles the next
    later = [ProbeHappened(occurred_at=clock.now(), probe_key="later", seq=n) for n in range(1, 151)]
    publish_probes(probe_engine, bus, clock, later)
    assert worker.run_once() == 100  # back to the setting after the backlog cleared
    assert_per_key_order(effects(probe_engine))
