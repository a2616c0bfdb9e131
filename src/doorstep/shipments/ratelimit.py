"""Fixed-window rate limits kept in the database, so every API process counts the same hits."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from doorstep.shipments.tables import rate_limit_hits


def hit(conn: Connection, *, key: str, limit: int, window_s: int, now: datetime) -> bool:
    """Counts one hit on `key`; True while the window's count is within `limit`."""
    epoch = int(now.timestamp())
    window_start = datetime.fromtimestamp(epoch - epoch % window_s, tz=now.tzinfo)
    stmt = pg_insert(rate_limit_hits) if conn.dialect.name == "postgresql" else sqlite_insert(rate_limit_hits)
    conn.execute(
        stmt.values(key=key, window_start=window_start, count=1).on_conflict_do_update(
            index_elements=["key", "window_start"], set_={"count": rate_limit_hits.c.count + 1}
        )
    )
    count = conn.execute(
        select(rate_limit_hits.c.count).where(
            rate_limit_hits.c.key == key, rate_limit_hits.c.window_start == window_start
        )
    ).scalar_one()
    return int(count) <= limit


def prune(conn: Connection, *, before: datetime) -> int:
    return conn.execute(
        delete(rate_limit_hits).where(rate_limit_hits.c.window_start < before - timedelta(seconds=0))
    ).rowcount
