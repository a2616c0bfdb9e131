"""The worker: projects the inbound log into domain state, then delivers outbox rows to their handlers.

Guarantees
- At least once: a row is marked done in the same transaction as its handler's writes. A worker killed
  mid-batch leaves the whole batch uncommitted, and another (or the restarted) worker does it again.
- Exactly-once effects inside the store follow from that; handlers that talk to the outside world keep their
  own delivery records (see notifications) and are idempotent by key.
- Order per key: a row is claimed only when no earlier pending row has the same (key, handler).
- Sharing: on PostgreSQL rows are claimed with FOR UPDATE SKIP LOCKED, so N workers split the load; the log
  projector is a single active consumer (its offset row is locked with SKIP LOCKED too).
- Failures retry with exponential backoff, then the row is dead-lettered with the error
  (`doorstep events dead` lists and retries them).
- Batches: the rows of one handler in a claimed batch are delivered as one run (the handler's batch form
  if it registered one, else the handler row after row) in one savepoint; one UPDATE completes the runs.
  If the run fails it is rolled back and its rows go one by one, each in its own savepoint, so only the bad
  row is retried; the good rows' handlers have then run twice, their store effects once.
- Reading ahead (SQLite): SQLite has one write lock for every process, so time a worker spends in a write
  transaction is time the API and the sender wait. Before it takes the lock the worker claims on a read
  snapshot and runs the `prepare` forms of the runs' handlers there (their reads and computing, see
  Bus.subscribe); under the lock it claims again, up to the snapshot claim's last row (later rows wait for the
  next round), and a run made of exactly the same rows gets what was prepared, so only the writes are left to
  do while the lock is held. Anything else is done as before.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, insert, or_, select, text, update
from sqlalchemy.orm import aliased

from doorstep.bus.backoff import backoff_s
from doorstep.bus.messages import Envelope
from doorstep.bus.registry import Bus, HandlerContext, PrepareContext
from doorstep.bus.tables import outbox
from doorstep.clock import Clock
from doorstep.db.dialect import insert_ignore
from doorstep.db.engine import background_commits, writers_waiting
from doorstep.db.uow import UnitOfWork
from doorstep.ids import new_id
from doorstep.ingest.tables import event_log, log_offsets
from doorstep.settings import Settings

log = logging.getLogger("doorstep.worker")

PROJECTOR = "projector"
RETRY_LOG_HANDLER = "bus.retry_log_event"
DEFERRED_LOG_EVENT = "InboundEventDeferred"
# Rows a backlogged worker claims at most in one round; a worker that keeps up claims worker_batch_size or fewer.
# On SQLite the round's handlers run in one write transaction: measured at 1,000 OrderPlaced/s, 1,000 rows held
# the write lock 244-416 ms while the API and the sender waited; 300 held it less but lost more throughput than
# it saved (bench/RESULTS_notify.md, 2026-12-03).
OUTBOX_MAX_BATCH = 1000


OUTBOX_PACED_EVERY_S = 0.05


@dataclass(frozen=True)
class LogPace:
    """How long a log batch's transaction may go on: `budget_s` at most (None: no bound), and once it has gone
    on `yield_after_s`, only until another thread of this process waits for SQLite's write lock (None: it
    never lets one in early; PostgreSQL has no such lock)."""

    budget_s: float | None = None
    yield_after_s: float | None = None


@dataclass
class WorkerStats:
    log_events: int = 0
    handled: int = 0
    retried: int = 0
    dead: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        engine: Engine,
        *,
        bus: Bus,
        clock: Clock,
        settings: Settings,
        services: dict[str, Any] | None = None,
        name: str | None = None,
        read_engine: Engine | None = None,
    ):
        self.engine = engine
        # SQLite: look for work with a reader first, so an idle round never queues for the write lock
        self.peek_engine = read_engine if engine.dialect.name == "sqlite" else None
        self.bus = bus
        self.clock = clock
        self.settings = settings
        self.services = services or {}
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.is_postgres = engine.dialect.name == "postgresql"
        self.stats = WorkerStats()
        self._outbox_limit = settings.worker_batch_size  # grows while a backlog lasts (run_once)
        self._rows_in_budget: dict[float, int] = {}  # log rows a budget fitted lately (project_log_batch)
        self._log_left = False  # the last log batch stopped short of the log's end: no need to peek first
        self._outbox_looked = float("-inf")  # when a paced round last looked at the outbox (_run_once)
        self._writers_waiting = writers_waiting(engine)
        self.wake = threading.Event()  # set by commits of outbox rows in this process (run_forever)
        self._after_commit: list[Any] = []  # hooks handlers left in the open transaction's units of work
        # with a broker the outbox is relayed to it and delivered by its consumers (bus/nats.py), never here:
        # one row must not travel both ways
        self.delivers_outbox = not settings.broker_url
        if RETRY_LOG_HANDLER not in bus.handlers:
            bus.handlers[RETRY_LOG_HANDLER] = self._retry_log_event

    # ---- the loop -------------------------------------------------------------------------------------

    def run_once(self, limit: int | None = None, *, log_pace: LogPace | None = None) -> int:
        """One log batch and one outbox batch; returns how many items were processed. `log_pace`: how long
        the log batch's transaction may go on (`LogPace`).

        With a broker the outbox is relayed and delivered by the broker runner instead (bus/nats.py).
        Its commits acknowledge nothing to anyone: they do not wait for the disk (db.engine.background_commits).
        """
        with background_commits():
            return self._run_once(limit, log_pace)

    def _run_once(self, limit: int | None, log_pace: LogPace | None) -> int:
        n = self.project_log_batch(limit, pace=log_pace)
        if log_pace is not None and self._log_left:
            # paced rounds that stop short of the log's end come every few ms while requests stream in: looking
            # at the outbox in each was a sixth of the worker's time (profiled), so look every OUTBOX_PACED_EVERY_S
            now = time.monotonic()
            if now - self._outbox_looked < OUTBOX_PACED_EVERY_S:
                return n
            self._outbox_looked = now
        if self.delivers_outbox:
            outbox_limit = limit or self._outbox_limit
            delivered = self.deliver_outbox_batch(outbox_limit)
            if limit is None:
                # a full claim means a backlog: claim twice as many next round, so a round's fixed costs (claim,
                # savepoints, commit) spread over more rows; back to the setting once the backlog is gone
                base = self.settings.worker_batch_size
                grown = min(max(base, OUTBOX_MAX_BATCH), outbox_limit * 2)
                self._outbox_limit = grown if delivered >= outbox_limit else base
            n += delivered
        return n

    def drain(self, *, max_rounds: int = 10_000) -> int:
        """Processes until nothing is due (tests and the CLI use this)."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            total += n
            if n == 0:
                return total
        return total

    def run_forever(self, stop: threading.Event) -> None:
        """Rounds until `stop`; idle, it polls every worker_poll_interval_s, or starts at once when a unit of
        work of this process commits outbox rows."""
        idle = self.settings.worker_poll_interval_s
        self.bus.outbox_listeners.append(self.wake.set)
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    n = self.run_once()
                except Exception:
                    log.exception("worker round failed; retrying")
                    n = 0
                    stop.wait(1.0)
                if n == 0:
                    self.wake.wait(idle)
        finally:
            self.bus.outbox_listeners.remove(self.wake.set)

    def _context(self, conn: Connection, *, after_commit: list[Any] | None = None) -> HandlerContext:
        hooks = self._after_commit if after_commit is None else after_commit
        uow = UnitOfWork(None, bus=self.bus, clock=self.clock, conn=conn, after_commit=hooks)
        return HandlerContext(uow=uow, clock=self.clock, settings=self.settings, services=self.services)

    def _committed(self) -> None:
        """Runs what handlers asked to run after the transaction that just committed."""
        hooks, self._after_commit[:] = list(self._after_commit), []
        for hook in hooks:
            hook()

    # ---- the inbound log --------------------------------------------------------------------------------

    def project_log_batch(self, limit: int | None = None, *, pace: LogPace | None = None) -> int:
        """Projects up to `limit` log rows in one transaction; returns how many. With a `pace`, it stops early
        and commits what it did (at least one row or batch run) when the pace says so, and the next call goes
        on from there: how the in-process worker keeps ingest requests from waiting behind a long projection."""
        budget_s = pace.budget_s if pace is not None else None
        limit = limit or self.settings.worker_batch_size
        if self.peek_engine is not None and not self._log_left and not self._log_has_news():
            return 0
        self._log_left = False
        self._after_commit.clear()
        with self.engine.connect() as conn, conn.begin():
            offset = self._lock_offset(conn, PROJECTOR)
            if offset is None:
                return 0  # another worker is projecting
            position, tx_position = offset
            if budget_s is not None:  # read about what the budget fits, not rows to throw away
                limit = min(limit, self._rows_in_budget.get(budget_s, limit))
            query = select(event_log).limit(limit)
            if self.is_postgres:
                query = query.where(
                    text("(event_log.tx_id, event_log.id) > (:tx, :pos)").bindparams(
                        tx=tx_position, pos=position
                    ),
                    event_log.c.tx_id < self._tx_horizon(conn),
                ).order_by(event_log.c.tx_id, event_log.c.id)
            else:
                query = query.where(event_log.c.id > position).order_by(event_log.c.id)
            rows = conn.execute(query).all()
            if not rows:
                return 0
            waiting = self._keys_awaiting_retry(conn, {row.partition_key for row in rows})
            started = time.perf_counter()
            deadline = None if budget_s is None else started + budget_s
            yield_from = None if pace is None or pace.yield_after_s is None else started + pace.yield_after_s

            def enough(done: int) -> bool:
                if done == 0:
                    return False
                now = time.perf_counter()
                if deadline is not None and now >= deadline:
                    return True
                return yield_from is not None and now >= yield_from and self._writers_waiting()

            done = 0  # rows projected, in log order
            for run in self._runs(rows, waiting):
                if enough(done):
                    break
                if len(run) > 1:
                    applied = self._project_run(conn, run, enough=enough, before=done)
                    if applied is not None:
                        done += applied
                        if applied < len(run):
                            break  # the pace said enough inside the run
                        continue
                for row in run:
                    if enough(done):
                        break
                    self._project_one(conn, row, waiting)
                    done += 1
            if budget_s is not None and deadline is not None:
                self._fit_budget(budget_s, deadline, done=done, read=len(rows))
            self._log_left = done < len(rows) or len(rows) == limit
            rows = rows[:done]
            last = rows[-1]
            conn.execute(
                update(log_offsets)
                .where(log_offsets.c.consumer == PROJECTOR)
                .values(position=last.id, tx_position=last.tx_id or 0, updated_at=self.clock.now())
            )
        self._committed()
        self.stats.log_events += len(rows)
        return len(rows)

    def _fit_budget(self, budget_s: float, deadline: float, *, done: int, read: int) -> None:
        """How many log rows to read next time for this budget: twice what it fitted (all it read, or what it
        did by the deadline); a stop for a waiting writer says nothing about the budget."""
        if done == read:
            fitted = read * 2
        elif time.perf_counter() >= deadline:
            fitted = done * 2
        else:
            return
        self._rows_in_budget[budget_s] = max(4, min(fitted, self.settings.worker_batch_size))

    def _log_has_news(self) -> bool:
        assert self.peek_engine is not None
        with self.peek_engine.connect() as conn:
            last = conn.execute(select(func.max(event_log.c.id))).scalar() or 0
            done = conn.execute(
                select(log_offsets.c.position).where(log_offsets.c.consumer == PROJECTOR)
            ).scalar()
        return int(last) > int(done or 0)

    def _outbox_has_due(self, now: Any) -> bool:
        assert self.peek_engine is not None
        with self.peek_engine.connect() as conn:
            query = select(outbox.c.id).where(outbox.c.status == "pending", outbox.c.available_at <= now)
            return conn.execute(query.limit(1)).first() is not None

    def _tx_horizon(self, conn: Connection) -> Any:
        """SQL for the transaction id below which every writer of this database has finished (PostgreSQL).

        The plain answer is the snapshot's xmin, but transaction ids are cluster-wide: a long transaction in
        another database on the same server would hold the projector back. So, read first, the transactions
        of this database in progress and the next id to be given out; then, in the projector's own statement,
        the horizon is the oldest transaction still running that is ours or started since. When some session
        of this database hides its details from us (other role, no pg_read_all_stats), fall back to xmin.
        """
        next_xid, ours, hidden = conn.execute(
            text(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,"
                " coalesce(array_agg(backend_xid::text::bigint) FILTER (WHERE backend_xid IS NOT NULL), '{}'),"
                " count(*) FILTER (WHERE query = '<insufficient privilege>')"
                " FROM pg_stat_activity WHERE datname = current_database()"
            )
        ).one()
        if hidden:
            return text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return text(
            "(SELECT coalesce(min(x::text::bigint), pg_snapshot_xmax(pg_current_snapshot())::text::bigint)"
            " FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
            " WHERE x::text::bigint >= :next_xid OR (x::text::bigint % 4294967296) = ANY(:ours))"
        ).bindparams(next_xid=next_xid, ours=list(ours))

    def _lock_offset(self, conn: Connection, consumer: str) -> tuple[int, int] | None:
        query = select(log_offsets.c.position, log_offsets.c.tx_position).where(
            log_offsets.c.consumer == consumer
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        row = conn.execute(query).first()
        if row is None:
            conn.execute(
                insert_ignore(conn, log_offsets).values(
                    consumer=consumer, position=0, tx_position=0, updated_at=self.clock.now()
                )
            )
            row = conn.execute(query).first()
            if row is None:
                return None
        return int(row.position), int(row.tx_position)

    def _keys_awaiting_retry(self, conn: Connection, keys: set[str]) -> set[str]:
        """Keys with an earlier log event waiting in the outbox: later events of those keys wait behind it."""
        query = select(outbox.c.key).where(
            outbox.c.key.in_(keys),
            outbox.c.handler == RETRY_LOG_HANDLER,
            # the partial index's own condition, spelled as it is (an IN would not use the index)
            or_(outbox.c.status == "pending", outbox.c.status == "relayed"),
        )
        return {key for (key,) in conn.execute(query.distinct()).all()} & keys

    def _runs(self, rows: Sequence[Any], waiting: set[str]) -> list[list[Any]]:
        """Splits a log batch into runs: consecutive rows of one projected source whose keys wait for no retry,
        and single rows for everything else. Log order is kept across runs."""
        runs: list[list[Any]] = []
        for row in rows:
            runnable = row.partition_key not in waiting and (
                row.source in self.bus.log_batch_handlers or row.source in self.bus.log_handlers
            )
            last = runs[-1] if runs else None
            if runnable and last and last[0].source == row.source and getattr(last, "runnable", False):
                last.append(row)
                continue
            run: Any = _Run([row])
            run.runnable = runnable
            runs.append(run)
        return runs

    def _project_run(
        self, conn: Connection, run: list[Any], *, enough: Callable[[int], bool], before: int = 0
    ) -> int | None:
        """Applies a run in one savepoint: with its source's batch projection, or row after row (stopping
        early when `enough(before + rows applied)` says so); returns how many rows it applied, or None (nothing
        applied) if it fails, so the rows go one by one and only the bad one is deferred. One savepoint and one
        unit of work a run, not one of each a row: those were a quarter of the Segment projection's time."""
        ctx = self._context(conn)
        savepoint = conn.begin_nested()
        try:
            source = run[0].source
            if source in self.bus.log_batch_handlers:
                self.bus.log_batch_handlers[source](list(run), ctx)
                applied = len(run)
            else:
                handler = self.bus.log_handlers[source]
                applied = 0
                for row in run:
                    if enough(before + applied):
                        break
                    handler(row, ctx)
                    applied += 1
            ctx.uow.flush_events()
            savepoint.commit()
            return applied
        except Exception as exc:
            savepoint.rollback()
            log.info(
                "projecting a run of %d %s rows failed (%s); projecting one by one", len(run), source, exc
            )
            return None

    def _project_one(self, conn: Connection, row: Any, waiting: set[str]) -> None:
        handler = self.bus.log_handlers.get(row.source)
        if handler is None:
            return
        if row.partition_key in waiting:
            # an earlier event of this key failed and waits for its retry: keep the key's order by queueing
            # this one behind it (the outbox delivers rows of one key in id order)
            self._defer_log_row(conn, row, attempts=0, error=None)
            return
        ctx = self._context(conn)
        savepoint = conn.begin_nested()
        try:
            handler(row, ctx)
            ctx.uow.flush_events()
            savepoint.commit()
        except Exception as exc:
            savepoint.rollback()
            log.warning("projecting log event %s (%s) failed: %s; retrying later", row.id, row.source, exc)
            # the failed inbound event becomes an outbox row, so it is retried and dead-lettered like any other
            self._defer_log_row(conn, row, attempts=1, error=_describe(exc))
            waiting.add(row.partition_key)

    def _defer_log_row(self, conn: Connection, row: Any, *, attempts: int, error: str | None) -> None:
        now = self.clock.now()
        conn.execute(
            insert(outbox).values(
                event_id=new_id(),
                event_type=DEFERRED_LOG_EVENT,
                handler=RETRY_LOG_HANDLER,
                key=row.partition_key,
                partition=self.bus.partition_of(row.partition_key),
                payload={"log_id": row.id, "source": row.source, "message_id": row.message_id},
                occurred_at=row.occurred_at,
                created_at=now,
                status="pending",
                attempts=attempts,
                available_at=now + self._retry_delay(attempts) if attempts else now,
                last_error=error,
            )
        )

    def _retry_log_event(self, envelope: Envelope, ctx: HandlerContext) -> None:
        row = ctx.uow.conn.execute(
            select(event_log).where(event_log.c.id == envelope.payload["log_id"])
        ).one()
        handler = self.bus.log_handlers[row.source]
        handler(row, ctx)

    # ---- the outbox ---------------------------------------------------------------------------------------

    def deliver_outbox_batch(self, limit: int | None = None) -> int:
        """Delivers due rows in id order; returns how many were attempted.

        A row waits while an earlier pending row has the same (key, handler): rows in backoff are excluded
        in the claim, rows another worker holds (PostgreSQL, SKIP LOCKED) by a second look after the claim,
        and a row that fails in this batch holds back the rest of its key.

        The claimed rows are grouped by handler (id order kept within each group: order is promised per
        (key, handler), never across handlers) and each group is delivered as one run: the handler's batch
        form, or the handler row after row, in one savepoint; one UPDATE completes the round's runs. A run
        that fails is rolled back whole and its rows delivered one by one, so only the bad row is retried.
        """
        limit = limit or self.settings.worker_batch_size
        now = self.clock.now()
        earlier = aliased(outbox)
        query = (
            select(outbox)
            .where(
                outbox.c.status == "pending",
                outbox.c.available_at <= now,
                ~exists().where(
                    and_(
                        earlier.c.key == outbox.c.key,
                        earlier.c.handler == outbox.c.handler,
                        earlier.c.status == "pending",
                        earlier.c.id < outbox.c.id,
                        earlier.c.available_at > now,
                    )
                ),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True, of=outbox)
        ahead: dict[tuple[Any, ...], tuple[list[Envelope], Any]] = {}
        snapshot: dict[int, Any] = {}
        if self.peek_engine is not None:
            if self.bus.batch_preparers:
                read_ahead = self._prepare_ahead(query)
                if read_ahead is None:
                    return 0
                ahead, snapshot_rows = read_ahead
                snapshot = {row.id: row for row in snapshot_rows}
                # rows committed since the snapshot wait for the next round: a run that took them in would not
                # be the run that was prepared, and would read for itself under the lock
                query = query.where(outbox.c.id <= snapshot_rows[-1].id)
            elif not self._outbox_has_due(now):
                return 0
        attempted = 0
        self._after_commit.clear()
        with self.engine.connect() as conn, conn.begin():
            rows = self._claim_locked(conn, query, snapshot)
            if not rows:
                return 0
            # on SQLite the claim ran under the write lock (BEGIN IMMEDIATE): no other worker holds a row, so
            # every earlier pending row of a claimed row's key is in the claim or in backoff (then excluded)
            blocked = self._behind_unclaimed(conn, [row.id for row in rows]) if self.is_postgres else set()
            runs: dict[str, list[Any]] = {}
            for row in rows:
                if row.id not in blocked:
                    runs.setdefault(row.handler, []).append(row)
            done: list[int] = []  # rows of the runs delivered together: completed by one UPDATE at the end
            for run in runs.values():
                if len(run) > 1 and self._deliver_run(conn, run, ahead.get(_run_key(run))):
                    attempted += len(run)
                    done.extend(row.id for row in run)
                    continue
                failed: set[str] = set()  # keys whose row failed: their later rows wait for its retry
                for row in run:
                    if row.key in failed:
                        continue
                    attempted += 1
                    if not self._deliver_one(conn, row):
                        failed.add(row.key)
            if done:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(done))
                    .values(
                        status="done",
                        attempts=outbox.c.attempts + 1,
                        done_at=self.clock.now(),
                        last_error=None,
                    )
                )
        self._committed()
        return attempted

    @staticmethod
    def _claim_locked(conn: Connection, query: Any, snapshot: dict[int, Any]) -> list[Any]:
        """The claim under the write lock. After a claim on a read snapshot, only ids and attempts are read again:
        a row as it was in the snapshot is taken from there (its payload is not decoded twice, and the lock is
        held that much shorter); a row that changed since, or was not in it, is read whole."""
        if not snapshot:
            return list(conn.execute(query).all())
        current = conn.execute(query.with_only_columns(outbox.c.id, outbox.c.attempts)).all()
        changed = [
            id_ for id_, attempts in current if id_ not in snapshot or snapshot[id_].attempts != attempts
        ]
        reread = {}
        if changed:
            reread = {
                row.id: row for row in conn.execute(select(outbox).where(outbox.c.id.in_(changed))).all()
            }
        return [reread[id_] if id_ in reread else snapshot[id_] for id_, _ in current]

    def _prepare_ahead(
        self, query: Any
    ) -> tuple[dict[tuple[Any, ...], tuple[list[Envelope], Any]], list[Any]] | None:
        """The claim on a read snapshot (no write lock), the `prepare` forms of its runs, and the rows it claimed
        (in id order); None if nothing is due. A prepare form that fails is logged and its run done without it."""
        assert self.peek_engine is not None
        prepared: dict[tuple[Any, ...], tuple[list[Envelope], Any]] = {}
        with self.peek_engine.connect() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return None
            runs: dict[str, list[Any]] = {}
            for row in rows:
                if row.handler in self.bus.batch_preparers:
                    runs.setdefault(row.handler, []).append(row)
            if not runs:
                return prepared, list(rows)
            pctx = PrepareContext(conn=conn, clock=self.clock, settings=self.settings, services=self.services)
            for name, run in runs.items():
                if len(run) < 2:
                    continue  # a single row goes to the per-row handler, which prepares nothing
                envelopes = [_envelope(row) for row in run]
                try:
                    prepared[_run_key(run)] = (envelopes, self.bus.batch_preparers[name](envelopes, pctx))
                except Exception:
                    log.warning(
                        "preparing %d rows for %s failed; they are done without",
                        len(run),
                        name,
                        exc_info=True,
                    )
        return prepared, list(rows)

    def _deliver_run(
        self, conn: Connection, run: list[Any], ahead: tuple[list[Envelope], Any] | None = None
    ) -> bool:
        """Delivers rows of one handler together; False (nothing applied) if anything fails. `ahead`: the
        envelopes and what the handler's prepare form made of exactly these rows, read before the lock. The
        caller marks the rows done, with those of the round's other runs, in the same transaction."""
        name = run[0].handler
        handler = self.bus.handlers.get(name)
        if handler is None:
            return False  # one by one, each is dead-lettered with its reason
        batch = self.bus.batch_handlers.get(name)
        ctx = self._context(conn)
        if ahead is not None:  # only handlers with a batch form prepare (Bus.subscribe)
            envelopes, ctx.prepared = ahead
        else:
            envelopes = [_envelope(row) for row in run]
        savepoint = conn.begin_nested()
        try:
            if batch is not None:
                batch(envelopes, ctx)
            else:
                for envelope in envelopes:
                    handler(envelope, ctx)
            ctx.uow.flush_events()
            savepoint.commit()
        except Exception as exc:
            savepoint.rollback()
            log.info(
                "delivering %d rows to %s together failed (%s); delivering one by one", len(run), name, exc
            )
            return False
        self.stats.handled += len(run)
        self.count_delivery("handled", len(run))
        return True

    def _behind_unclaimed(self, conn: Connection, ids: list[int]) -> set[int]:
        """Claimed rows with an earlier pending row of the same (key, handler) outside the claim."""
        row, earlier = aliased(outbox), aliased(outbox)
        query = select(row.c.id).where(
            row.c.id.in_(ids),
            exists().where(
                and_(
                    earlier.c.key == row.c.key,
                    earlier.c.handler == row.c.handler,
                    earlier.c.status == "pending",
                    earlier.c.id < row.c.id,
                    earlier.c.id.not_in(ids),
                )
            ),
        )
        return set(conn.execute(query).scalars().all())

    def _deliver_one(self, conn: Connection, row: Any) -> bool:
        handler = self.bus.handlers.get(row.handler)
        envelope = _envelope(row)
        ctx = self._context(conn)
        savepoint = conn.begin_nested()
        try:
            if handler is None:
                raise LookupError(f"no handler registered as {row.handler!r}")
            handler(envelope, ctx)
            ctx.uow.flush_events()
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(status="done", attempts=row.attempts + 1, done_at=self.clock.now(), last_error=None)
            )
            savepoint.commit()
            self.stats.handled += 1
            self.count_delivery("handled")
            return True
        except Exception as exc:
            savepoint.rollback()
            attempts = row.attempts + 1
            is_dead = attempts >= self.settings.max_attempts or _is_permanent(exc)
            values: dict[str, Any] = {"attempts": attempts, "last_error": _describe(exc)}
            if is_dead:
                values["status"] = "dead"
                self.stats.dead += 1
                self.count_delivery("dead")
                log.error(
                    "dead-lettered %s for %s after %d attempts: %s",
                    row.event_type,
                    row.handler,
                    attempts,
                    exc,
                )
            else:
                values["available_at"] = self.clock.now() + self._retry_delay(attempts)
                self.stats.retried += 1
                self.count_delivery("retried")
                log.warning("%s for %s failed (attempt %d): %s", row.event_type, row.handler, attempts, exc)
            conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
            return False

    def count_delivery(self, outcome: str, count: int = 1) -> None:
        metrics = self.services.get("metrics")
        if metrics is not None:
            metrics.delivered(outcome, count)

    def _retry_delay(self, attempt: int) -> timedelta:
        return timedelta(
            seconds=backoff_s(attempt, base_s=self.settings.retry_base_s, max_s=self.settings.retry_max_s)
        )


def _run_key(run: list[Any]) -> tuple[Any, ...]:
    """The same run: one handler, the same rows at the same attempt (a row retried since is another run)."""
    return (run[0].handler, *((row.id, row.attempts) for row in run))


def _envelope(row: Any) -> Envelope:
    return Envelope(
        event_id=row.event_id,
        event_type=row.event_type,
        key=row.key,
        occurred_at=row.occurred_at,
        payload=row.payload,
        attempt=row.attempts + 1,
    )


class _Run(list[Any]):
    """A list of log rows that can carry a flag."""

    runnable: bool = False


class PermanentError(Exception):
    """Raised by a handler for a failure that retrying cannot fix: the row is dead-lettered at once."""


def _is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentError | LookupError) and not isinstance(exc, KeyError)


def _describe(exc: BaseException) -> str:
    tail = "".join(traceback.format_exception(exc, limit=-3))
    return f"{type(exc).__name__}: {exc}\n{tail}"[:4000]
