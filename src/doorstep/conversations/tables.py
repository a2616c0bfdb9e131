from sqlalchemy import (
    Boolean,
    Column,
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
from doorstep.db.types import JSONType, UTCDateTime

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(36), ForeignKey("customers.id", ondelete="CASCADE")),
    Column("channel", String(20), nullable=False),  # chat | email | sms | whatsapp | messenger
    Column("channel_address", String(320)),  # phone, email, PSID, widget session
    Column("status", String(20), nullable=False),  # bot | waiting | assigned | resolved
    Column("assigned_to", String(36)),
    Column("order_id", String(36)),  # the order under discussion
    Column("intent", String(50)),  # last understood intent
    Column("contact_reason", String(50)),  # recorded on resolve, pre-filled from the intent
    Column("cause", String(50)),  # likely upstream cause: late | failed_attempt | damaged | ...
    Column("cause_owner", String(20)),  # carrier | warehouse | payments | product | service
    Column("handoff_reason", String(50)),
    Column("is_contained", Boolean),  # resolved without a person
    Column("is_verified", Boolean, nullable=False, default=False),
    Column("urgency", Integer, nullable=False, default=0),
    Column("summary", Text),
    Column("satisfaction", Integer),
    Column("state", JSONType, nullable=False),  # dialogue state: slots, pending confirmation
    Column("opened_at", UTCDateTime, nullable=False),
    Column("first_reply_at", UTCDateTime),
    Column("handed_off_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_conversations_customer", conversations.c.customer_id)
Index("ix_conversations_updated_at", conversations.c.updated_at)  # the analytics replica reads changes by it
Index("ix_conversations_status", conversations.c.status, conversations.c.opened_at)

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("direction", String(10), nullable=False),  # inbound | outbound
    Column("author", String(10), nullable=False),  # customer | bot | agent | system
    Column("author_id", String(36)),
    Column("channel", String(20), nullable=False),
    Column("body", Text, nullable=False),
    Column("provider_message_id", String(200)),
    Column("intent", String(50)),
    Column("confidence", Float),
    Column("created_at", UTCDateTime, nullable=False),
    Column("meta", JSONType),
    UniqueConstraint("channel", "provider_message_id"),
)
Index("ix_messages_conversation", messages.c.conversation_id, messages.c.created_at)

# Checks of order number + email/postcode, counted per order number and per channel address to rate limit
# guessing. Rows older than the window are pruned when new attempts are recorded.
verification_attempts = Table(
    "verification_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(400), nullable=False),  # order:<NUMBER> | address:<channel address>
    Column("is_success", Boolean, nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
)
Index("ix_verification_attempts_key", verification_attempts.c.key, verification_attempts.c.attempted_at)

# Actions the customer confirmed in a conversation (reschedule, redirect, return, cancel, invoice). They run
# outside the inbound projection's transaction, through the same domain commands as the tracking page, each in
# its own transaction; then the assistant confirms the outcome in the conversation.
assistant_actions = Table(
    "assistant_actions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("conversation_id", String(36), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("request", JSONType, nullable=False),
    Column("status", String(20), nullable=False),  # pending | running | done | refused | needs_person
    Column("attempts", Integer, nullable=False, default=0),
    Column("result", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)
Index("ix_assistant_actions_status", assistant_actions.c.status, assistant_actions.c.created_at)
