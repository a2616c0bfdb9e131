"""Runs Alembic migrations from code: `doorstep migrate`, `make run` and the test fixtures all come here."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from doorstep.db.engine import normalise_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is ConfigParser interpolation: escape it in passwords
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raises if the tables in code and the migrated schema differ."""
    command.check(alembic_config(database_url))
