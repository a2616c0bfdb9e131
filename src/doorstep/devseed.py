"""First-start conveniences for development: a write key and an admin login, printed by `make run`."""

from __future__ import annotations

from sqlalchemy import Engine, select

from doorstep.clock import utcnow
from doorstep.security.keys import create_key, find_key
from doorstep.security.tables import users
from doorstep.security.users import create_user
from doorstep.settings import Settings


def seed_development(engine: Engine, settings: Settings) -> None:
    if not settings.is_development:
        return
    with engine.begin() as conn:
        if find_key(conn, settings.dev_write_key) is None:
            create_key(
                conn,
                kind="write",
                scopes=[],
                name="development write key",
                now=utcnow(),
                key=settings.dev_write_key,
            )
        if conn.execute(select(users.c.id).where(users.c.email == settings.dev_admin_email)).first() is None:
            create_user(
                conn,
                email=settings.dev_admin_email,
                password=settings.dev_admin_password,
                role="admin",
                name="Admin",
                now=utcnow(),
            )
