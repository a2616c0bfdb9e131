"""The message bus's routing tables: which handlers react to which domain events, and which functions
project which inbound log sources. Explicit tables, filled by each domain's `register(bus)`."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from doorstep.bus.messages import DomainEvent, Envelope
    from doorstep.clock import Clock
    from doorstep.db.uow import UnitOfWork
    from doorstep.settings import Settings


@dataclass
class HandlerContext:
    """What a handler gets besides the event: the open unit of work (same transaction as the outbox row's
    completion), the clock, settings and the adapters wired in app.py."""

    uow: UnitOfWork
    clock: Clock
    settings: Settings
    services: dict[str, Any]
    # what the handler's `prepare` form computed for exactly this run, outside the write transaction (see
    # Bus.subscribe); None when nothing was prepared: the batch form then reads for itself
    prepared: Any = None


@dataclass
class PrepareContext:
    """What a `prepare` form gets: a read-only connection (on SQLite a snapshot taken without the write lock),
    the clock, settings and services. It must not write."""

    conn: Connection
    clock: Clock
    settings: Settings
    services: dict[str, Any]


EventHandler = Callable[["Envelope", HandlerContext], None]
# (envelopes of one handler in outbox order, context) -> None: the same effects as calling the handler on each
# envelope in turn, with fewer statements (IN lookups, executemany inserts)
EventBatchHandler = Callable[[list["Envelope"], HandlerContext], None]
# (envelopes of one run, read context) -> what the batch form needs that can be read ahead: the reads and the
# computing whose result stays right however late it is applied (a customer's locale, a journey's rules, an
# order's placing time), never a read the writes depend on for consistency (a status compared before update)
EventBatchPreparer = Callable[[list["Envelope"], "PrepareContext"], Any]
# (log row as a mapping, context) -> None. Rows have: id, source, message_id, type, name, partition_key,
# received_at, occurred_at, payload.
LogHandler = Callable[[Any, HandlerContext], None]


@dataclass
class Bus:
    handlers: dict[str, EventHandler] = field(default_factory=dict)
    # optional batch forms of handlers, by handler name (see EventBatchHandler); the worker falls back to the
    # per-row handler when a batch fails, so only the bad row is retried
    batch_handlers: dict[str, EventBatchHandler] = field(default_factory=dict)
    # optional read-ahead of batch forms, by handler name (see EventBatchPreparer and Bus.subscribe)
    batch_preparers: dict[str, EventBatchPreparer] = field(default_factory=dict)
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    log_handlers: dict[str, LogHandler] = field(default_factory=dict)
    # optional batch forms: fn(rows, ctx) applies a run of consecutive rows of one source with one set of
    # statements, exactly as the per-row handler would one by one (the worker falls back to it on error)
    log_batch_handlers: dict[str, Callable[[list[Any], HandlerContext], Any]] = field(default_factory=dict)
    # tables each log source's projection owns: emptied by `doorstep events replay`
    projection_tables: dict[str, list[str]] = field(default_factory=dict)
    partitions: int = 16
    # called after a unit of work of this process commits outbox rows: a worker running in the process
    # starts on them at once instead of at its next poll
    outbox_listeners: list[Callable[[], None]] = field(default_factory=list)

    def subscribe(
        self,
        event: type[DomainEvent] | str,
        name: str,
        handler: EventHandler,
        *,
        batch: EventBatchHandler | None = None,
        prepare: EventBatchPreparer | None = None,
    ) -> None:
        """Routes `event` to `handler`, registered under a stable `name` (it is stored on outbox rows).

        `batch`, when given, takes a run of envelopes (all of this handler, in outbox order) and must leave
        exactly what calling `handler` on each in turn would; the worker uses it for runs of two or more.

        `prepare`, with `batch` only, reads ahead for a run: on SQLite the worker calls it on a read snapshot
        before it takes the single write lock, and hands its result to `batch` as `ctx.prepared` when the run
        it then claims under the lock is the same rows. `batch` must give the same effects with or without
        it (ctx.prepared is None on PostgreSQL, in tests that call it directly, and when preparing failed).
        """
        if prepare is not None and batch is None:
            raise ValueError(f"handler {name!r}: a prepare form needs a batch form to use what it prepares")
        event_type = event if isinstance(event, str) else event.type_name
        existing = self.handlers.get(name)
        if existing is not None and existing is not handler:
            raise ValueError(f"handler name {name!r} is already taken by {existing!r}")
        existing_batch = self.batch_handlers.get(name)
        if batch is not None and existing_batch is not None and existing_batch is not batch:
            raise ValueError(f"handler name {name!r} already has another batch form")
        self.handlers[name] = handler
        if batch is not None:
            self.batch_handlers[name] = batch
        if prepare is not None:
            self.batch_preparers[name] = prepare
        names = self.subscriptions.setdefault(event_type, [])
        if name not in names:
            names.append(name)

    def on_log(
        self,
        source: str,
        handler: LogHandler,
        *,
        tables: list[str] | None = None,
        batch: Callable[[list[Any], HandlerContext], Any] | None = None,
    ) -> None:
        """Projects inbound log rows of `source` (segment, aftership, ...) into domain state."""
        if source in self.log_handlers:
            raise ValueError(f"log source {source!r} already has a projection")
        self.log_handlers[source] = handler
        if batch is not None:
            self.log_batch_handlers[source] = batch
        self.projection_tables[source] = list(tables or [])

    def handlers_for(self, event_type: str) -> list[str]:
        return self.subscriptions.get(event_type, [])

    def partition_of(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions
