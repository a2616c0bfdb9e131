"""assistant: actions customers confirmed in a conversation (run through the domain commands afterwards)

Revision ID: assistant_0003
Revises: assistant_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import doorstep.db.types

revision: str = "assistant_0003"
down_revision: str | Sequence[str] | None = "assistant_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assistant_actions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("request", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_assistant_actions_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_actions")),
    )
    with op.batch_alter_table("assistant_actions", schema=None) as batch_op:
        batch_op.create_index("ix_assistant_actions_status", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assistant_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_assistant_actions_status")
    op.drop_table("assistant_actions")
