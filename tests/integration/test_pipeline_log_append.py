"""The ingest hot path: appending to the event log (hand-built statements on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from doorstep.db.engine import create_db_engine
from doorstep.ingest.log import LogEntry, append
from doorstep.ingest.tables import event_log

AT = datetime(2026, 11, 23, 10, 0, 0, 120, tzinfo=timezone(timedelta(hours=2)))


def _entry(message_id: str, **payload: object) -> LogEntry:
    return LogEntry("segment", message_id, "track", "Order Completed", "user:u1", AT, dict(payload))


def test_append_stores_new_rows_once_and_counts_them(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            first = append(
                conn,
                [_entry("m1", total=Decimal("12.50"), note='é "q"'), _entry("m1"), _entry("m2")],
                received_at=AT,
            )
        with engine.begin() as conn:
            again = append(conn, [_entry("m2"), _entry("m3")], received_at=AT)
        with engine.connect() as conn:
            rows = conn.execute(select(event_log).order_by(event_log.c.id)).all()
    finally:
        engine.dispose()

    assert (first, again) == (2, 1)
    assert [r.message_id for r in rows] == ["m1", "m2", "m3"]
    m1 = rows[0]
    assert m1.payload == {"total": "12.50", "note": 'é "q"'}  # the first copy wins
    assert (m1.source, m1.type, m1.name, m1.partition_key) == (
        "segment",
        "track",
        "Order Completed",
        "user:u1",
    )
    assert m1.occurred_at == m1.received_at == datetime(2026, 11, 23, 8, 0, 0, 120, tzinfo=UTC)
    assert m1.occurred_at.tzinfo is UTC


def test_append_handles_batches_larger_than_one_statement(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            new = append(conn, [_entry(f"m{n}") for n in range(2500)], received_at=AT)
        with engine.connect() as conn:
            ids = conn.execute(select(event_log.c.message_id)).scalars().all()
    finally:
        engine.dispose()

    assert new == 2500
    assert sorted(ids) == sorted(f"m{n}" for n in range(2500))


def test_append_refuses_naive_times_and_stores_nothing(database_url: str) -> None:
    engine = create_db_engine(database_url)
    naive = LogEntry("segment", "m1", "track", None, "user:u1", datetime(2026, 11, 23, 10, 0), {})
    try:
        with pytest.raises(ValueError, match="naive datetime"), engine.begin() as conn:
            append(conn, [_entry("m0"), naive], received_at=AT)
        with engine.connect() as conn:
            assert conn.execute(select(event_log)).all() == []
    finally:
        engine.dispose()
