"""Factories for the last mile's tests: a customer with an order, its lines and a shipment, written
straight into the tables (the projections that normally fill them are other helpers' work)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from doorstep.customers.tables import customers
from doorstep.ids import new_id
from doorstep.orders.tables import order_lines, orders
from doorstep.shipments.tables import delivery_slots, shipments
from tests.factories import customer_row

_seq = itertools.count(1000)


def order_with_shipment(
    engine: Engine,
    *,
    now: datetime,
    status: str = "InTransit",
    carrier: str = "ups",
    region: str = "London",
    email: str | None = None,
    postcode: str = "SW1A 1AA",
    lines: list[dict[str, Any]] | None = None,
    promised_to: datetime | None = None,
    delivered_at: datetime | None = None,
    **shipment_fields: Any,
) -> dict[str, Any]:
    n = next(_seq)
    customer_id, order_id, shipment_id = new_id(), new_id(), new_id()
    email = email or f"maya{n}@example.com"
    lines = lines or [
        {
            "product_id": "shoe-1",
            "name": "Trail running shoes",
            "category": "shoes",
            "quantity": 1,
            "unit_price_minor": 8900,
        }
    ]
    total = sum(line["quantity"] * line["unit_price_minor"] for line in lines) + 495
    with engine.begin() as conn:
        conn.execute(
            insert(customers).values(
                **customer_row(now=now, id=customer_id, email=email, phone="+447700900123")
            )
        )
        conn.execute(
            insert(orders).values(
                id=order_id,
                external_id=f"DS-{n}",
                customer_id=customer_id,
                status="placed",
                currency="GBP",
                total_minor=total,
                shipping_minor=495,
                tax_minor=0,
                discount_minor=0,
                ship_name="Maya Jones",
                ship_line1="10 Downing Street",
                ship_city="London",
                ship_postcode=postcode,
                ship_region=region,
                ship_country="GB",
                promised_from=None,
                promised_to=promised_to,
                placed_at=now - timedelta(days=3),
                properties={},
                created_at=now,
                updated_at=now,
            )
        )
        for i, line in enumerate(lines, start=1):
            conn.execute(
                insert(order_lines).values(order_id=order_id, line_no=i, sku=line["product_id"], **line)
            )
        conn.execute(
            insert(shipments).values(
                id=shipment_id,
                order_id=order_id,
                carrier=carrier,
                tracking_number=f"1Z{n}",
                is_return=False,
                status=status,
                destination_region=region,
                destination_postcode=postcode,
                promised_to=promised_to,
                delivered_at=delivered_at,
                created_at=now,
                updated_at=now,
                **shipment_fields,
            )
        )
    return {
        "customer_id": customer_id,
        "order_id": order_id,
        "shipment_id": shipment_id,
        "order_number": f"DS-{n}",
        "email": email,
        "postcode": postcode,
        "tracking_number": f"1Z{n}",
    }


def slot(
    engine: Engine,
    *,
    starts_at: datetime,
    carrier: str = "ups",
    region: str = "London",
    capacity: int = 3,
    booked: int = 0,
    hours: int = 2,
) -> str:
    slot_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(delivery_slots).values(
                id=slot_id,
                carrier=carrier,
                region=region,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(hours=hours),
                capacity=capacity,
                booked=booked,
            )
        )
    return slot_id


class LiveServer:
    """The real app under uvicorn on a free loopback port, in a thread (for browser tests)."""

    def __init__(self, settings: Any, clock: Any):
        import socket
        import threading

        import uvicorn

        from doorstep.app import create_app

        self.app = create_app(settings, clock=clock)
        self.ctx = self.app.state.ctx
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", ws="none", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
