"""Appending to the inbound event log: one statement per batch, idempotent by (source, message_id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from doorstep.db.dialect import insert_ignore
from doorstep.db.types import json_default
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
    if conn.dialect.name == "sqlite":
        return _append_sqlite(conn, entries, received_at=received_at)
    if conn.dialect.name == "postgresql":
        return _append_postgres(conn, entries, received_at=received_at)
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


# The hot path of every ingest request: one multi-row statement built by hand, skipping SQLAlchemy's
# per-value processing (the stored values are the same: UTC timestamps, text on SQLite; JSON(B) payloads).
_COLUMNS = "source, message_id, type, name, partition_key, received_at, occurred_at, payload"
_ROWS_PER_STATEMENT = 1000  # 8 parameters a row, well under SQLite's 32766


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _append_sqlite(conn: Connection, entries: list[LogEntry], *, received_at: datetime) -> int:
    received = _sqlite_time(received_at)
    new = 0
    for start in range(0, len(entries), _ROWS_PER_STATEMENT):
        chunk = entries[start : start + _ROWS_PER_STATEMENT]
        params: list[Any] = []
        for e in chunk:
            params += (
                e.source,
                e.message_id,
                e.type,
                e.name,
                e.partition_key,
                received,
                _sqlite_time(e.occurred_at),
                orjson.dumps(e.payload, default=json_default).decode(),
            )
        sql = (
            f"INSERT INTO event_log ({_COLUMNS}) VALUES "
            + ",".join(["(?,?,?,?,?,?,?,?)"] * len(chunk))
            + " ON CONFLICT (source, message_id) DO NOTHING RETURNING id"
        )
        new += len(conn.exec_driver_sql(sql, tuple(params)).all())
    return new


# PostgreSQL: the whole batch as one JSON parameter, unpacked by the server (a third of the client CPU of
# binding 8 parameters a row).
_PG_APPEND = (
    f"INSERT INTO event_log ({_COLUMNS}) SELECT {_COLUMNS} FROM jsonb_to_recordset(%s::jsonb) AS r("
    "source text, message_id text, type text, name text, partition_key text, received_at timestamptz, "
    "occurred_at timestamptz, payload jsonb) ON CONFLICT (source, message_id) DO NOTHING RETURNING id"
)


def _append_postgres(conn: Connection, entries: list[LogEntry], *, received_at: datetime) -> int:
    for e in entries:
        if e.occurred_at.tzinfo is None:
            raise ValueError(f"naive datetime {e.occurred_at!r}: pass timezone-aware UTC")
    if received_at.tzinfo is None:
        raise ValueError(f"naive datetime {received_at!r}: pass timezone-aware UTC")
    document = orjson.dumps(
        [
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
        ],
        default=json_default,
    ).decode()
    return len(conn.exec_driver_sql(_PG_APPEND, (document,)).all())
