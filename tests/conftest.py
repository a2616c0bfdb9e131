"""Shared fixtures. Storage and pipeline tests take `database_url`, which runs them on SQLite always and on
PostgreSQL when DOORSTEP_TEST_POSTGRES_URL is set (CI sets it)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from doorstep.clock import FixedClock
from doorstep.db.engine import normalise_url
from doorstep.db.metadata import load_all_tables
from doorstep.db.migrate import upgrade
from doorstep.settings import Settings

POSTGRES_URL = os.environ.get("DOORSTEP_TEST_POSTGRES_URL", "")
NATS_URL = os.environ.get("DOORSTEP_TEST_NATS_URL", "")
REQUIRE_SERVICES = os.environ.get("DOORSTEP_TEST_REQUIRE_SERVICES") == "1"

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres" in item.keywords and not POSTGRES_URL:
            if REQUIRE_SERVICES:
                raise pytest.UsageError(
                    "DOORSTEP_TEST_POSTGRES_URL is required (DOORSTEP_TEST_REQUIRE_SERVICES=1)"
                )
            item.add_marker(pytest.mark.skip(reason="set DOORSTEP_TEST_POSTGRES_URL to run on PostgreSQL"))
        if "nats" in item.keywords and not NATS_URL:
            if REQUIRE_SERVICES:
                raise pytest.UsageError(
                    "DOORSTEP_TEST_NATS_URL is required (DOORSTEP_TEST_REQUIRE_SERVICES=1)"
                )
            item.add_marker(
                pytest.mark.skip(reason="set DOORSTEP_TEST_NATS_URL to run against NATS JetStream")
            )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "doorstep.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as raw:  # fold the WAL into the file so one copy is complete
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    url = normalise_url(POSTGRES_URL)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(POSTGRES_URL)
    return POSTGRES_URL


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(normalise_url(url))
    names = ", ".join(f'"{t.name}"' for t in load_all_tables().sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite, and PostgreSQL when configured."""
    if request.param == "sqlite":
        path = tmp_path / "doorstep.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        _truncate_postgres(url)
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty SQLite database, for tests that need not run on both stores."""
    path = tmp_path / "doorstep.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "var_dir": tmp_path / "var",
        "database_url": database_url,
        "in_process_worker": False,
        "retry_base_s": 0.0,
        "retry_max_s": 0.0,
        "log_json": False,
        "secret_key": "test-secret-key-with-enough-length-0123456789",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
