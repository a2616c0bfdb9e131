"""Test data for the assistant: a customer with a WhatsApp number, an order in transit, staff users."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from doorstep.customers.tables import customers, identities
from doorstep.ingest.log import LogEntry, append
from doorstep.orders.tables import orders
from doorstep.shipments.tables import shipments
from tests.factories import customer_row

PHONE = "+447700900123"
PLACED = datetime(2026, 11, 20, 12, tzinfo=UTC)


def seed_order(
    engine: Engine,
    *,
    now: datetime,
    number: str = "DS-10293",
    customer_id: str = "cust-1",
    email: str = "maya@example.com",
    phone: str | None = PHONE,
    status: str = "dispatched",
    with_shipment: bool = True,
) -> dict[str, Any]:
    order_id = f"order-{number}"
    with engine.begin() as conn:
        conn.execute(
            insert(customers).values(
                **customer_row(now=now, id=customer_id, email=email, phone=phone, postcode="SW1A 1AA")
            )
        )
        if phone:
            conn.execute(
                insert(identities).values(
                    customer_id=customer_id, kind="whatsapp", value=phone, first_seen_at=now
                )
            )
        conn.execute(
            insert(orders).values(
                id=order_id,
                external_id=number,
                customer_id=customer_id,
                status=status,
                currency="EUR",
                total_minor=5999,
                shipping_minor=0,
                tax_minor=0,
                discount_minor=0,
                ship_name="Maya Jones",
                ship_postcode="SW1A 1AA",
                ship_country="GB",
                placed_at=PLACED,
                properties={},
                created_at=now,
                updated_at=now,
                promised_from=datetime(2026, 11, 25, 9, tzinfo=UTC),
                promised_to=datetime(2026, 11, 25, 13, tzinfo=UTC),
            )
        )
        if with_shipment:
            conn.execute(
                insert(shipments).values(
                    id=f"ship-{number}",
                    order_id=order_id,
                    carrier="dhl",
                    tracking_number=f"JD{number[-4:]}",
                    status="InTransit",
                    is_return=False,
                    last_scan_at=datetime(2026, 11, 22, 21, 5, tzinfo=UTC),
                    last_location="Leipzig hub",
                    dispatched_at=datetime(2026, 11, 21, 8, tzinfo=UTC),
                    promised_from=datetime(2026, 11, 25, 9, tzinfo=UTC),
                    promised_to=datetime(2026, 11, 25, 13, tzinfo=UTC),
                    created_at=now,
                    updated_at=now,
                )
            )
    return {"order_id": order_id, "customer_id": customer_id, "number": number}


def inbound(
    engine: Engine,
    *,
    now: datetime,
    text: str,
    provider_id: str,
    channel: str = "whatsapp",
    sender: str = PHONE,
) -> int:
    """Appends a channel message to the log exactly as the notify helper's webhooks do."""
    entry = LogEntry(
        source="inbound_message",
        message_id=f"{channel}:{provider_id}",
        type="message",
        name=None,
        partition_key=f"{channel}:{sender}",
        occurred_at=now,
        payload={
            "channel": channel,
            "from": sender,
            "to": "+15550000000",
            "text": text,
            "provider_message_id": provider_id,
            "sent_at": now.isoformat(),
            "raw": {},
        },
    )
    with engine.begin() as conn:
        return append(conn, [entry], received_at=now)


def drain(app: Any, *, timeout_s: float = 10.0) -> None:
    """Drains the worker until every log row is projected. On a PostgreSQL server shared with other sessions
    the projector waits for older transactions anywhere on the server (its visibility horizon), so one drain
    may leave fresh rows for the next round."""
    import time

    from sqlalchemy import func, select

    from doorstep.bus.worker import PROJECTOR
    from doorstep.ingest.tables import event_log, log_offsets

    deadline = time.monotonic() + timeout_s
    while True:
        app.drain()
        with app.ctx.engine.connect() as conn:
            newest = conn.execute(select(func.max(event_log.c.id))).scalar() or 0
            done = conn.execute(
                select(log_offsets.c.position).where(log_offsets.c.consumer == PROJECTOR)
            ).scalar()
        if (done or 0) >= newest or time.monotonic() > deadline:
            return
        time.sleep(0.05)
