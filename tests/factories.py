"""Small factories for test data."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from doorstep.security.keys import create_key
from doorstep.security.sessions import create_session
from doorstep.security.users import create_user

_seq = itertools.count(1)


def write_key(engine: Engine, *, now: datetime) -> str:
    with engine.begin() as conn:
        return create_key(conn, kind="write", scopes=[], name="test write key", now=now)


def secret_key(engine: Engine, *, now: datetime, scopes: list[str]) -> str:
    with engine.begin() as conn:
        return create_key(conn, kind="secret", scopes=scopes, name="test secret key", now=now)


def staff_user(
    engine: Engine, *, now: datetime, role: str = "admin", email: str | None = None
) -> dict[str, Any]:
    email = email or f"{role}{next(_seq)}@example.com"
    password = "correct horse battery"
    with engine.begin() as conn:
        user_id = create_user(conn, email=email, password=password, role=role, now=now)
        token, csrf = create_session(conn, user_id=user_id, now=now)
    return {"id": user_id, "email": email, "password": password, "session": token, "csrf": csrf}


def segment_event(kind: str = "track", **fields: Any) -> dict[str, Any]:
    n = next(_seq)
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"msg-{n}",
        "anonymousId": f"anon-{n}",
        "timestamp": "2026-11-23T08:59:00Z",
        "sentAt": "2026-11-23T08:59:00Z",
    }
    if kind == "track":
        event["event"] = "Product Viewed"
        event["properties"] = {"product_id": "p1"}
    event.update(fields)
    return event


def customer_row(*, now: datetime, **fields: Any) -> dict[str, Any]:
    """The values of a customers row with the required columns filled; `fields` override."""
    row: dict[str, Any] = {
        "name": "Maya Jones",
        "preferred_channels": [],
        "traits": {},
        "first_seen_at": now,
        "last_seen_at": now,
        "created_at": now,
        "updated_at": now,
    }
    row.update(fields)
    return row
