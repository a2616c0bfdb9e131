"""pipeline: index for the outbox's per-key order check

Revision ID: pipeline_0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "pipeline_0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("pipeline",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_key_order", ["key", "handler", "status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_key_order")
