"""analytics: change tracking for the dashboard's replica

Indexes on updated_at where a table has one (orders, shipments, conversations, customers, returns), and a
`recorded_at` column (set by SQLAlchemy on insert and update, indexed) on the two tables the replica reads that
had no change marker: order_steps and feedback. The replica's sync reads only rows changed since its last
watermark, so without these it would scan whole tables on every sync.

Revision ID: 0003_analytics
Revises: 0002_merge
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from doorstep.db.types import UTCDateTime

revision: str = "0003_analytics"
down_revision: str | Sequence[str] | None = "0002_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPDATED_AT = ("orders", "shipments", "conversations", "customers", "returns")
RECORDED_AT = ("order_steps", "feedback")


def upgrade() -> None:
    for table in UPDATED_AT:
        op.create_index(f"ix_{table}_updated_at", table, ["updated_at"], unique=False)
    for table in RECORDED_AT:
        # nullable and without a server default: SQLite adds it in place (no table rebuild); rows that
        # existed before are read by the replica's initial build, which takes everything
        op.add_column(table, sa.Column("recorded_at", UTCDateTime(), nullable=True))
        op.create_index(f"ix_{table}_recorded_at", table, ["recorded_at"], unique=False)


def downgrade() -> None:
    for table in RECORDED_AT:
        op.drop_index(f"ix_{table}_recorded_at", table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("recorded_at")
    for table in UPDATED_AT:
        op.drop_index(f"ix_{table}_updated_at", table_name=table)
