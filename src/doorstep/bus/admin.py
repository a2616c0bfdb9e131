"""Operations on the pipeline: dead letters, replay, stats. Used by the CLI and the admin API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, select, table, update

from doorstep.bus.registry import Bus
from doorstep.bus.tables import outbox
from doorstep.clock import Clock
from doorstep.ingest.tables import event_log, log_offsets


def list_dead(conn: Connection, *, limit: int = 100) -> list[Any]:
    return list(
        conn.execute(select(outbox).where(outbox.c.status == "dead").order_by(outbox.c.id).limit(limit)).all()
    )


def retry_dead(conn: Connection, *, clock: Clock, ids: list[int] | None = None) -> int:
    """Puts dead rows back in the queue with a fresh attempt budget."""
    stmt = update(outbox).where(outbox.c.status == "dead")
    if ids:
        stmt = stmt.where(outbox.c.id.in_(ids))
    return conn.execute(stmt.values(status="pending", attempts=0, available_at=clock.now())).rowcount or 0


def stats(conn: Connection) -> dict[str, int]:
    by_status: dict[str, int] = {
        status: count
        for status, count in conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))
    }
    last = conn.execute(select(func.max(event_log.c.id))).scalar() or 0
    done = (
        conn.execute(select(log_offsets.c.position).where(log_offsets.c.consumer == "projector")).scalar()
        or 0
    )
    return {
        "log_events": int(conn.execute(select(func.count()).select_from(event_log)).scalar_one()),
        "log_lag": max(0, int(last) - int(done)),
        "outbox_pending": int(by_status.get("pending", 0)),
        "outbox_relayed": int(by_status.get("relayed", 0)),
        "outbox_done": int(by_status.get("done", 0)),
        "outbox_dead": int(by_status.get("dead", 0)),
    }


class ReplayWouldDelete(Exception):
    """Emptying the projections would cascade into rows the log cannot rebuild (conversations, returns ...)."""

    def __init__(self, at_risk: dict[str, int]):
        self.at_risk = at_risk
        listing = ", ".join(f"{name} ({count} rows)" for name, count in at_risk.items())
        super().__init__(
            f"replaying would delete rows the log cannot rebuild, through foreign keys: {listing}. "
            "Replay into a copy of the database, or pass --force if losing them is intended."
        )


def _tables_to_empty(bus: Bus, sources: list[str] | None) -> list[str]:
    names: list[str] = []
    for source, tables in bus.projection_tables.items():
        if sources and source not in sources:
            continue
        names.extend(name for name in reversed(tables) if name not in names)
    return names


def rows_at_risk(conn: Connection, *, bus: Bus, sources: list[str] | None = None) -> dict[str, int]:
    """Tables outside the projections that reference them (directly or through each other) and hold rows."""
    from doorstep.db.metadata import load_all_tables

    doomed = set(_tables_to_empty(bus, sources))
    tables = load_all_tables().tables
    found = True
    referencing: set[str] = set()
    while found:  # follow cascades: a table referencing a doomed one is doomed too
        found = False
        for name, t in tables.items():
            if name in doomed or name in referencing:
                continue
            if any(fk.column.table.name in doomed | referencing for fk in t.foreign_keys):
                referencing.add(name)
                found = True
    at_risk = {}
    for name in sorted(referencing):
        count = int(conn.execute(select(func.count()).select_from(tables[name])).scalar_one())
        if count:
            at_risk[name] = count
    return at_risk


def reset_projections(
    conn: Connection, *, bus: Bus, sources: list[str] | None = None, force: bool = False
) -> list[str]:
    """Empties the tables the log projections own and rewinds the projector, so the worker rebuilds them.

    Tables are emptied children first (the order each projection registered them in, reversed). Refuses
    (ReplayWouldDelete) when other domains' rows hang off those tables, unless `force`.
    """
    if not force:
        at_risk = rows_at_risk(conn, bus=bus, sources=sources)
        if at_risk:
            raise ReplayWouldDelete(at_risk)
    emptied: list[str] = []
    for source, tables in bus.projection_tables.items():
        if sources and source not in sources:
            continue
        for name in reversed(tables):
            if name not in emptied:
                conn.execute(delete(table(name)))  # names come from code (bus.on_log), never from input
                emptied.append(name)
    conn.execute(
        update(log_offsets).where(log_offsets.c.consumer == "projector").values(position=0, tx_position=0)
    )
    return emptied
