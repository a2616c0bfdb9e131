from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

MAX_CHAT_TEXT = 2000  # longer messages are cut off by the widget too


class ChatSessionCreate(BaseModel):
    tracking_token: str | None = Field(
        default=None, description="The signed token of a tracking link: verifies the customer for that order."
    )


class ChatMessageCreate(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_CHAT_TEXT)
    client_id: str | None = Field(
        default=None, max_length=64, description="Makes a resent message idempotent."
    )


class ChatMessageRead(BaseModel):
    id: str
    author: str  # customer | bot | agent | system
    body: str
    created_at: datetime


class ChatSessionRead(BaseModel):
    id: str
    token: str  # send as X-Chat-Token on later calls
    status: str
    messages: list[ChatMessageRead]


class ChatMessagePage(BaseModel):
    status: str
    messages: list[ChatMessageRead]


class ChatMessageAccepted(BaseModel):
    accepted: bool
    message_id: str
