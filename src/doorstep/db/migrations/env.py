"""Alembic environment: the URL comes from Doorstep's settings (or the caller's config), never from alembic.ini."""

from __future__ import annotations

import sqlite3
from typing import Any

from alembic import context
from sqlalchemy import Connection

from doorstep.db.engine import create_db_engine
from doorstep.db.metadata import load_all_tables

config = context.config
target_metadata = load_all_tables()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from doorstep.settings import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_db_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    # SQLite alters a table by copying it and dropping the original; with foreign keys on, that DROP would
    # delete (ON DELETE CASCADE) every child row. Off for the migration (a no-op inside a transaction, so
    # set on the DBAPI connection before one begins), checked and back on after.
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        _migrate(connection)
        return
    raw: Any = connection.connection.driver_connection
    before = _versions(raw)
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        _migrate(connection)
    finally:
        # checking every table is a full scan: only when a revision ran
        broken = raw.execute("PRAGMA foreign_key_check").fetchall() if _versions(raw) != before else []
        raw.execute("PRAGMA foreign_keys=ON")
    if broken:
        raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")


def _versions(raw: Any) -> set[str]:
    try:
        return {r[0] for r in raw.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.OperationalError:  # no version table yet
        return set()


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copy
        compare_type=True,
        user_module_prefix="doorstep.db.types.",
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
