"""notify: replies to senders no profile holds; STOP kept by address for them

Revision ID: 0005_notify_anonymous_replies
Revises: 0004_merge
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import doorstep.db.types

revision: str = "0005_notify_anonymous_replies"
down_revision: str | Sequence[str] | None = "0004_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column("conversation_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_conversation_id_conversations"),
            "conversations",
            ["conversation_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index("ix_notifications_conversation", ["conversation_id"], unique=False)
    op.create_table(
        "address_optouts",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("keyword", sa.String(length=20), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "address", name=op.f("pk_address_optouts")),
    )


def downgrade() -> None:
    op.drop_table("address_optouts")
    op.execute("DELETE FROM notifications WHERE customer_id IS NULL")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_conversation")
        batch_op.drop_constraint("fk_notifications_conversation_id_conversations", type_="foreignkey")
        batch_op.drop_column("conversation_id")
        batch_op.alter_column("customer_id", existing_type=sa.String(length=36), nullable=False)
