"""notify: addresses whose email bounced for good

Revision ID: 0003_notify_email_suppressions
Revises: 0003_notify_outbox_due
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import doorstep.db.types

revision: str = "0003_notify_email_suppressions"
down_revision: str | Sequence[str] | None = "0003_notify_outbox_due"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_suppressions",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_email_suppressions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_email_suppressions")),
    )
    with op.batch_alter_table("email_suppressions", schema=None) as batch_op:
        batch_op.create_index("ix_email_suppressions_customer_id", ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_suppressions", schema=None) as batch_op:
        batch_op.drop_index("ix_email_suppressions_customer_id")
    op.drop_table("email_suppressions")
