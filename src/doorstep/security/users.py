from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from doorstep.ids import new_id
from doorstep.security.model import Role
from doorstep.security.passwords import hash_password, verify_password
from doorstep.security.tables import users

MIN_PASSWORD_LENGTH = 10


def create_user(
    conn: Connection, *, email: str, password: str, role: str, name: str = "", now: datetime
) -> str:
    email = email.strip().lower()
    if role not in {r.value for r in Role}:
        raise ValueError(f"role must be one of {', '.join(r.value for r in Role)}, not {role!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if conn.execute(select(users.c.id).where(users.c.email == email)).first():
        raise ValueError(f"a user with email {email} already exists")
    user_id = new_id()
    conn.execute(
        insert(users).values(
            id=user_id,
            email=email,
            name=name or email.split("@")[0],
            role=role,
            password_hash=hash_password(password),
            is_active=True,
            created_at=now,
        )
    )
    return user_id


def authenticate(conn: Connection, *, email: str, password: str) -> Any | None:
    row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
    if row is None:
        # spend the same time as a real check, so timing does not reveal which emails exist
        verify_password(_DUMMY_HASH, password)
        return None
    if not row.is_active or not verify_password(row.password_hash, password):
        return None
    return row


def count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


_DUMMY_HASH = hash_password("not-a-real-password-just-for-timing")
