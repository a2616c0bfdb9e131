"""API models of the customers domain, named by role."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class IdentityRead(BaseModel):
    kind: str = Field(description="user_id | email | phone | anonymous_id")
    value: str
    first_seen_at: datetime
    source_message_id: str | None


class IdentityLinkRead(BaseModel):
    """One decision of identity resolution: why an identifier is (or is not) on this profile."""

    action: str = Field(description="created | linked | merged | refused")
    kind: str
    value: str
    other_customer_id: str | None
    reason: str
    message_id: str | None
    created_at: datetime


class ConsentRead(BaseModel):
    channel: str
    topic: str
    is_granted: bool
    source: str
    updated_at: datetime


class CustomerEventRead(BaseModel):
    log_id: int
    type: str
    name: str | None
    occurred_at: datetime
    session_id: str | None
    campaign_source: str | None
    product_id: str | None
    order_external_id: str | None
    properties: dict[str, Any] | None


class CustomerOrderSummary(BaseModel):
    id: str
    external_id: str
    status: str
    total: str
    currency: str
    placed_at: datetime


class CustomerSummary(BaseModel):
    id: str
    email: str | None
    phone: str | None
    name: str | None
    country: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    updated_at: datetime


class CustomerRead(CustomerSummary):
    locale: str | None
    timezone: str | None
    region: str | None
    postcode: str | None
    preferred_channels: list[str]
    traits: dict[str, Any]
    created_at: datetime
    merged_ids: list[str] = Field(description="profiles merged into this one")
    identities: list[IdentityRead]
    consents: list[ConsentRead]
    identity_links: list[IdentityLinkRead] = Field(
        description="why these identities belong together: every link, merge and refusal, oldest first"
    )
    recent_events: list[CustomerEventRead]
    orders: list[CustomerOrderSummary]


class CustomerPage(BaseModel):
    items: list[CustomerSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class CustomerErasedRead(BaseModel):
    customer_id: str
    profiles: int
    log_events: int
    identities: int
