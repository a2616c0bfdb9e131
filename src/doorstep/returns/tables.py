from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

returns = Table(
    "returns",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(30), nullable=False),  # requested | approved | rejected | label_issued | ...
    Column("resolution", String(20), nullable=False),  # refund | exchange | store_credit
    Column("method", String(20), nullable=False),  # drop_off | courier_pickup | keep_item
    Column("reason_code", String(50), nullable=False),  # e.g. fit.too_small
    Column("reason_detail", Text),
    Column("refund_minor", BigInteger),
    Column("currency", String(3)),
    Column("label_tracking_number", String(100)),
    Column("exchange_order_id", String(36)),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("steps", JSONType, nullable=False),  # [{"step": "approved", "at": ...}, ...]
)
Index("ix_returns_order_id", returns.c.order_id)
Index("ix_returns_updated_at", returns.c.updated_at)  # the analytics replica reads changes by it

return_lines = Table(
    "return_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("return_id", String(36), ForeignKey("returns.id", ondelete="CASCADE"), nullable=False),
    Column("order_line_id", BigId, ForeignKey("order_lines.id", ondelete="CASCADE"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("reason_code", String(50)),
    Column("condition", String(30)),
)
