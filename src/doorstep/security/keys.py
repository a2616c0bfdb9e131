"""API keys: shown once at creation, stored only as a SHA-256 hash (they are random, so a fast hash is safe)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from doorstep.ids import new_id
from doorstep.security.model import Scope
from doorstep.security.tables import api_keys

PREFIX_LENGTH = 12


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> str:
    """The public lookup part of a key: its kind marker plus the first characters."""
    return key[: 3 + PREFIX_LENGTH]


def create_key(
    conn: Connection, *, kind: str, scopes: list[str], name: str, now: datetime, key: str | None = None
) -> str:
    """Stores a new key and returns it in full; it cannot be read back later."""
    if kind not in ("write", "secret"):
        raise ValueError(f"key kind must be 'write' or 'secret', not {kind!r}")
    if kind == "write":
        scopes = [Scope.INGEST.value]
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(s.value for s in Scope)}")
    key = key or f"{'wk' if kind == 'write' else 'sk'}_{secrets.token_urlsafe(32)}"
    conn.execute(
        insert(api_keys).values(
            id=new_id(),
            prefix=split_key(key),
            key_hash=hash_key(key),
            kind=kind,
            scopes=sorted(set(scopes)),
            name=name,
            created_at=now,
        )
    )
    return key


def find_key(conn: Connection, key: str) -> Any | None:
    """The active key row matching `key`, compared in constant time, or None."""
    row = conn.execute(
        select(api_keys).where(api_keys.c.prefix == split_key(key), api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    return row if secrets.compare_digest(row.key_hash, hash_key(key)) else None
