"""Scheduled work on the `timers` table: schedule a domain event for later, and fire the due ones.

A timer's `kind` is a domain event type name (FollowUpDue ...); its payload is that event's fields without
`occurred_at`, which is the firing time. Firing publishes the event through the outbox in the same
transaction that marks the timer fired, so a timer fires at most once even with several schedulers.

>>> schedule(conn, key="order:o1", kind="FollowUpDue", due_at=due, payload={...}, dedupe_key="follow_up:o1")
>>> fire_due(ctx)  # from a loop: returns how many fired
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from doorstep.bus.messages import EVENT_TYPES
from doorstep.bus.tables import timers
from doorstep.db.dialect import insert_ignore

if TYPE_CHECKING:
    from doorstep.context import AppContext

log = logging.getLogger("doorstep.timers")

FIRE_BATCH = 200


def schedule(
    conn: Connection,
    *,
    key: str,
    kind: str,
    due_at: datetime,
    payload: dict[str, Any],
    dedupe_key: str,
) -> bool:
    """Schedules `kind` at `due_at`; a second call with the same dedupe_key changes nothing (returns False)."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"timer kind {kind!r} is not a known domain event type")
    result = conn.execute(
        insert_ignore(conn, timers, index_elements=["dedupe_key"]).values(
            key=key, kind=kind, due_at=due_at, payload=payload, dedupe_key=dedupe_key
        )
    )
    return bool(result.rowcount)


def cancel(conn: Connection, *, dedupe_key: str, now: datetime) -> bool:
    result = conn.execute(
        update(timers)
        .where(
            timers.c.dedupe_key == dedupe_key, timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None)
        )
        .values(cancelled_at=now)
    )
    return bool(result.rowcount)


def fire_due(ctx: AppContext, *, limit: int = FIRE_BATCH) -> int:
    """Publishes every due, unfired, uncancelled timer as its domain event; returns how many fired."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        query = (
            select(timers)
            .where(timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None), timers.c.due_at <= now)
            .order_by(timers.c.due_at, timers.c.id)
            .limit(limit)
        )
        if uow.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = uow.conn.execute(query).all()
        for row in rows:
            event_class = EVENT_TYPES.get(row.kind)
            if event_class is None:
                log.error("timer %s has unknown kind %r: cancelled", row.id, row.kind)
                uow.conn.execute(update(timers).where(timers.c.id == row.id).values(cancelled_at=now))
                continue
            event = event_class.from_payload({**row.payload, "occurred_at": now.isoformat()})
            uow.publish(event)
            uow.conn.execute(update(timers).where(timers.c.id == row.id).values(fired_at=now))
        uow.commit()
    if rows and "wake_worker" in ctx.services:
        ctx.services["wake_worker"]()
    return len(rows)


class RepeatingTask:
    """A daemon thread calling `fn()` every `interval_s` until closed (services return it from `start`)."""

    def __init__(self, name: str, fn: Callable[[], Any], *, interval_s: float):
        self.fn = fn
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.fn()
            except Exception:
                log.exception("%s failed", self.thread.name)
            self.stop.wait(self.interval_s)

    def start(self) -> RepeatingTask:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
