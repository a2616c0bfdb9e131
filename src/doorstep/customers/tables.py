from sqlalchemy import Boolean, Column, ForeignKey, Index, String, Table, Text, UniqueConstraint

from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

customers = Table(
    "customers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("merged_into", String(36), ForeignKey("customers.id")),  # set when this profile was merged
    Column("email", String(320)),
    Column("phone", String(32)),  # E.164
    Column("name", String(200)),
    Column("locale", String(20)),
    Column("timezone", String(64)),
    Column("country", String(2)),
    Column("region", String(100)),
    Column("postcode", String(20)),
    Column("preferred_channels", JSONType, nullable=False),  # e.g. ["whatsapp", "email"]
    Column("traits", JSONType, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_customers_email", customers.c.email)
Index("ix_customers_updated_at", customers.c.updated_at)  # the analytics replica reads changes by it
Index("ix_customers_phone", customers.c.phone)

# Each identifier belongs to exactly one profile.
identities = Table(
    "identities",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column(
        "kind", String(20), nullable=False
    ),  # anonymous_id | user_id | email | phone | whatsapp | messenger
    Column("value", String(320), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("source_message_id", String(255)),
    UniqueConstraint("kind", "value"),
)
Index("ix_identities_customer_id", identities.c.customer_id)

# Why identities belong together: every link and merge, with the rule and the message that caused it.
identity_links = Table(
    "identity_links",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(20), nullable=False),  # linked | merged | refused
    Column("kind", String(20), nullable=False),
    Column("value", String(320), nullable=False),
    Column("other_customer_id", String(36)),
    Column("reason", Text, nullable=False),
    Column("message_id", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_identity_links_customer_id", identity_links.c.customer_id)

consents = Table(
    "consents",
    metadata,
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(20), primary_key=True),  # email | sms | whatsapp | messenger
    Column("topic", String(20), primary_key=True),  # service | marketing
    Column("is_granted", Boolean, nullable=False),
    Column("source", String(50), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A lean projection of the log per customer, for the profile's recent events and journey analytics.
customer_events = Table(
    "customer_events",
    metadata,
    Column("log_id", BigId, primary_key=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("name", String(255)),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("session_id", String(100)),
    Column("campaign_source", String(100)),
    Column("product_id", String(100)),
    Column("order_external_id", String(100)),
    Column("properties", JSONType),
)
Index("ix_customer_events_customer", customer_events.c.customer_id, customer_events.c.occurred_at)
Index("ix_customer_events_occurred_at", customer_events.c.occurred_at)
