from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint, text

from doorstep.db.metadata import metadata
from doorstep.db.types import BigId, JSONType, UTCDateTime

# Outbox rows a worker or the NATS relay still has to finish: the condition of the partial per-key index
OUTBOX_OPEN = text("status = 'pending' OR status = 'relayed'")

# One row per (domain event, subscribed handler): each handler's delivery is retried and dead-lettered
# on its own, so a failing notification never re-runs a projection that already succeeded.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("handler", String(100), nullable=False),
    Column("key", String(200), nullable=False),  # customer / order / shipment key: order holds per key
    Column("partition", Integer, nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default="pending"),  # pending | relayed (NATS) | done | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("available_at", UTCDateTime, nullable=False),  # not before: backoff between attempts
    Column("last_error", Text),
    Column("done_at", UTCDateTime),
    UniqueConstraint("event_id", "handler"),
    # the claim: pending rows in id order, so a claim reads about as many rows as it takes (0003_notify)
    Index("ix_outbox_due", "status", "id"),
    # "is an earlier row of this key still pending?": asked for every row a worker claims. Partial: only rows not
    # yet handled are in it, so it stays a few pages however long the outbox grows, and a commit rewrites those
    # few pages instead of a random leaf per event. Over all rows it was the largest share of the WAL at 1,000
    # events/s (2.3 of the 6.5 pages an event wrote). Queries must spell a status this condition implies
    # (status = 'pending', or the whole OR): SQLite uses a partial index only when the query implies its WHERE.
    Index(
        "ix_outbox_key_order",
        "key",
        "handler",
        "id",
        sqlite_where=OUTBOX_OPEN,
        postgresql_where=OUTBOX_OPEN,
    ),
)

# Leases on partitions: a worker owns a partition for `lease_until`, processes its rows in id order.
bus_partitions = Table(
    "bus_partitions",
    metadata,
    Column("stream", String(50), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("owner", String(100)),
    Column("lease_until", UTCDateTime),
)

# Handlers fed by a broker (NATS) record what they handled, so a redelivery changes nothing.
handled_events = Table(
    "handled_events",
    metadata,
    Column("handler", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("handled_at", UTCDateTime, nullable=False),
)

# Scheduled work (survey due, reminder, quiet hours end): fired by the scheduler as domain events.
timers = Table(
    "timers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("fired_at", UTCDateTime),
    Column("cancelled_at", UTCDateTime),
    Index("ix_timers_due", "fired_at", "due_at"),
)
