"""API models of the shipments read side."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class TrackingEventRead(BaseModel):
    occurred_at: datetime
    status: str
    subtag: str | None
    subtag_name: str | None
    raw_code: str | None
    message: str | None
    location: str | None
    latitude: float | None
    longitude: float | None
    source: str


class ShipmentRead(BaseModel):
    id: str
    order_id: str | None
    order_ref: str | None
    carrier: str
    tracking_number: str
    service: str | None
    status: str
    subtag: str | None
    subtag_name: str | None
    promised_from: datetime | None
    promised_to: datetime | None
    predicted_from: datetime | None
    predicted_to: datetime | None
    predicted_at: datetime | None
    predicted_confidence: float | None
    predicted_by: str | None
    carrier_estimate: datetime | None
    delay_reason: str | None
    dispatched_at: datetime | None
    first_attempt_at: datetime | None
    delivered_at: datetime | None
    last_scan_at: datetime | None
    last_location: str | None
    pickup_deadline: datetime | None
    timeline: list[TrackingEventRead]


class ShipmentPage(BaseModel):
    items: list[ShipmentRead]
