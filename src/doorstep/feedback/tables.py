from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from doorstep.clock import utcnow
from doorstep.db.metadata import metadata
from doorstep.db.types import UTCDateTime

feedback = Table(
    "feedback",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE")),
    Column("order_id", String(36)),
    Column("kind", String(10), nullable=False),  # survey | review
    Column("csat", Integer),  # 1..5
    Column("nps", Integer),  # 0..10
    Column("rating", Integer),  # review stars 1..5
    Column("comment", Text),
    Column("topic", String(20)),  # delivery | returns | product | service | price | other
    Column("source", String(50), nullable=False),  # survey_page | csv | segment | ...
    Column("external_id", String(100), unique=True),
    Column("submitted_at", UTCDateTime, nullable=False),
    # when the row was written, by the wall clock (not the domain's): the analytics replica's change marker
    Column("recorded_at", UTCDateTime, default=utcnow, onupdate=utcnow),
)
Index("ix_feedback_order_id", feedback.c.order_id)
Index("ix_feedback_submitted_at", feedback.c.submitted_at)
Index("ix_feedback_recorded_at", feedback.c.recorded_at)
