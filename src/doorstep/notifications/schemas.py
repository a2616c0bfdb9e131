"""API models of the notifications domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Channel = Literal["email", "sms", "whatsapp", "messenger", "webhook", "outbox"]


class JourneyRead(BaseModel):
    name: str
    version: int  # 0 = the default shipped in the package
    source: str  # YAML
    definition: dict[str, Any]


class JourneyUpdate(BaseModel):
    """Either `source` (YAML or JSON text) or `definition` (the journey as a JSON object)."""

    source: str | None = None
    definition: dict[str, Any] | None = None


class TemplateOverride(BaseModel):
    subject: str | None = None
    text: str | None = None
    html: str | None = None


class TemplatePreviewCreate(BaseModel):
    trigger: str = Field(examples=["predicted_late"])
    channel: Channel = "email"
    locale: str = "en"
    template: TemplateOverride | None = None  # preview a draft instead of the stored template


class TemplatePreviewRead(BaseModel):
    trigger: str
    channel: str
    locale: str
    subject: str
    text: str
    html: str | None
    whatsapp_template: dict[str, Any] | None


class NotificationRead(BaseModel):
    id: str
    customer_id: str | None  # None: a reply to a sender no profile holds (see conversation_id)
    conversation_id: str | None = None
    order_id: str | None
    shipment_id: str | None
    trigger: str
    channel: str
    locale: str
    topic: str | None
    status: str
    suppression_reason: str | None
    to_address: str | None
    subject: str | None
    body_text: str | None
    attempts: int
    last_error: str | None
    fallback_of: str | None
    provider_message_id: str | None
    scheduled_for: datetime | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationRead]


class ConsentItem(BaseModel):
    channel: Literal["email", "sms", "whatsapp", "messenger"]
    topic: Literal["service", "marketing"]
    is_granted: bool


class QuietHours(BaseModel):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class PreferencesUpdate(BaseModel):
    channel_order: list[Channel] | None = None
    quiet_hours: QuietHours | None = None
    daily_cap: int | None = Field(default=None, ge=1, le=100)
    consents: list[ConsentItem] = Field(default_factory=list)


class PreferencesRead(BaseModel):
    customer_id: str
    channel_order: list[str] | None
    quiet_hours: QuietHours | None
    daily_cap: int | None
    consents: list[ConsentItem]
