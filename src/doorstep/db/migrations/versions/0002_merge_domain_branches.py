"""Join the domain branches (each domain added its tables on its own branch) into one line.

Revision ID: 0002_merge
Revises: assistant_0003, lastmile_0002, notify_0002, pipeline_0002, tracking_0002
"""

from collections.abc import Sequence

revision: str = "0002_merge"
down_revision: str | Sequence[str] | None = (
    "assistant_0003",
    "lastmile_0002",
    "notify_0002",
    "pipeline_0002",
    "tracking_0002",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
