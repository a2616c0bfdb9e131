"""Real-shaped tracking payloads (AfterShip, Karrio, generic), signing, and small store fixtures for the
tracking tests."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, insert

from doorstep.customers.tables import customers
from doorstep.orders.tables import orders
from doorstep.security.signatures import hmac_sha256_b64, hmac_sha256_hex, timestamped_signature

AFTERSHIP_SECRET = "as-webhook-secret-for-tests"
KARRIO_SECRET = "karrio-webhook-secret-for-tests"
TRACKING_SECRET = "generic-tracking-secret-for-tests"

_seq = itertools.count(1)


def tracking_settings() -> dict[str, object]:
    return {
        "aftership_webhook_secret": AFTERSHIP_SECRET,
        "karrio_webhook_secret": KARRIO_SECRET,
        "tracking_webhook_secret": TRACKING_SECRET,
        "shipment_check_interval_s": 0,
    }


def checkpoint(
    at: datetime,
    tag: str,
    subtag: str | None = None,
    message: str | None = None,
    city: str = "Leeds",
    raw_tag: str | None = None,
) -> dict[str, Any]:
    return {
        "slug": "dhl",
        "city": city,
        "created_at": at.isoformat(),
        "location": f"{city}, West Yorkshire, GB",
        "country_region": "GBR",
        "country_region_name": "United Kingdom",
        "message": message or tag,
        "state": "West Yorkshire",
        "tag": tag,
        "subtag": subtag or f"{tag}_001",
        "subtag_message": tag,
        "checkpoint_time": at.isoformat(),
        "coordinate": {"latitude": 53.8, "longitude": -1.55},
        "zip": "LS1 4AP",
        "raw_tag": raw_tag or f"RAW-{tag}",
        "source": "carrier",
    }


def aftership_tracking(
    number: str,
    checkpoints: list[dict[str, Any]],
    *,
    order_number: str | None = None,
    slug: str = "dhl",
    tag: str | None = None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "tracking_number": number,
        "slug": slug,
        "active": True,
        "order_id": order_number,
        "order_number": order_number,
        "tag": tag or (checkpoints[-1]["tag"] if checkpoints else "Pending"),
        "subtag": checkpoints[-1]["subtag"] if checkpoints else "Pending_001",
        "origin_country_region": "GBR",
        "destination_country_region": "GBR",
        "destination_state": "LDS",
        "shipment_type": "standard",
        "aftership_estimated_delivery_date": None,
        "checkpoints": checkpoints,
    }


def aftership_body(
    tracking: dict[str, Any], *, ts: datetime, event: str = "tracking_update", event_id: str | None = None
) -> bytes:
    return orjson.dumps(
        {
            "event": event,
            "event_id": event_id or str(uuid.uuid4()),
            "is_tracking_first_tag": False,
            "msg": tracking,
            "ts": int(ts.timestamp()),
        }
    )


def aftership_headers(body: bytes, secret: str = AFTERSHIP_SECRET) -> dict[str, str]:
    return {"aftership-hmac-sha256": hmac_sha256_b64(secret, body), "content-type": "application/json"}


def karrio_event(
    at: datetime, code: str | None, description: str, *, status: str | None = None, location: str = "Leeds"
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "date": at.strftime("%Y-%m-%d"),
        "time": at.strftime("%H:%M"),
        "code": code,
        "description": description,
        "location": location,
        "latitude": 53.8,
        "longitude": -1.55,
    }
    if status:
        event["status"] = status
    return event


def karrio_body(
    number: str,
    events: list[dict[str, Any]],
    *,
    status: str = "in_transit",
    carrier: str = "dhl_parcel_de",
    order_id: str | None = None,
    event_id: str | None = None,
    created_at: datetime | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "id": event_id or f"evt_{next(_seq)}",
        "type": "tracker.updated",
        "data": {
            "id": f"trk_{number}",
            "object": "tracker",
            "carrier_id": "dhl-test",
            "carrier_name": carrier,
            "tracking_number": number,
            "status": status,
            "delivered": status == "delivered",
            "estimated_delivery": None,
            "events": events,
            "info": {"order_id": order_id, "shipment_destination_country": "GB"},
            "metadata": {},
            "test_mode": True,
        },
        "test_mode": True,
    }
    if created_at is not None:
        body["created_at"] = created_at.isoformat()
    return orjson.dumps(body)


def karrio_headers(body: bytes, secret: str = KARRIO_SECRET) -> dict[str, str]:
    return {"x-karrio-signature": hmac_sha256_hex(secret, body), "content-type": "application/json"}


def generic_headers(body: bytes, *, now: datetime, secret: str = TRACKING_SECRET) -> dict[str, str]:
    ts = int(now.timestamp())
    return {
        "x-doorstep-timestamp": str(ts),
        "x-doorstep-signature": timestamped_signature(secret, ts, body),
        "content-type": "application/json",
    }


def add_order(
    engine: Engine,
    *,
    external_id: str,
    now: datetime,
    promised_to: datetime | None = None,
    promised_from: datetime | None = None,
) -> tuple[str, str]:
    """An order (and its customer) as the orders projection would have stored it: (order_id, customer_id)."""
    customer_id = str(uuid.uuid4())
    order_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            insert(customers).values(
                id=customer_id,
                email=f"{external_id}@example.com",
                preferred_channels=[],
                traits={},
                first_seen_at=now,
                last_seen_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            insert(orders).values(
                id=order_id,
                external_id=external_id,
                customer_id=customer_id,
                status="placed",
                currency="GBP",
                total_minor=4999,
                placed_at=now - timedelta(days=1),
                properties={},
                created_at=now,
                updated_at=now,
                ship_region="GB-LDS",
                ship_postcode="LS1 4AP",
                ship_country="GB",
                promised_from=promised_from,
                promised_to=promised_to,
            )
        )
    return order_id, customer_id
