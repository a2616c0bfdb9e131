"""foundation: every domain's core tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23 10:46:20.895576
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import doorstep.db.types

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("prefix", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("scopes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "bus_partitions",
        sa.Column("stream", sa.String(length=50), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("stream", "partition", name=op.f("pk_bus_partitions")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("locale", sa.String(length=20), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("region", sa.String(length=100), nullable=True),
        sa.Column("postcode", sa.String(length=20), nullable=True),
        sa.Column(
            "preferred_channels", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("traits", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("first_seen_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["customers.id"], name=op.f("fk_customers_merged_into_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_email", ["email"], unique=False)
        batch_op.create_index("ix_customers_phone", ["phone"], unique=False)

    op.create_table(
        "event_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("partition_key", sa.String(length=255), nullable=False),
        sa.Column("received_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("tx_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_log")),
        sa.UniqueConstraint("source", "message_id", name=op.f("uq_event_log_source_message_id")),
    )
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.create_index("ix_event_log_received_at", ["received_at"], unique=False)
        batch_op.create_index("ix_event_log_tx", ["tx_id", "id"], unique=False)

    op.create_table(
        "handled_events",
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("handled_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("handler", "event_id", name=op.f("pk_handled_events")),
    )
    op.create_table(
        "log_offsets",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("position", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("tx_position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_log_offsets")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("occurred_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("done_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", "handler", name=op.f("uq_outbox_event_id_handler")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_claim", ["status", "partition", "id"], unique=False)

    op.create_table(
        "products",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("category", sa.String(length=200), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_table(
        "timers",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("due_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("fired_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_timers_dedupe_key")),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_due", ["fired_at", "due_at"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "consents",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("topic", sa.String(length=20), nullable=False),
        sa.Column("is_granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_consents_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "channel", "topic", name=op.f("pk_consents")),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("channel_address", sa.String(length=320), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("assigned_to", sa.String(length=36), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("intent", sa.String(length=50), nullable=True),
        sa.Column("contact_reason", sa.String(length=50), nullable=True),
        sa.Column("cause", sa.String(length=50), nullable=True),
        sa.Column("cause_owner", sa.String(length=20), nullable=True),
        sa.Column("handoff_reason", sa.String(length=50), nullable=True),
        sa.Column("is_contained", sa.Boolean(), nullable=True),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        sa.Column("urgency", sa.Integer(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.Column("state", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("opened_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_reply_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("handed_off_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_conversations_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_customer", ["customer_id"], unique=False)
        batch_op.create_index("ix_conversations_status", ["status", "opened_at"], unique=False)

    op.create_table(
        "customer_events",
        sa.Column("log_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("occurred_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.String(length=100), nullable=True),
        sa.Column("campaign_source", sa.String(length=100), nullable=True),
        sa.Column("product_id", sa.String(length=100), nullable=True),
        sa.Column("order_external_id", sa.String(length=100), nullable=True),
        sa.Column("properties", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_events_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("log_id", name=op.f("pk_customer_events")),
    )
    with op.batch_alter_table("customer_events", schema=None) as batch_op:
        batch_op.create_index("ix_customer_events_customer", ["customer_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_customer_events_occurred_at", ["occurred_at"], unique=False)

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("csat", sa.Integer(), nullable=True),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("topic", sa.String(length=20), nullable=True),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("submitted_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_feedback_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("external_id", name=op.f("uq_feedback_external_id")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_feedback_submitted_at", ["submitted_at"], unique=False)

    op.create_table(
        "identities",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("first_seen_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source_message_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_identities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
        sa.UniqueConstraint("kind", "value", name=op.f("uq_identities_kind_value")),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index("ix_identities_customer_id", ["customer_id"], unique=False)

    op.create_table(
        "identity_links",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("other_customer_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_identity_links_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_links")),
    )
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.create_index("ix_identity_links_customer_id", ["customer_id"], unique=False)

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("shipment_id", sa.String(length=36), nullable=True),
        sa.Column("trigger", sa.String(length=50), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("locale", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("suppression_reason", sa.String(length=50), nullable=True),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("fallback_of", sa.String(length=36), nullable=True),
        sa.Column("scheduled_for", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("read_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_notifications_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_customer", ["customer_id", "created_at"], unique=False)
        batch_op.create_index("ix_notifications_provider_id", ["provider_message_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("shipping_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("coupon", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=30), nullable=True),
        sa.Column("campaign_source", sa.String(length=100), nullable=True),
        sa.Column("ship_name", sa.String(length=200), nullable=True),
        sa.Column("ship_line1", sa.String(length=300), nullable=True),
        sa.Column("ship_city", sa.String(length=100), nullable=True),
        sa.Column("ship_postcode", sa.String(length=20), nullable=True),
        sa.Column("ship_region", sa.String(length=100), nullable=True),
        sa.Column("ship_country", sa.String(length=2), nullable=True),
        sa.Column("promised_from", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("promised_to", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("placed_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("properties", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_orders_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("external_id", name=op.f("uq_orders_external_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_orders_placed_at", ["placed_at"], unique=False)

    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("author", sa.String(length=10), nullable=False),
        sa.Column("author_id", sa.String(length=36), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("intent", sa.String(length=50), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("meta", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "channel", "provider_message_id", name=op.f("uq_messages_channel_provider_message_id")
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_conversation", ["conversation_id", "created_at"], unique=False)

    op.create_table(
        "order_lines",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("category", sa.String(length=200), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
        sa.UniqueConstraint("order_id", "line_no", name=op.f("uq_order_lines_order_id_line_no")),
    )
    op.create_table(
        "order_steps",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.String(length=30), nullable=False),
        sa.Column("occurred_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_steps_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("order_id", "step", name=op.f("pk_order_steps")),
    )
    op.create_table(
        "returns",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("resolution", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("reason_code", sa.String(length=50), nullable=False),
        sa.Column("reason_detail", sa.Text(), nullable=True),
        sa.Column("refund_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("label_tracking_number", sa.String(length=100), nullable=True),
        sa.Column("exchange_order_id", sa.String(length=36), nullable=True),
        sa.Column("requested_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("steps", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_returns_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_returns_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returns")),
    )
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.create_index("ix_returns_order_id", ["order_id"], unique=False)

    op.create_table(
        "shipments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("carrier", sa.String(length=50), nullable=False),
        sa.Column("tracking_number", sa.String(length=100), nullable=False),
        sa.Column("service", sa.String(length=50), nullable=True),
        sa.Column("is_return", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("subtag", sa.String(length=50), nullable=True),
        sa.Column("origin_region", sa.String(length=100), nullable=True),
        sa.Column("destination_region", sa.String(length=100), nullable=True),
        sa.Column("destination_postcode", sa.String(length=20), nullable=True),
        sa.Column("promised_from", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("promised_to", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("predicted_from", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("predicted_to", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("predicted_confidence", sa.Float(), nullable=True),
        sa.Column("delay_reason", sa.String(length=200), nullable=True),
        sa.Column("dispatched_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_attempt_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_scan_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_location", sa.String(length=200), nullable=True),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_shipments_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint("carrier", "tracking_number", name=op.f("uq_shipments_carrier_tracking_number")),
    )
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.create_index("ix_shipments_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_shipments_tracking_number", ["tracking_number"], unique=False)

    op.create_table(
        "delivery_changes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("shipment_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("requested_by", sa.String(length=30), nullable=False),
        sa.Column("created_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("carrier_status", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_delivery_changes_shipment_id_shipments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_changes")),
    )
    with op.batch_alter_table("delivery_changes", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_changes_shipment", ["shipment_id"], unique=False)

    op.create_table(
        "proofs_of_delivery",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("shipment_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_name", sa.String(length=200), nullable=True),
        sa.Column("photo_path", sa.String(length=500), nullable=True),
        sa.Column("signature_path", sa.String(length=500), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("delivered_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("driver_id", sa.String(length=36), nullable=True),
        sa.Column("detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_proofs_of_delivery_shipment_id_shipments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proofs_of_delivery")),
    )
    op.create_table(
        "return_lines",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("return_id", sa.String(length=36), nullable=False),
        sa.Column("order_line_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reason_code", sa.String(length=50), nullable=True),
        sa.Column("condition", sa.String(length=30), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["order_lines.id"],
            name=op.f("fk_return_lines_order_line_id_order_lines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["return_id"], ["returns.id"], name=op.f("fk_return_lines_return_id_returns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_lines")),
    )
    op.create_table(
        "tracking_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("shipment_id", sa.String(length=36), nullable=True),
        sa.Column("carrier", sa.String(length=50), nullable=False),
        sa.Column("tracking_number", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("subtag", sa.String(length=50), nullable=True),
        sa.Column("raw_code", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("region", sa.String(length=100), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("postcode", sa.String(length=20), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("received_at", doorstep.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_tracking_events_shipment_id_shipments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_tracking_events_dedupe_key")),
    )
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.create_index("ix_tracking_events_number", ["carrier", "tracking_number"], unique=False)
        batch_op.create_index("ix_tracking_events_shipment", ["shipment_id", "occurred_at"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # see doorstep.ingest.tables: readers order the log by the writing transaction
        op.execute(
            "ALTER TABLE event_log ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint)"
        )


def downgrade() -> None:
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.drop_index("ix_tracking_events_shipment")
        batch_op.drop_index("ix_tracking_events_number")

    op.drop_table("tracking_events")
    op.drop_table("return_lines")
    op.drop_table("proofs_of_delivery")
    with op.batch_alter_table("delivery_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_changes_shipment")

    op.drop_table("delivery_changes")
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.drop_index("ix_shipments_tracking_number")
        batch_op.drop_index("ix_shipments_order_id")

    op.drop_table("shipments")
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.drop_index("ix_returns_order_id")

    op.drop_table("returns")
    op.drop_table("order_steps")
    op.drop_table("order_lines")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_conversation")

    op.drop_table("messages")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))

    op.drop_table("web_sessions")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_placed_at")
        batch_op.drop_index("ix_orders_customer_id")

    op.drop_table("orders")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_provider_id")
        batch_op.drop_index("ix_notifications_customer")

    op.drop_table("notifications")
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_links_customer_id")

    op.drop_table("identity_links")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index("ix_identities_customer_id")

    op.drop_table("identities")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_submitted_at")
        batch_op.drop_index("ix_feedback_order_id")

    op.drop_table("feedback")
    with op.batch_alter_table("customer_events", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_events_occurred_at")
        batch_op.drop_index("ix_customer_events_customer")

    op.drop_table("customer_events")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_status")
        batch_op.drop_index("ix_conversations_customer")

    op.drop_table("conversations")
    op.drop_table("consents")
    op.drop_table("users")
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_due")

    op.drop_table("timers")
    op.drop_table("products")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_claim")

    op.drop_table("outbox")
    op.drop_table("log_offsets")
    op.drop_table("handled_events")
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.drop_index("ix_event_log_tx")
        batch_op.drop_index("ix_event_log_received_at")

    op.drop_table("event_log")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_phone")
        batch_op.drop_index("ix_customers_email")

    op.drop_table("customers")
    op.drop_table("bus_partitions")
    op.drop_table("api_keys")
