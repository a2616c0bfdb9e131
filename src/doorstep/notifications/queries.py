"""Read side: messages for the API and the /messages page, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from doorstep.customers.tables import consents
from doorstep.notifications.tables import delivery_attempts, notification_preferences, notifications


def list_notifications(
    conn: Connection,
    *,
    customer_id: str | None = None,
    order_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    limit: int = 100,
) -> list[Any]:
    query = (
        select(notifications)
        .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
        .limit(limit)
    )
    if customer_id:
        query = query.where(notifications.c.customer_id == customer_id)
    if order_id:
        query = query.where(notifications.c.order_id == order_id)
    if status:
        query = query.where(notifications.c.status == status)
    if channel:
        query = query.where(notifications.c.channel == channel)
    return list(conn.execute(query))


def list_attempts(conn: Connection, notification_ids: list[str]) -> dict[str, list[Any]]:
    if not notification_ids:
        return {}
    found: dict[str, list[Any]] = {}
    for row in conn.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.notification_id.in_(notification_ids))
        .order_by(delivery_attempts.c.id)
    ):
        found.setdefault(row.notification_id, []).append(row)
    return found


def get_preferences(conn: Connection, customer_id: str) -> tuple[Any | None, list[Any]]:
    prefs = conn.execute(
        select(notification_preferences).where(notification_preferences.c.customer_id == customer_id)
    ).first()
    granted = list(
        conn.execute(
            select(consents)
            .where(consents.c.customer_id == customer_id)
            .order_by(consents.c.channel, consents.c.topic)
        )
    )
    return prefs, granted
