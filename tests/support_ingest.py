"""Helpers for the ingest/customers/orders tests."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Engine, func, select

from doorstep.ingest.tables import event_log


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def log_count(engine: Engine) -> int:
    return count(engine, event_log)


def order_completed(order_id: str = "1001", **overrides: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "order_id": order_id,
        "total": "99.50",
        "shipping": "4.50",
        "tax": "0",
        "currency": "EUR",
        "products": [{"product_id": "shoe-1", "sku": "SH-42", "name": "Runner", "category": "Shoes", "price": "95.00",
                      "quantity": 1}],
        "promised_delivery_from": "2026-11-26T09:00:00Z",
        "promised_delivery_to": "2026-11-26T13:00:00Z",
    }
    properties.update(overrides)
    return properties


def drain_log(app: Any, *, timeout_s: float = 15.0) -> None:
    """Drains the worker until the projector has consumed the whole log.

    On PostgreSQL the projector only takes rows older than every running transaction in the cluster
    (pg_snapshot_xmin), so another session's open transaction can hold it back for a moment."""
    import time

    from doorstep.ingest.tables import log_offsets

    deadline = time.monotonic() + timeout_s
    while True:
        app.drain()
        with app.ctx.engine.connect() as conn:
            last = conn.execute(select(func.max(event_log.c.id))).scalar() or 0
            done = conn.execute(
                select(log_offsets.c.position).where(log_offsets.c.consumer == "projector")
            ).scalar() or 0
        if done >= last:
            app.drain()
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the projector is stuck at log id {done} of {last}")
        time.sleep(0.05)
