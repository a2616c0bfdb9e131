"""Notifications benchmark: domain event -> message handed to the channel, on SQLite (WAL; every commit durable
(fsynced) before it returns: see --synchronous).

Setup: a fresh migrated SQLite database, one customer per event (so no daily cap or dedupe interferes),
quiet hours off for them, no provider configured (every message goes to the outbox channel, replaced here by
a recorder that timestamps the hand-off). The real outbox worker and the real sender run their own loops
(`Worker.run_forever`, `Sender.start`) as threads, as in `doorstep worker`.

1. Latency at a steady rate (100 and 1,000 events/s for --seconds): a producer records OrderPlaced events
   through the unit of work in 10 ms ticks (the events due in a tick share one transaction, as a projection
   batch does); latency = hand-off time - the event's occurred_at (both wall clock).
2. Throughput of one sender: N messages queued and due, one sender drains them; messages/s.
3. Throughput of one worker: N events already in the outbox (3 rows each), the worker alone drains them.
4. End-to-end throughput: N events already in the outbox, one worker thread + one sender drain them.

    PYTHONPATH=src .venv/bin/python -m bench.bench_notifications --seconds 10
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from doorstep.app import build_context, build_worker, settle_heap
from doorstep.clock import SystemClock
from doorstep.customers.tables import customers
from doorstep.db.migrate import upgrade
from doorstep.ids import new_id
from doorstep.notifications.channels import OutgoingMessage
from doorstep.notifications.model import SendOutcome
from doorstep.notifications.services import Sender
from doorstep.notifications.tables import notification_preferences, notifications
from doorstep.orders.events import OrderPlaced
from doorstep.orders.tables import orders
from doorstep.settings import Settings

TICK_S = 0.01


class Recorder:
    """The outbox channel, timestamping each hand-off by customer (one event per customer)."""

    name = "outbox"
    is_local = True

    def __init__(self, counter: Any = None) -> None:
        self.handed: dict[str, float] = {}
        self.counter = counter  # a process-shared count, when the sender runs in another process

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        self.handed[message.customer_id] = time.time()
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += 1
        return SendOutcome(is_sent=True, provider_message_id=f"outbox:{message.notification_id}")


SYNCHRONOUS_ENV = "DOORSTEP_BENCH_SYNCHRONOUS"
WAL_SYNC_MARK = "doorstep_wal_sync"  # db/engine.py's mark on writer connections whose commits it flushes
OUTBOX_KEY_INDEX = False  # --outbox-key-index: what-if for the pipeline's claim query (see RESULTS_notify.md)


def _context(db: Path) -> Any:
    url = f"sqlite:///{db}"
    upgrade(url)
    if OUTBOX_KEY_INDEX:
        import sqlite3

        with sqlite3.connect(db) as raw:
            raw.execute("CREATE INDEX IF NOT EXISTS ix_bench_outbox_key ON outbox (key, handler, status, id)")
    settings = Settings(
        env="test",
        database_url=url,
        var_dir=db.parent,
        in_process_worker=False,
        log_json=False,
        secret_key="bench-secret-key-with-enough-length-0123456789",
    )
    ctx = build_context(settings, clock=SystemClock())
    synchronous = os.environ.get(SYNCHRONOUS_ENV)  # --synchronous: inherited by the spawned processes too
    if synchronous:

        def set_synchronous(dbapi: Any, record: Any) -> None:
            dbapi.execute(f"PRAGMA synchronous={synchronous}")
            record.info.pop(WAL_SYNC_MARK, None)  # the what-if replaces the product's flush outside the lock

        for engine in (ctx.engine, ctx.read_engine):
            event.listen(engine, "connect", set_synchronous)
            engine.dispose()  # connections opened before the listener would keep the product's setting
    recorder = Recorder()
    ctx.services["notification_channels"] = {"outbox": recorder}
    return ctx, recorder


def _customers(ctx: Any, n: int) -> list[str]:
    now = datetime.now(UTC)
    ids = [new_id() for _ in range(n)]
    with ctx.engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {
                    "id": i,
                    "email": f"c{k}@example.com",
                    "phone": None,
                    "name": f"Customer {k}",
                    "locale": "en",
                    "timezone": "UTC",
                    "preferred_channels": ["email"],
                    "traits": {},
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for k, i in enumerate(ids)
            ],
        )
        # one order per customer (the order chain's handlers react to OrderPlaced too and need the row)
        conn.execute(
            insert(orders),
            [
                {
                    "id": _order_id(i),
                    "external_id": f"#{i[-12:]}",
                    "customer_id": i,
                    "status": "placed",
                    "currency": "EUR",
                    "total_minor": 1000,
                    "placed_at": now,
                    "properties": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        # quiet hours off (start == end), so the wall-clock hour of the run does not matter
        conn.execute(
            insert(notification_preferences),
            [
                {"customer_id": i, "quiet_start": "00:00", "quiet_end": "00:00", "updated_at": now}
                for i in ids
            ],
        )
    return ids


def _order_id(customer_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-order:{customer_id}"))


def _event(customer_id: str, at: datetime) -> OrderPlaced:
    return OrderPlaced(
        occurred_at=at,
        order_id=_order_id(customer_id),
        customer_id=customer_id,
        external_id=f"#{customer_id[-12:]}",
        total="10.00",
        currency="EUR",
    )


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class LoopErrors(logging.Handler):
    """Counts the rounds the real worker and sender loops logged as failed (SQLite busy past its timeout
    under overload); they go on after one, as in `doorstep serve`."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")

    def __enter__(self) -> LoopErrors:
        logging.getLogger("doorstep").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("doorstep").removeHandler(self)


class RealLoops:
    """The worker's own loop (`Worker.run_forever`, woken by commits in this process, else polling every
    worker_poll_interval_s) and the sender's (`Sender.start`, woken after the journey handler's commit), each
    in its thread, as `doorstep worker` runs them."""

    def __init__(self, ctx: Any, worker: Any, sender: Sender):
        self.sender = sender
        self.stop = threading.Event()
        self.thread = threading.Thread(target=worker.run_forever, args=(self.stop,), daemon=True)

    def __enter__(self) -> RealLoops:
        self.thread.start()
        self.sender.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.sender.close()


def _worker_process(db: Path, stop: Any, ready: Any) -> None:
    """`doorstep worker` on the benchmark's database, in a process of its own (its own interpreter lock)."""
    ctx, _ = _context(db)
    worker = build_worker(ctx, name="bench-process")
    settle_heap()  # as `doorstep worker` does
    ready.set()
    worker.run_forever(stop)


class WorkerProcess:
    """The worker in its own process and the sender in this one, as `doorstep worker` beside `doorstep serve
    --no-worker` runs them: no wake-up crosses the process boundary, each side polls (worker every
    worker_poll_interval_s, the sender every 0.1 s when nothing woke it)."""

    def __init__(self, db: Path, sender: Sender):
        mp = multiprocessing.get_context("spawn")
        self.stop, self.ready = mp.Event(), mp.Event()
        self.process = mp.Process(target=_worker_process, args=(db, self.stop, self.ready), daemon=True)
        self.sender = sender

    def __enter__(self) -> WorkerProcess:
        self.process.start()
        self.ready.wait(60)
        self.sender.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(timeout=30)
        self.sender.close()


def _pipeline_child(
    settings: Any, parent_pid: int, stop: Any, wake: Any, db: Path, counter: Any, result: Path
) -> None:
    """`app.PipelineProcess`'s child (`serve_pipeline`: worker + sender, woken by the parent's commits), with
    the benchmark's recorder as the outbox channel; the hand-off times go to `result` at the end."""
    import json

    from doorstep.app import serve_pipeline

    logging.getLogger("doorstep").setLevel(logging.ERROR)
    ctx, recorder = _context(db)
    recorder.counter = counter
    result.with_suffix(".ready").touch()
    errors = LoopErrors()
    with errors:
        serve_pipeline(ctx, parent_pid, stop, wake)
    result.write_text(json.dumps({"handed": recorder.handed, "errors": errors.errors}))


class PipelineProcess:
    """`doorstep serve --pipeline-process`: this process is the API side (records the events, wakes the child
    after each commit through `bus.outbox_listeners`, runs no worker and no sender); the real
    `app.PipelineProcess` runs the worker and the sender as threads of one child process."""

    def __init__(self, ctx: Any, db: Path):
        from doorstep.app import PipelineProcess as AppPipelineProcess

        self.counter = multiprocessing.get_context("spawn").Value("i", 0)
        self.result = db.with_suffix(".handed.json")
        self.pipeline = AppPipelineProcess(
            ctx, target=_pipeline_child, extra_args=(db, self.counter, self.result)
        )
        self.handed: dict[str, float] = {}
        self.errors: list[str] = []

    def count(self) -> int:
        return int(self.counter.value)

    def __enter__(self) -> PipelineProcess:
        self.pipeline.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import json

        self.pipeline.close()
        if self.result.exists():
            data = json.loads(self.result.read_text())
            self.handed, self.errors = data["handed"], data["errors"]


def _sender_process(db: Path, stop: Any, ready: Any, counter: Any, result: Path) -> None:
    """`doorstep worker --sender-only` on the benchmark's database, with the recorder as the outbox channel;
    the hand-off times go to `result` at the end."""
    import json

    logging.getLogger("doorstep").setLevel(logging.ERROR)
    ctx, recorder = _context(db)
    recorder.counter = counter
    sender = Sender(
        ctx, name="bench-sender-process", woken=False
    )  # as run_pipeline makes it for --sender-only
    errors = LoopErrors()
    settle_heap()  # as `doorstep worker --sender-only` does
    with errors:
        sender.start()
        ready.set()
        stop.wait()
        sender.close()
    result.write_text(json.dumps({"handed": recorder.handed, "errors": errors.errors}))


class SplitProcesses:
    """`doorstep serve --no-worker` + `doorstep worker --no-sender` + `doorstep worker --sender-only`: this
    process only records the events (the API side); the worker and the sender each have a process (and an
    interpreter lock) of their own. No wake-up crosses a process boundary: the worker polls every
    worker_poll_interval_s and the sender every 0.1 s when idle."""

    def __init__(self, db: Path):
        mp = multiprocessing.get_context("spawn")
        self.stop, worker_ready, sender_ready = mp.Event(), mp.Event(), mp.Event()
        self.ready = (worker_ready, sender_ready)
        self.counter = mp.Value("i", 0)
        self.result = db.with_suffix(".split.json")
        self.processes = [
            mp.Process(target=_worker_process, args=(db, self.stop, worker_ready), daemon=True),
            mp.Process(
                target=_sender_process,
                args=(db, self.stop, sender_ready, self.counter, self.result),
                daemon=True,
            ),
        ]
        self.handed: dict[str, float] = {}
        self.errors: list[str] = []

    def count(self) -> int:
        return int(self.counter.value)

    def __enter__(self) -> SplitProcesses:
        for process in self.processes:
            process.start()
        for ready in self.ready:
            ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        import json

        self.stop.set()
        for process in self.processes:
            process.join(timeout=30)
        if self.result.exists():
            data = json.loads(self.result.read_text())
            self.handed, self.errors = data["handed"], data["errors"]


CHILD_SHAPES = ("pipeline-process", "split-processes")  # shapes whose sender runs in a child process


def run_rate(rate: int, seconds: float, tmp: Path, *, shape: str = "threads") -> dict[str, Any]:
    """shape: "threads" (worker and sender threads beside the producer, one process: `doorstep serve`),
    "worker-process" (the worker in a process of its own, the sender beside the producer), "pipeline-process"
    (worker and sender in one child process, the producer alone in this one: `doorstep serve
    --pipeline-process`), "split-processes" (worker and sender each in a process of its own, the producer alone
    in this one: `serve --no-worker` + `worker --no-sender` + `worker --sender-only`)."""
    db = tmp / f"rate_{rate}_{shape}.db"
    ctx, recorder = _context(db)
    total = int(rate * seconds)
    ids = _customers(ctx, total)
    worker = build_worker(ctx, name="bench")
    sender = Sender(ctx, name="bench-sender")
    published: dict[str, float] = {}
    loops: Any
    if shape in CHILD_SHAPES:
        loops = PipelineProcess(ctx, db) if shape == "pipeline-process" else SplitProcesses(db)
        handed_count = loops.count
    else:
        loops = WorkerProcess(db, sender) if shape == "worker-process" else RealLoops(ctx, worker, sender)
        handed_count = lambda: len(recorder.handed)  # noqa: E731
    start = time.time()
    with LoopErrors() as errors, loops:
        if shape == "pipeline-process":  # spawn: imports and context in the child first
            deadline = time.time() + 60
            while time.time() < deadline and not loops.result.with_suffix(".ready").exists():
                time.sleep(0.05)
            time.sleep(0.5)
            start = time.time()
        elif shape == "split-processes":
            time.sleep(0.5)
            start = time.time()
        sent = 0
        while sent < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            if due > sent:
                with ctx.uow() as uow:
                    at = datetime.now(UTC)
                    for customer_id in ids[sent:due]:
                        uow.publish(_event(customer_id, at))
                        published[customer_id] = at.timestamp()
                    uow.commit()
                sent = due
            time.sleep(TICK_S)
        deadline = time.time() + 60
        while handed_count() < total and time.time() < deadline:
            time.sleep(0.05)
    elapsed = time.time() - start
    handed = loops.handed if shape in CHILD_SHAPES else recorder.handed
    loop_errors = errors.errors + (loops.errors if shape in CHILD_SHAPES else [])
    latencies = [(handed[c] - published[c]) * 1000 for c in published if c in handed]
    # events handed over per second from the first event to the last hand-off: the rate the pipeline kept
    last_handed = max((handed[c] for c in published if c in handed), default=float("nan"))
    first_published = min(published.values(), default=float("nan"))
    ctx.engine.dispose()
    ctx.read_engine.dispose()
    return {
        "rate": rate,
        "events": total,
        "handed": len(latencies),
        "elapsed_s": elapsed,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 99) if latencies else float("nan"),
        "max_ms": max(latencies) if latencies else float("nan"),
        "sustained_per_s": len(latencies) / (last_handed - first_published) if latencies else float("nan"),
        "errors": loop_errors,
    }


def run_sender_rate(rate: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """The notifications part alone: journey rules queue messages at `rate`/s (what the handler writes, in 10 ms
    tick transactions, waking the sender after each commit as the handler does) while the sender's own loop
    runs; latency = hand-off - the queueing commit."""
    from doorstep.notifications.handlers import queued_message
    from doorstep.notifications.journeys import default_source, parse_source
    from doorstep.notifications.repository import NotificationRepository

    ctx, recorder = _context(tmp / f"sender_rate_{rate}.db")
    total = int(rate * seconds)
    ids = _customers(ctx, total)
    [rule] = parse_source(default_source())[0].rules_for("OrderPlaced")
    sender = Sender(ctx, name="bench-sender")
    queued: dict[str, float] = {}
    start = time.time()
    sender.start()
    with LoopErrors() as errors:
        sent = 0
        while sent < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            if due > sent:
                with ctx.engine.begin() as conn:
                    repo = NotificationRepository(conn)
                    at = datetime.now(UTC)
                    for customer_id in ids[sent:due]:
                        payload = _event(customer_id, at).payload()
                        repo.add_queued(
                            **queued_message(
                                rule=rule,
                                event_type="OrderPlaced",
                                payload=payload,
                                occurred_at=at,
                                customer_id=customer_id,
                                locale="en",
                                now=at,
                            )
                        )
                committed = time.time()
                sender.wake.set()
                for customer_id in ids[sent:due]:
                    queued[customer_id] = committed
                sent = due
            time.sleep(TICK_S)
        deadline = time.time() + 60
        while len(recorder.handed) < total and time.time() < deadline:
            time.sleep(0.05)
        sender.close()
    latencies = [(recorder.handed[c] - queued[c]) * 1000 for c in queued if c in recorder.handed]
    ctx.engine.dispose()
    ctx.read_engine.dispose()
    return {
        "rate": rate,
        "events": total,
        "handed": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 99) if latencies else float("nan"),
        "max_ms": max(latencies) if latencies else float("nan"),
        "errors": errors.errors,
    }


def queue_confirmations(ctx: Any, customer_ids: list[str], *, now: datetime) -> None:
    """One order_confirmed message due now per customer, as the journey queues them (with the order: three
    signed links each)."""
    with ctx.engine.begin() as conn:
        conn.execute(
            insert(notifications),
            [
                {
                    "id": new_id(),
                    "customer_id": c,
                    "order_id": _order_id(c),
                    "trigger": "order_confirmed",
                    "channel": "auto",
                    "locale": "en",
                    "status": "queued",
                    "dedupe_key": f"order_confirmed:{c}",
                    "attempts": 0,
                    "topic": "service",
                    "created_at": now,
                    "scheduled_for": now,
                    "detail": {
                        "event_type": "OrderPlaced",
                        "event": {"customer_id": c, "external_id": "#1", "order_id": _order_id(c)},
                        "is_urgent": False,
                        "cancel_if": {"shipment_status": [], "order_status": ["cancelled"]},
                    },
                }
                for c in customer_ids
            ],
        )


def run_sender_throughput(n: int, tmp: Path) -> dict[str, Any]:
    ctx, recorder = _context(tmp / "sender.db")
    ids = _customers(ctx, n)
    now = datetime.now(UTC)
    queue_confirmations(ctx, ids, now=now)
    sender = Sender(ctx, name="bench-sender")
    start, cpu = time.perf_counter(), time.process_time()
    while sender.send_due(now=datetime.now(UTC)):
        pass
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    sender.pool.shutdown(wait=False)
    ctx.engine.dispose()
    ctx.read_engine.dispose()
    return {
        "messages": len(recorder.handed),
        "elapsed_s": elapsed,
        "per_s": len(recorder.handed) / elapsed,
        "cpu_ms_per_message": cpu / max(1, len(recorder.handed)) * 1000,
    }


def _publish_backlog(ctx: Any, customer_ids: list[str]) -> None:
    """One OrderPlaced per customer, all in the outbox before any worker starts (one transaction)."""
    with ctx.uow() as uow:
        at = datetime.now(UTC)
        for c in customer_ids:
            uow.publish(_event(c, at))
        uow.commit()


def run_worker_throughput(n: int, tmp: Path) -> dict[str, Any]:
    """The outbox worker alone: n OrderPlaced already in the outbox (3 rows each), one worker drains them."""
    ctx, _ = _context(tmp / "worker.db")
    ids = _customers(ctx, n)
    _publish_backlog(ctx, ids)
    worker = build_worker(ctx, name="bench")
    start, cpu = time.perf_counter(), time.process_time()
    worker.drain()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    ctx.engine.dispose()
    ctx.read_engine.dispose()
    return {
        "events": n,
        "rows": worker.stats.handled,
        "elapsed_s": elapsed,
        "per_s": n / elapsed,
        "rows_per_s": worker.stats.handled / elapsed,
        "cpu_ms_per_event": cpu / n * 1000,
    }


def run_end_to_end_throughput(n: int, tmp: Path) -> dict[str, Any]:
    ctx, recorder = _context(tmp / "e2e.db")
    ids = _customers(ctx, n)
    _publish_backlog(ctx, ids)
    worker = build_worker(ctx, name="bench")
    sender = Sender(ctx, name="bench-sender")
    start = time.perf_counter()
    with RealLoops(ctx, worker, sender):
        deadline = time.time() + 120
        while len(recorder.handed) < n and time.time() < deadline:
            time.sleep(0.01)
    elapsed = time.perf_counter() - start
    from sqlalchemy import func, select

    from doorstep.bus.tables import outbox

    with ctx.engine.connect() as conn:
        statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
    ctx.engine.dispose()
    ctx.read_engine.dispose()
    return {
        "events": n,
        "handed": len(recorder.handed),
        "elapsed_s": elapsed,
        "per_s": len(recorder.handed) / elapsed,
        "outbox": statuses,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each steady-rate run")
    parser.add_argument("--rates", default="100,1000", help="comma-separated events/s")
    parser.add_argument(
        "--throughput-n", type=int, default=5000, help="messages for the sender throughput run"
    )
    parser.add_argument("--e2e-n", type=int, default=2000, help="events for the end-to-end throughput run")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="also run the steady rates with the worker in a process of its own (the sender stays here)",
    )
    parser.add_argument(
        "--pipeline-process",
        action="store_true",
        help="also run the steady rates as `doorstep serve --pipeline-process` runs: worker and sender in one "
        "child process (app.PipelineProcess), the producer alone in this one",
    )
    parser.add_argument(
        "--split-processes",
        action="store_true",
        help="also run the steady rates with the worker and the sender each in a process of its own, the "
        "producer alone in this one (`serve --no-worker` + `worker --no-sender` + `worker --sender-only`)",
    )
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated shapes to run the steady rates in, instead of threads plus the flags above: "
        "threads, worker-process, pipeline-process, split-processes",
    )
    parser.add_argument(
        "--synchronous",
        choices=("product", "FULL", "NORMAL"),
        default="product",
        help="product: writers commit with synchronous=NORMAL and fsync the WAL themselves once the write lock "
        "is free, before the commit returns (db/engine.py WalSync). What-ifs on every connection of every "
        "process: FULL (SQLite fsyncs inside COMMIT, under the lock: the product before 2026-12-03 18:30 UTC), "
        "NORMAL (no fsync until a checkpoint: commits are not durable)",
    )
    parser.add_argument(
        "--only-rates",
        action="store_true",
        help="only the steady rates (skip the sender-only, throughput and drain runs)",
    )
    parser.add_argument(
        "--outbox-key-index",
        action="store_true",
        help="add an index on outbox (key, handler, status, id) first: a what-if for the worker's "
        "per-key ordering check, which scans pending rows without it",
    )
    args = parser.parse_args(argv)
    logging.getLogger("doorstep").setLevel(
        logging.ERROR
    )  # the worker's per-retry warnings would swamp the output
    global OUTBOX_KEY_INDEX
    OUTBOX_KEY_INDEX = args.outbox_key_index
    if args.synchronous != "product":
        os.environ[SYNCHRONOUS_ENV] = args.synchronous
    print(
        f"# notifications benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, nproc={os.cpu_count()}, "
        f"{platform.python_implementation()} {platform.python_version()}, SQLite WAL, commits: {args.synchronous}"
        f", load {os.getloadavg()[0]:.2f}"
        f"{', WITH what-if outbox (key, handler, status, id) index' if args.outbox_key_index else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-notify-") as tmp:
        shapes = ["threads"]
        shapes += ["worker-process"] if args.worker_process else []
        shapes += ["pipeline-process"] if args.pipeline_process else []
        shapes += ["split-processes"] if args.split_processes else []
        if args.shapes:
            shapes = args.shapes.split(",")
        for shape in shapes:
            for rate in (int(r) for r in args.rates.split(",")):
                r = run_rate(rate, args.seconds, Path(tmp), shape=shape)
                print(
                    f"{shape}: "
                    f"rate {r['rate']:>5}/s  events {r['events']:>6}  handed {r['handed']:>6}  "
                    f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms  "
                    f"kept {r['sustained_per_s']:6.0f}/s  "
                    f"loop errors {len(r['errors'])}{': ' + r['errors'][0] if r['errors'] else ''}"
                    f"  load {os.getloadavg()[0]:.2f}"
                )
        if args.only_rates:
            return
        for rate in (int(r) for r in args.rates.split(",")):
            r = run_sender_rate(rate, args.seconds, Path(tmp))
            print(
                f"sender only: queued {r['rate']:>5}/s  messages {r['events']:>6}  handed {r['handed']:>6}  "
                f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms  "
                f"loop errors {len(r['errors'])}"
            )
        s = run_sender_throughput(args.throughput_n, Path(tmp))
        print(
            f"one sender, {s['messages']} queued messages: {s['per_s']:.0f} messages/s ({s['elapsed_s']:.2f} s, "
            f"{s['cpu_ms_per_message']:.3f} ms CPU a message)"
        )
        w = run_worker_throughput(args.e2e_n, Path(tmp))
        print(
            f"one worker alone, {w['events']} events in the outbox: {w['per_s']:.0f} events/s, "
            f"{w['rows_per_s']:.0f} outbox rows/s ({w['elapsed_s']:.2f} s, {w['cpu_ms_per_event']:.3f} ms CPU an event)"
        )
        e = run_end_to_end_throughput(args.e2e_n, Path(tmp))
        print(
            f"one worker + one sender, {e['events']} events in the outbox: {e['per_s']:.0f} events/s end to end "
            f"({e['elapsed_s']:.2f} s, {e['handed']} handed; outbox rows by status {e['outbox']})"
        )


if __name__ == "__main__":
    main()
