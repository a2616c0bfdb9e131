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
