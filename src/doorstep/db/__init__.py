from doorstep.db.engine import create_db_engine, normalise_url
from doorstep.db.metadata import metadata

__all__ = ["create_db_engine", "metadata", "normalise_url"]
