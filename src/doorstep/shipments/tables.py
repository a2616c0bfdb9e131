from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

shipments = Table(
    "shipments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE")),
    Column("carrier", String(50), nullable=False),  # slug: dhl, ups, dpd, ...
    Column("tracking_number", String(100), nullable=False),
    Column("service", String(50)),
    Column("is_return", Boolean, nullable=False, default=False),
    Column("status", String(30), nullable=False),  # Pending | InfoReceived | InTransit | ... | Expired
    Column("subtag", String(50)),
    Column("origin_region", String(100)),
    Column("destination_region", String(100)),
    Column("destination_postcode", String(20)),
    Column("promised_from", UTCDateTime),
    Column("promised_to", UTCDateTime),
    Column("predicted_from", UTCDateTime),
    Column("predicted_to", UTCDateTime),
    Column("predicted_confidence", Float),
    Column("delay_reason", String(200)),
    Column("dispatched_at", UTCDateTime),
    Column("first_attempt_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("last_scan_at", UTCDateTime),
    Column("last_location", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # tracking_0002: matching, prediction detail and detection state
    Column("order_ref", String(100)),  # the shop's order number as a carrier webhook named it
    Column("predicted_at", UTCDateTime),  # the expected moment inside the predicted window
    Column("predicted_by", String(20)),  # model | baseline | carrier
    Column("carrier_estimate", UTCDateTime),  # the carrier's own estimated delivery, when sent
    Column("status_since", UTCDateTime),
    Column("pickup_deadline", UTCDateTime),
    Column("scan_count", Integer, nullable=False, server_default="0"),
    Column("alerts", JSONType),  # detection events already emitted (each fires once)
    UniqueConstraint("carrier", "tracking_number"),
)
Index("ix_shipments_order_id", shipments.c.order_id)
Index("ix_shipments_updated_at", shipments.c.updated_at)  # the analytics replica reads changes by it
Index("ix_shipments_order_ref", shipments.c.order_ref)
Index("ix_shipments_status", shipments.c.status, shipments.c.last_scan_at)
Index("ix_shipments_tracking_number", shipments.c.tracking_number)

# The timeline, ordered by occurred_at. Scans for unknown tracking numbers are kept (shipment_id NULL)
# and attached when the shipment appears.
tracking_events = Table(
    "tracking_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("shipment_id", String(36), ForeignKey("shipments.id", ondelete="CASCADE")),
    Column("carrier", String(50), nullable=False),
    Column("tracking_number", String(100), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("status", String(30), nullable=False),
    Column("subtag", String(50)),
    Column("raw_code", String(100)),
    Column("message", Text),
    Column("city", String(100)),
    Column("region", String(100)),
    Column("country", String(2)),
    Column("postcode", String(20)),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("source", String(32), nullable=False),
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_tracking_events_shipment", tracking_events.c.shipment_id, tracking_events.c.occurred_at)
Index("ix_tracking_events_number", tracking_events.c.carrier, tracking_events.c.tracking_number)

proofs_of_delivery = Table(
    "proofs_of_delivery",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("shipment_id", String(36), ForeignKey("shipments.id", ondelete="CASCADE"), nullable=False),
    Column("recipient_name", String(200)),
    Column("photo_path", String(500)),
    Column("signature_path", String(500)),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("delivered_at", UTCDateTime, nullable=False),
    Column("driver_id", String(36)),
    Column("detail", JSONType),
)

# Changes the customer asked for (slot, redirect, instructions), validated, pushed to the carrier.
delivery_changes = Table(
    "delivery_changes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("shipment_id", String(36), ForeignKey("shipments.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(30), nullable=False),  # slot | pickup_point | safe_place | neighbour | instructions
    Column("detail", JSONType, nullable=False),
    Column("requested_by", String(30), nullable=False),  # customer | assistant | agent
    Column("created_at", UTCDateTime, nullable=False),
    Column("carrier_status", String(20), nullable=False, default="pending"),  # pending | sent | failed
)
Index("ix_delivery_changes_shipment", delivery_changes.c.shipment_id)

# ---- last mile: slots, driver rounds, outbound carrier webhooks, tracking-page rate limits ----------------

# The capacity calendar: one row per (carrier, region, window); booking takes one unit atomically
# (UPDATE ... WHERE booked < capacity), so two customers never get the last unit.
delivery_slots = Table(
    "delivery_slots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("carrier", String(50), nullable=False),
    Column("region", String(100), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("booked", Integer, nullable=False, default=0),
    UniqueConstraint("carrier", "region", "starts_at"),
)
Index(
    "ix_delivery_slots_lookup", delivery_slots.c.carrier, delivery_slots.c.region, delivery_slots.c.starts_at
)

# The slot a shipment currently holds (at most one).
slot_bookings = Table(
    "slot_bookings",
    metadata,
    Column("shipment_id", String(36), ForeignKey("shipments.id", ondelete="CASCADE"), primary_key=True),
    Column("slot_id", String(36), ForeignKey("delivery_slots.id", ondelete="CASCADE"), nullable=False),
    Column("booked_at", UTCDateTime, nullable=False),
)

# A driver's round: which stops, in which order, on which day.
driver_assignments = Table(
    "driver_assignments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("driver_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("shipment_id", String(36), ForeignKey("shipments.id", ondelete="CASCADE"), nullable=False),
    Column("route_date", Date, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("status", String(20), nullable=False),  # assigned | departed | delivered | failed
    Column("eta_from", UTCDateTime),
    Column("eta_to", UTCDateTime),
    Column("departed_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("failure_reason", String(50)),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("shipment_id", "route_date"),
)
Index("ix_driver_assignments_driver", driver_assignments.c.driver_id, driver_assignments.c.route_date)

# Outbound webhooks to the carrier (delivery changes): durable, retried with backoff by a sender loop.
carrier_webhook_deliveries = Table(
    "carrier_webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("change_id", String(36), ForeignKey("delivery_changes.id", ondelete="CASCADE"), nullable=False),
    Column("shipment_id", String(36), nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes signed and sent
    Column("status", String(20), nullable=False),  # pending | sent | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("response_status", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("change_id"),
)
Index(
    "ix_carrier_webhook_due",
    carrier_webhook_deliveries.c.status,
    carrier_webhook_deliveries.c.next_attempt_at,
)

# Fixed-window counters for public lookups (tracking page by order number): shared by every API process.
rate_limit_hits = Table(
    "rate_limit_hits",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("window_start", UTCDateTime, primary_key=True),
    Column("count", Integer, nullable=False),
)
