"""notify: the outbox claim walks pending rows in id order

The claim asks for the first N pending rows by id. With (status, partition, id) the pending rows come out
partition by partition, so every claim sorted the whole pending backlog and ran the per-key order check on
each of its rows: a claim cost grew with the backlog (32 ms at 6,000 pending rows). (status, id) hands them
out in id order, so a claim reads about N rows whatever the backlog. Nothing filters on partition.

Revision ID: 0003_notify_outbox_due
Revises: 0002_merge
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_notify_outbox_due"
down_revision: str | Sequence[str] | None = "0002_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["status", "id"], unique=False)
        batch_op.drop_index("ix_outbox_claim")


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_claim", ["status", "partition", "id"], unique=False)
        batch_op.drop_index("ix_outbox_due")
