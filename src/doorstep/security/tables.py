from sqlalchemy import Boolean, Column, ForeignKey, String, Table

from doorstep.db.metadata import metadata
from doorstep.db.types import JSONType, UTCDateTime

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(20), nullable=False),  # admin | analyst | agent | driver
    Column("password_hash", String(200), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Only a hash of each key is stored; `prefix` is the public part used to find the row.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("prefix", String(40), nullable=False, unique=True),
    Column("key_hash", String(128), nullable=False),
    Column("kind", String(10), nullable=False),  # write | secret
    Column("scopes", JSONType, nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(128), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
