"""outbox: the per-key order index holds only rows not yet handled

`ix_outbox_key_order` answered "is an earlier row of this key still pending?" from an index over every outbox
row, done ones included. Keys are customer, order and shipment ids, so each event's rows landed on a random
leaf of an index that grows with the outbox, and every commit rewrote that leaf: at 1,000 events/s on SQLite
this index was the largest share of the WAL (2.3 of the 6.5 pages an event wrote). Partial on the open statuses,
it holds only the rows in flight (a few pages), which the commits of a busy second share.

Revision ID: 0006_outbox_open_key_index
Revises: 0005_notify_anonymous_replies
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_outbox_open_key_index"
down_revision: str | Sequence[str] | None = "0005_notify_anonymous_replies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status = 'pending' OR status = 'relayed'"


def upgrade() -> None:
    op.drop_index("ix_outbox_key_order", table_name="outbox")
    op.create_index(
        "ix_outbox_key_order",
        "outbox",
        ["key", "handler", "id"],
        unique=False,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_key_order", table_name="outbox")
    op.create_index("ix_outbox_key_order", "outbox", ["key", "handler", "status", "id"], unique=False)
