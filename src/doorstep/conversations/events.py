from __future__ import annotations

from dataclasses import dataclass

from doorstep.bus.messages import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ConversationEvent(DomainEvent):
    conversation_id: str
    customer_id: str | None

    @property
    def key(self) -> str:
        return f"conversation:{self.conversation_id}"


@dataclass(frozen=True, kw_only=True)
class MessageReceived(ConversationEvent):
    message_id: str
    channel: str


@dataclass(frozen=True, kw_only=True)
class ConversationHandedOff(ConversationEvent):
    reason: str
    summary: str


@dataclass(frozen=True, kw_only=True)
class ConversationResolved(ConversationEvent):
    contact_reason: str | None
    cause: str | None
    is_contained: bool
