"""Staff web sessions: a random token in a HttpOnly cookie, stored hashed, with a CSRF token per session."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from doorstep.security.tables import users, web_sessions

SESSION_COOKIE = "doorstep_session"
SESSION_TTL = timedelta(hours=12)  # a working day plus margin


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(conn: Connection, *, user_id: str, now: datetime) -> tuple[str, str]:
    """Returns (cookie token, csrf token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    conn.execute(
        insert(web_sessions).values(
            token_hash=_hash(token),
            user_id=user_id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    return token, csrf


def load_session(conn: Connection, *, token: str, now: datetime) -> Any | None:
    """The session joined with its user, if the token is valid, unexpired and the user active."""
    row = conn.execute(
        select(
            web_sessions.c.csrf_token,
            web_sessions.c.expires_at,
            users.c.id,
            users.c.email,
            users.c.name,
            users.c.role,
            users.c.is_active,
        )
        .join(users, users.c.id == web_sessions.c.user_id)
        .where(web_sessions.c.token_hash == _hash(token))
    ).first()
    if row is None or row.expires_at <= now or not row.is_active:
        return None
    return row


def delete_session(conn: Connection, *, token: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == _hash(token)))
