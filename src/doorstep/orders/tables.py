from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, UniqueConstraint

from doorstep.clock import utcnow
from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

# Money is stored in minor units (cents) beside its ISO 4217 currency; the domain works in Decimal.
orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("external_id", String(100), nullable=False, unique=True),  # the shop's order number
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(30), nullable=False),  # see orders.model.OrderStep
    Column("currency", String(3), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("shipping_minor", BigInteger, nullable=False, default=0),
    Column("tax_minor", BigInteger, nullable=False, default=0),
    Column("discount_minor", BigInteger, nullable=False, default=0),
    Column("coupon", String(100)),
    Column("channel", String(30)),  # web | app | marketplace
    Column("campaign_source", String(100)),
    Column("ship_name", String(200)),
    Column("ship_line1", String(300)),
    Column("ship_city", String(100)),
    Column("ship_postcode", String(20)),
    Column("ship_region", String(100)),
    Column("ship_country", String(2)),
    Column("promised_from", UTCDateTime),
    Column("promised_to", UTCDateTime),
    Column("placed_at", UTCDateTime, nullable=False),
    Column("properties", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_orders_customer_id", orders.c.customer_id)
Index("ix_orders_placed_at", orders.c.placed_at)
Index("ix_orders_updated_at", orders.c.updated_at)

order_lines = Table(
    "order_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("product_id", String(100), nullable=False),
    Column("sku", String(100)),
    Column("name", String(300)),
    Column("category", String(200)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    UniqueConstraint("order_id", "line_no"),
)

# The order chain: each step once, timestamped (placed, paid, picked, packed, dispatched, out_for_delivery,
# delivered, invoiced, follow_up_sent, cancelled, refunded).
order_steps = Table(
    "order_steps",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("step", String(30), primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("detail", JSONType),
    # when the row was written, by the wall clock (not the domain's): the analytics replica's change marker
    Column("recorded_at", UTCDateTime, default=utcnow, onupdate=utcnow),
)

Index("ix_order_steps_recorded_at", order_steps.c.recorded_at)

products = Table(
    "products",
    metadata,
    Column("id", String(100), primary_key=True),  # the shop's product id
    Column("sku", String(100)),
    Column("name", String(300)),
    Column("category", String(200)),
    Column("price_minor", BigInteger),
    Column("currency", String(3)),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Invoices issued after delivery with proof: one per order, the PDF under var_dir/invoices.
invoices = Table(
    "invoices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("number", String(40), nullable=False, unique=True),
    Column("path", String(500), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
)
