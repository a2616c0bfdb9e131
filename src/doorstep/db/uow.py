"""The unit of work: one database transaction, plus the domain events recorded during it, which are written
to the outbox in that same transaction (state and outbox land together, or neither does)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, insert

from doorstep.bus.tables import outbox

if TYPE_CHECKING:
    from doorstep.bus.messages import DomainEvent
    from doorstep.bus.registry import Bus
    from doorstep.clock import Clock

# Repositories by attribute name, imported lazily so a domain's repository lives in its own folder:
# `uow.shipments` -> ShipmentRepository(uow.conn).
REPOSITORIES: dict[str, str] = {
    "customers": "doorstep.customers.repository:CustomerRepository",
    "orders": "doorstep.orders.repository:OrderRepository",
    "shipments": "doorstep.shipments.repository:ShipmentRepository",
    "returns": "doorstep.returns.repository:ReturnRepository",
    "notifications": "doorstep.notifications.repository:NotificationRepository",
    "conversations": "doorstep.conversations.repository:ConversationRepository",
    "feedback": "doorstep.feedback.repository:FeedbackRepository",
}


class UnitOfWork:
    """Use as a context manager; nothing is committed unless `commit()` is called.

    >>> with UnitOfWork(engine, bus=bus, clock=clock) as uow:
    ...     shipment = uow.shipments.get_or_raise(shipment_id)
    ...     shipment.reschedule(slot, now=clock.now())
    ...     uow.collect(shipment.events)
    ...     uow.commit()
    """

    def __init__(
        self,
        engine: Engine | None,
        *,
        bus: Bus,
        clock: Clock,
        conn: Connection | None = None,
        after_commit: list[Callable[[], None]] | None = None,
    ):
        self.engine = engine
        self.bus = bus
        self.clock = clock
        self._external_conn = conn
        self.conn: Connection = conn  # type: ignore[assignment]
        self._events: list[DomainEvent] = []
        self._repos: dict[str, Any] = {}
        self.published: list[DomainEvent] = []  # after commit: what was written to the outbox
        # run after the commit; with a connection from outside, by its owner after its own commit
        self.after_commit_hooks: list[Callable[[], None]] = after_commit if after_commit is not None else []
        self._wrote_outbox = False

    def __enter__(self) -> UnitOfWork:
        if self._external_conn is None:
            assert self.engine is not None
            # The transaction begins with the first statement (SQLAlchemy's autobegin), not here: what the caller
            # builds before it (events, rows, their JSON) is built before the write lock is taken (BEGIN
            # IMMEDIATE on SQLite), which every other writer of every process waits for. Every statement still
            # runs in the one transaction, so what is read and what is written stay one consistent unit.
            self.conn = self.engine.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._external_conn is None:
            if self.conn.in_transaction():
                self.conn.rollback()
            self.conn.close()
        self._events.clear()
        self._repos.clear()
        if self._external_conn is None:
            self.after_commit_hooks.clear()

    def __getattr__(self, name: str) -> Any:
        target = REPOSITORIES.get(name)
        if target is None:
            raise AttributeError(name)
        repo = self._repos.get(name)
        if repo is None:
            module, _, cls = target.partition(":")
            repo = getattr(importlib.import_module(module), cls)(self.conn)
            self._repos[name] = repo
        return repo

    def publish(self, event: DomainEvent) -> None:
        self._events.append(event)

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Runs `hook` once the transaction has committed: a wake-up for a loop that should see what this
        unit of work wrote (woken earlier, it would look before the rows are visible and go back to sleep)."""
        self.after_commit_hooks.append(hook)

    def collect(self, events: list[DomainEvent]) -> None:
        """Takes the events an aggregate recorded, leaving its list empty."""
        self._events.extend(events)
        events.clear()

    def flush_events(self) -> None:
        """Writes the recorded events to the outbox, one row per subscribed handler."""
        if not self._events:
            return
        now = self.clock.now()
        rows = []
        for event in self._events:
            key = event.key
            partition = self.bus.partition_of(key)
            payload = event.payload()
            for handler in self.bus.handlers_for(event.type_name):
                rows.append(
                    {
                        "event_id": event.event_id,
                        "event_type": event.type_name,
                        "handler": handler,
                        "key": key,
                        "partition": partition,
                        "payload": payload,
                        "occurred_at": event.occurred_at,
                        "created_at": now,
                        "status": "pending",
                        "attempts": 0,
                        "available_at": now,
                    }
                )
        if rows:
            self.conn.execute(insert(outbox), rows)
            self._wrote_outbox = True
        self.published.extend(self._events)
        self._events.clear()

    def commit(self) -> None:
        self.flush_events()
        if self._external_conn is None:
            self.conn.commit()
            hooks = list(self.after_commit_hooks)
            if self._wrote_outbox:
                hooks.extend(self.bus.outbox_listeners)
            self.after_commit_hooks.clear()
            self._wrote_outbox = False
            for hook in hooks:
                hook()

    def rollback(self) -> None:
        self._events.clear()
        if self._external_conn is None:
            self.conn.rollback()
            self.after_commit_hooks.clear()
            self._wrote_outbox = False
