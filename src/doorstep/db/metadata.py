"""The one MetaData every domain's tables.py registers on, with a naming convention so migrations are stable."""

from sqlalchemy import MetaData

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def load_all_tables() -> MetaData:
    """Imports every domain's tables module so `metadata` knows the whole schema (for Alembic)."""
    import importlib

    for module in TABLE_MODULES:
        importlib.import_module(module)
    return metadata


TABLE_MODULES = [
    "doorstep.bus.tables",
    "doorstep.security.tables",
    "doorstep.ingest.tables",
    "doorstep.customers.tables",
    "doorstep.orders.tables",
    "doorstep.shipments.tables",
    "doorstep.returns.tables",
    "doorstep.notifications.tables",
    "doorstep.conversations.tables",
    "doorstep.feedback.tables",
]
