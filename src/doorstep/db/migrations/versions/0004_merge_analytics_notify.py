"""Join the analytics change-tracking and the notification throughput/bounce revisions into one line.

Revision ID: 0004_merge
Revises: 0003_analytics, 0003_notify_email_suppressions
"""

from collections.abc import Sequence

revision: str = "0004_merge"
down_revision: str | Sequence[str] | None = ("0003_analytics", "0003_notify_email_suppressions")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
