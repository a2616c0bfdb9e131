"""API models of the orders domain, named by role. Amounts are decimal strings beside their currency."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class OrderLineRead(BaseModel):
    line_no: int
    product_id: str
    sku: str | None
    name: str | None
    category: str | None
    quantity: int
    unit_price: str


class OrderStepRead(BaseModel):
    step: str
    occurred_at: datetime
    detail: Any | None


class ShippingAddressRead(BaseModel):
    name: str | None
    line1: str | None
    city: str | None
    postcode: str | None
    region: str | None
    country: str | None


class OrderSummary(BaseModel):
    id: str
    external_id: str = Field(description="the shop's order number (Segment properties.order_id)")
    customer_id: str
    status: str
    currency: str
    total: str
    placed_at: datetime
    updated_at: datetime


class OrderRead(OrderSummary):
    shipping: str
    tax: str
    discount: str
    coupon: str | None
    channel: str | None
    campaign_source: str | None
    shipping_address: ShippingAddressRead
    promised_from: datetime | None
    promised_to: datetime | None
    lines: list[OrderLineRead]
    steps: list[OrderStepRead]
    properties: dict[str, Any]
    created_at: datetime


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
