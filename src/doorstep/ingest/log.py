"""Appending to the inbound event log: one statement per batch, idempotent by (source, message_id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from doorstep.db.dialect import insert_ignore
from doorstep.ingest.tables import event_log


@dataclass(frozen=True)
class LogEntry:
    source: str
    message_id: str
    type: str
    name: str | None
    partition_key: str
    occurred_at: datetime
    payload: dict[str, Any]


def append(conn: Connection, entries: list[LogEntry], *, received_at: datetime) -> int:
    """Appends entries not yet in the log; returns how many were new. The caller commits."""
    if not entries:
        return 0
    rows = [
        {
            "source": e.source,
            "message_id": e.message_id,
            "type": e.type,
            "name": e.name,
            "partition_key": e.partition_key,
            "received_at": received_at,
            "occurred_at": e.occurred_at,
            "payload": e.payload,
        }
        for e in entries
    ]
    stmt = insert_ignore(conn, event_log, index_elements=["source", "message_id"]).returning(event_log.c.id)
    return len(conn.execute(stmt, rows).all())  # rowcount is unreliable for batched inserts; RETURNING is not
