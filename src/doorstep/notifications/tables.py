from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from doorstep.db.metadata import metadata
from doorstep.db.types import JSONType, UTCDateTime

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("order_id", String(36)),
    Column("shipment_id", String(36)),
    Column("trigger", String(50), nullable=False),  # order_confirmed | predicted_late | ...
    Column("channel", String(20), nullable=False),  # email | sms | whatsapp | messenger | webhook | outbox
    Column("locale", String(20), nullable=False),
    # queued | sent | delivered | read | failed | suppressed
    Column("status", String(20), nullable=False),
    Column("suppression_reason", String(50)),  # opted_out | quiet_hours | daily_cap | no_channel | ...
    Column("dedupe_key", String(300), nullable=False, unique=True),  # one message per state change
    Column("to_address", String(320)),
    Column("subject", String(300)),
    Column("body_text", Text),
    Column("body_html", Text),
    Column("provider_message_id", String(200)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("fallback_of", String(36)),
    Column("scheduled_for", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("read_at", UTCDateTime),
    Column("failed_at", UTCDateTime),
    Column("detail", JSONType),
)
Index("ix_notifications_customer", notifications.c.customer_id, notifications.c.created_at)
Index("ix_notifications_provider_id", notifications.c.provider_message_id)
