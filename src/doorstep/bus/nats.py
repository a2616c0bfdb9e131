"""Domain events over NATS JetStream (DOORSTEP_BROKER_URL=nats://...).

The database outbox stays the source of truth: rows are written in the same transaction as the state they
describe, exactly as without a broker. Then:

- a relay (one active at a time: it locks its offset row) publishes pending rows in id order to the stream
  (DOORSTEP_NATS_STREAM, subjects `<stream lowercased>.events.<partition>`), with the header Nats-Msg-Id so
  JetStream drops a second publish of the same row (a relay that died between publish and marking), and
  marks them `relayed`;
- each partition has a durable pull consumer with one message in flight (max_ack_pending=1), so the events of
  a key reach their handler in the order they were recorded, across redeliveries and across worker
  processes sharing the consumer;
- a consumer runs the handler in a database transaction that also records (handler, event_id) in
  handled_events and marks the outbox row done, then acks: a redelivered message finds its row in
  handled_events and changes nothing;
- a failure naks with backoff; after max_attempts deliveries the outbox row is dead-lettered with the error
  (`doorstep events dead` lists it; `retry` puts it back to pending and the relay publishes it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import nats
import nats.errors
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError
from sqlalchemy import Connection, select, update

from doorstep.bus.messages import Envelope
from doorstep.bus.tables import handled_events, outbox
from doorstep.bus.worker import PermanentError, Worker, _describe, _is_permanent
from doorstep.context import AppContext
from doorstep.db.dialect import insert_ignore

log = logging.getLogger("doorstep.nats")
T = TypeVar("T")

RELAY = "nats-relay"  # its log_offsets row is the relay's lock
DUPLICATE_WINDOW_S = 120.0  # JetStream drops a repeated Nats-Msg-Id within this window
ACK_WAIT_S = 30.0  # a message not acked by then (worker died) is delivered again


def subject_prefix(stream: str) -> str:
    return f"{stream.lower()}.events"


def message_id(row: Any) -> str:
    """The row id, plus when it became due: a dead letter queued again is a new message, a repeat is not."""
    return f"{row.id}@{int(row.available_at.timestamp() * 1_000_000)}"


def runner(ctx: AppContext) -> Callable[[Worker, threading.Event], None]:
    """What `doorstep worker` runs when a broker URL is set: relay, consumers and the log projector."""

    def run(worker: Worker, stop: threading.Event) -> None:
        asyncio.run(NatsRunner(ctx, worker).run(stop))

    return run


class NatsRunner:
    def __init__(self, ctx: AppContext, worker: Worker):
        self.ctx = ctx
        self.worker = worker
        worker.delivers_outbox = False  # deliveries come from JetStream
        self.settings = ctx.settings
        self.stream = ctx.settings.nats_stream
        self.prefix = subject_prefix(self.stream)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.js: Any = None
        self.stopping = asyncio.Event()
        # database work runs here; waited for on the way out, so no connection is left checked out
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="doorstep-nats")

    async def run(self, stop: threading.Event) -> None:
        self.loop = asyncio.get_running_loop()
        nc = await nats.connect(
            self.settings.broker_url, name=f"doorstep-{self.worker.name}", max_reconnect_attempts=-1
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            self.js = nc.jetstream()
            await ensure_stream(self.js, self.stream, partitions=self.ctx.bus.partitions)
            tasks += [
                asyncio.create_task(self._relay_loop(), name="relay"),
                asyncio.create_task(self._projector_loop(), name="projector"),
            ]
            for partition in range(self.ctx.bus.partitions):
                psub = await self.js.pull_subscribe(
                    f"{self.prefix}.{partition}",
                    durable=f"{self.stream}_p{partition}",
                    stream=self.stream,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1, ack_wait=ACK_WAIT_S, max_deliver=-1
                    ),
                )
                tasks.append(asyncio.create_task(self._consume(psub), name=f"partition-{partition}"))
            log.info(
                "NATS worker %s consuming %s (%d partitions)",
                self.worker.name,
                self.stream,
                self.ctx.bus.partitions,
            )
            while not stop.is_set():
                await asyncio.sleep(0.05)
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            self.stopping.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.executor.shutdown, True)
            with contextlib.suppress(Exception):
                await nc.close()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ---- relay: outbox -> stream -------------------------------------------------------------------

    async def _relay_loop(self) -> None:
        idle = self.settings.worker_poll_interval_s
        while not self.stopping.is_set():
            try:
                n = await self._in_thread(self.relay_batch)
            except Exception:
                log.exception("relaying the outbox failed; retrying")
                n = 0
                await asyncio.sleep(1.0)
            if n == 0:
                await asyncio.sleep(idle)

    def relay_batch(self, limit: int | None = None) -> int:
        """Publishes due pending rows in id order and marks them relayed (runs in a thread)."""
        limit = limit or self.settings.worker_batch_size
        now = self.worker.clock.now()
        with self.worker.engine.connect() as conn, conn.begin():
            if self.worker._lock_offset(conn, RELAY) is None:
                return 0  # another relay is active
            query = (
                select(outbox)
                .where(outbox.c.status == "pending", outbox.c.available_at <= now)
                .order_by(outbox.c.id)
                .limit(limit)
            )
            if self.worker.is_postgres:
                query = query.with_for_update()
            rows = list(conn.execute(query).all())
            if not rows:
                return 0
            assert self.loop is not None
            future = asyncio.run_coroutine_threadsafe(self._publish(rows), self.loop)
            future.result(timeout=60)
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_([row.id for row in rows]), outbox.c.status == "pending")
                .values(status="relayed")
            )
        return len(rows)

    async def _publish(self, rows: list[Any]) -> None:
        for row in rows:  # one at a time, in id order: the stream keeps that order per partition
            body = orjson.dumps(
                {
                    "outbox_id": row.id,
                    "event_id": row.event_id,
                    "event_type": row.event_type,
                    "handler": row.handler,
                    "key": row.key,
                    "occurred_at": row.occurred_at.isoformat(),
                    "payload": row.payload,
                    "attempts_before": row.attempts,  # a log event deferred by the projector has one already
                }
            )
            await self.js.publish(
                f"{self.prefix}.{row.partition}",
                body,
                stream=self.stream,
                headers={"Nats-Msg-Id": message_id(row)},
            )

    # ---- consumers: stream -> handlers -------------------------------------------------------------

    async def _consume(self, psub: Any) -> None:
        while not self.stopping.is_set():
            try:
                messages = await psub.fetch(1, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except Exception:
                log.exception("fetching from %s failed; retrying", self.stream)
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                outcome, delay_s = await self._in_thread(
                    self.handle, orjson.loads(msg.data), msg.metadata.num_delivered
                )
                if outcome == "nak":
                    await msg.nak(delay=delay_s)
                else:
                    await msg.ack()

    def handle(self, message: dict[str, Any], delivery: int) -> tuple[str, float | None]:
        """Runs the handler once per (handler, event): returns ("ack", None) or ("nak", delay in seconds)."""
        worker = self.worker
        attempt = int(message.get("attempts_before", 0)) + delivery
        now = worker.clock.now()
        envelope = Envelope(
            event_id=message["event_id"],
            event_type=message["event_type"],
            key=message["key"],
            occurred_at=datetime.fromisoformat(message["occurred_at"]),
            payload=message["payload"],
            attempt=attempt,
        )
        name = message["handler"]
        hooks: list[Callable[[], None]] = []
        with worker.engine.connect() as conn, conn.begin():
            savepoint = conn.begin_nested()
            try:
                if not self._claim(conn, name, envelope.event_id, now):
                    savepoint.rollback()
                    return "ack", None  # a redelivery of something already handled
                handler = worker.bus.handlers.get(name)
                if handler is None:
                    raise LookupError(f"no handler registered as {name!r}")
                ctx = worker._context(conn, after_commit=hooks)
                handler(envelope, ctx)
                ctx.uow.flush_events()
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == message["outbox_id"])
                    .values(status="done", attempts=attempt, done_at=worker.clock.now(), last_error=None)
                )
                savepoint.commit()
                worker.stats.handled += 1
                worker.count_delivery("handled")
            except Exception as exc:
                savepoint.rollback()
                return self._failed(conn, message, attempt, exc)
        for hook in hooks:  # committed: wake-ups the handler asked for
            hook()
        return "ack", None

    def _claim(self, conn: Connection, handler: str, event_id: str, now: datetime) -> bool:
        stmt = insert_ignore(conn, handled_events, index_elements=["handler", "event_id"])
        stmt = stmt.values(handler=handler, event_id=event_id, handled_at=now).returning(
            handled_events.c.event_id
        )
        return conn.execute(stmt).first() is not None  # rowcount is -1 here on psycopg; RETURNING is exact

    def _failed(
        self, conn: Connection, message: dict[str, Any], attempt: int, exc: Exception
    ) -> tuple[str, float | None]:
        worker = self.worker
        is_dead = attempt >= self.settings.max_attempts or _is_permanent(exc)
        values: dict[str, Any] = {"attempts": attempt, "last_error": _describe(exc)}
        if is_dead:
            values["status"] = "dead"
            worker.stats.dead += 1
            worker.count_delivery("dead")
            log.error(
                "dead-lettered %s for %s after %d attempts: %s",
                message["event_type"],
                message["handler"],
                attempt,
                exc,
            )
        else:
            worker.stats.retried += 1
            worker.count_delivery("retried")
            log.warning(
                "%s for %s failed (attempt %d): %s", message["event_type"], message["handler"], attempt, exc
            )
        conn.execute(update(outbox).where(outbox.c.id == message["outbox_id"]).values(**values))
        if is_dead:
            return "ack", None  # the dead letter lives in the outbox now
        return "nak", worker._retry_delay(attempt).total_seconds()

    # ---- the inbound log, as without a broker -------------------------------------------------------

    async def _projector_loop(self) -> None:
        idle = self.settings.worker_poll_interval_s
        while not self.stopping.is_set():
            try:
                n = await self._in_thread(self.worker.project_log_batch)
            except Exception:
                log.exception("projecting the log failed; retrying")
                n = 0
                await asyncio.sleep(1.0)
            if n == 0:
                await asyncio.sleep(idle)


async def ensure_stream(js: Any, stream: str, *, partitions: int) -> None:
    """Creates the stream (file storage, dedupe window) unless it exists."""
    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[f"{subject_prefix(stream)}.*"],
                duplicate_window=DUPLICATE_WINDOW_S,
                description=f"Doorstep domain events, {partitions} partitions by key",
            )
        )


__all__ = ["PermanentError", "message_id", "runner", "subject_prefix"]
