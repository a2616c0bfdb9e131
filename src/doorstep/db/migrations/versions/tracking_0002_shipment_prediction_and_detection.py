"""shipments: order reference for late matching, prediction detail, detection state

Revision ID: tracking_0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from doorstep.db.types import JSONType, UTCDateTime

revision = "tracking_0002"
down_revision = "0001"
branch_labels = ("tracking",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_ref", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("predicted_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("predicted_by", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("carrier_estimate", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("status_since", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("pickup_deadline", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("scan_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("alerts", JSONType, nullable=True))
        batch_op.create_index("ix_shipments_order_ref", ["order_ref"], unique=False)
        batch_op.create_index("ix_shipments_status", ["status", "last_scan_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.drop_index("ix_shipments_status")
        batch_op.drop_index("ix_shipments_order_ref")
        for name in (
            "alerts",
            "scan_count",
            "pickup_deadline",
            "status_since",
            "carrier_estimate",
            "predicted_by",
            "predicted_at",
            "order_ref",
        ):
            batch_op.drop_column(name)
