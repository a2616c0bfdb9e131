from sqlalchemy import BigInteger, Column, Index, String, Table, UniqueConstraint

from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

# The append-only log of every inbound fact, idempotent by (source, message_id). `id` is the log position:
# projections consume the log in this order and can be rebuilt by replaying it.
event_log = Table(
    "event_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),  # segment | aftership | karrio | tracking | twilio | ...
    Column("message_id", String(255), nullable=False),
    Column("type", String(32), nullable=False),  # identify | track | page | ... | tracking_update | message
    Column("name", String(255)),  # track event name, page name
    Column("partition_key", String(255), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),  # corrected for device clock skew
    Column("payload", JSONType, nullable=False),
    # PostgreSQL only: the writing transaction's id (server default pg_current_xact_id()). Ids from a sequence
    # can commit out of order; a reader takes rows in (tx_id, id) order and only from transactions older
    # than every one still running, so a consumer never skips a row that commits late. NULL on SQLite,
    # whose single writer commits ids in order.
    Column("tx_id", BigInteger),
    UniqueConstraint("source", "message_id"),
)

# How far each consumer of the log has got.
log_offsets = Table(
    "log_offsets",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("position", BigId, nullable=False),
    Column("tx_position", BigInteger, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
)

Index("ix_event_log_received_at", event_log.c.received_at)
Index("ix_event_log_tx", event_log.c.tx_id, event_log.c.id)
