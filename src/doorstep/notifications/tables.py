from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    # None only for a conversation's reply to a sender not linked to a profile (see conversation_id)
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE")),
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
    # the sender's claim: a row is worked on by one sender until the lease runs out
    Column("lease_owner", String(100)),
    Column("lease_until", UTCDateTime),
    Column("topic", String(20)),  # service | marketing (None = service)
    Column("event_occurred_at", UTCDateTime),  # when the domain event that caused it happened
    # a reply's conversation: erasing (or purging) the conversation erases its replies
    Column("conversation_id", String(36), ForeignKey("conversations.id", ondelete="CASCADE")),
)
Index("ix_notifications_customer", notifications.c.customer_id, notifications.c.created_at)
Index("ix_notifications_provider_id", notifications.c.provider_message_id)
Index("ix_notifications_due", notifications.c.status, notifications.c.scheduled_for)
Index("ix_notifications_conversation", notifications.c.conversation_id)

# The journey definitions (YAML text as edited, plus the parsed form). One row per journey name; the
# default journey ships in the package and is used until someone saves another.
journeys = Table(
    "journeys",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("source", Text, nullable=False),  # YAML as edited
    Column("definition", JSONType, nullable=False),  # parsed and validated
    Column("version", Integer, nullable=False),
    Column("updated_by", String(200)),
    Column("updated_at", UTCDateTime, nullable=False),
)

# What a customer chose beyond consent: channel order, quiet hours, cap.
notification_preferences = Table(
    "notification_preferences",
    metadata,
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_order", JSONType),  # e.g. ["whatsapp", "email"]; None = the customer's profile order
    Column("quiet_start", String(5)),  # "21:00" local; None = journey default
    Column("quiet_end", String(5)),
    Column("daily_cap", Integer),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Addresses on channels that are not in the profile (Messenger PSID, webhook URL), and when the customer
# last wrote on each channel (WhatsApp and Messenger allow free text only within 24 hours of that).
channel_identities = Table(
    "channel_identities",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("address", String(500), nullable=False),
    Column("last_inbound_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("channel", "address"),
)
Index("ix_channel_identities_customer", channel_identities.c.customer_id, channel_identities.c.channel)

# Every hand-off to a provider, with its outcome: the audit behind a message's status.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("notification_id", String(36), ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(20), nullable=False),  # sent | transient | permanent
    Column("http_status", Integer),
    Column("provider_message_id", String(200)),
    Column("error", Text),
    Column("retry_after_s", Integer),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
)
Index("ix_delivery_attempts_notification", delivery_attempts.c.notification_id)

# Provider callbacks already applied (Messenger mids, WhatsApp status ids...), so a redelivery is a no-op.
provider_receipts = Table(
    "provider_receipts",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
)

# Addresses whose mail bounced for good (a delivery status notification with Action: failed): no more email goes
# to them. Kept under the customer the bounced message was for, so erasing the customer removes the row.
email_suppressions = Table(
    "email_suppressions",
    metadata,
    Column("address", String(320), primary_key=True),  # lower case
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("reason", Text, nullable=False),  # "5.1.1 smtp; 550 5.1.1 user unknown"
    Column("notification_id", String(36)),  # the message that bounced
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_email_suppressions_customer_id", "customer_id"),
)

# STOP (and START) from a phone number no profile holds: its consent has no customer to live on, so it is kept by
# address. Replies to that sender are suppressed until they text START.
address_optouts = Table(
    "address_optouts",
    metadata,
    Column("channel", String(20), primary_key=True),  # sms | whatsapp
    Column("address", String(320), primary_key=True),
    Column("keyword", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
