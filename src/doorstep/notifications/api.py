"""What other domains call to send a customer something outside the journeys (for example the assistant's
reply on the channel the customer wrote from). The notifications domain owns delivery: this records a
queued message, and its sender delivers it with retries and delivery status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

from doorstep.ids import new_id
from doorstep.notifications.tables import notifications


def queue_reply(
    conn: Connection,
    *,
    customer_id: str | None,
    channel: str,
    to_address: str,
    text: str,
    dedupe_key: str,
    now: datetime,
    locale: str = "en",
    order_id: str | None = None,
    detail: dict[str, object] | None = None,
    conversation_id: str | None = None,
) -> str:
    """Queues a conversational reply (not subject to quiet hours or caps: the customer just wrote). A sender no
    profile holds gets one too (`customer_id` None): it goes back to the address they wrote from."""
    notification_id = new_id()
    conn.execute(
        insert(notifications).values(
            id=notification_id,
            customer_id=customer_id,
            order_id=order_id,
            trigger="conversation_reply",
            channel=channel,
            locale=locale,
            status="queued",
            dedupe_key=dedupe_key,
            to_address=to_address,
            body_text=text,
            attempts=0,
            created_at=now,
            scheduled_for=now,
            detail=detail or {},
            conversation_id=conversation_id,
        )
    )
    return notification_id
