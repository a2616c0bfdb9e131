"""Fixtures shared by integration test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from tests.support_dashboard import known_world

from doorstep.analytics.replica import Replica
from doorstep.db.engine import create_db_engine


@pytest.fixture
def store(database_url: str) -> Iterator[tuple[str, Engine, dict[str, str]]]:
    """The dashboard's known world in a fresh store: (url, engine, the ids of its named rows)."""
    engine = create_db_engine(database_url)
    ids = known_world(engine)
    yield database_url, engine, ids
    engine.dispose()


@pytest.fixture
def replica(store: tuple[str, Engine, dict[str, str]]) -> Iterator[Replica]:
    """An analytics replica of `store`, synced once."""
    r = Replica(store[0])
    r.sync()
    yield r
    r.close()
