"""Persistence of conversations and their messages (never commits; the caller's unit of work does)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from doorstep.conversations.errors import ConversationNotFound
from doorstep.conversations.tables import conversations, messages
from doorstep.ids import new_id


class ConversationRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def get(self, conversation_id: str, *, for_update: bool = False) -> Any | None:
        stmt = select(conversations).where(conversations.c.id == conversation_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.conn.execute(stmt).first()

    def get_or_raise(self, conversation_id: str, *, for_update: bool = False) -> Any:
        row = self.get(conversation_id, for_update=for_update)
        if row is None:
            raise ConversationNotFound(conversation_id)
        return row

    def latest_for_address(self, channel: str, address: str) -> Any | None:
        return self.conn.execute(
            select(conversations)
            .where(conversations.c.channel == channel, conversations.c.channel_address == address)
            .order_by(conversations.c.opened_at.desc())
            .limit(1)
            .with_for_update()
        ).first()

    def add(
        self,
        *,
        channel: str,
        address: str,
        customer_id: str | None,
        now: datetime,
        state: dict[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> str:
        conversation_id = conversation_id or new_id()
        self.conn.execute(
            insert(conversations).values(
                id=conversation_id,
                customer_id=customer_id,
                channel=channel,
                channel_address=address,
                status="bot",
                is_verified=False,
                urgency=0,
                state=state or {},
                opened_at=now,
                updated_at=now,
            )
        )
        return conversation_id

    def update(self, conversation_id: str, **values: Any) -> None:
        self.conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(**values))

    def message_exists(self, channel: str, provider_message_id: str) -> bool:
        return (
            self.conn.execute(
                select(messages.c.id).where(
                    messages.c.channel == channel, messages.c.provider_message_id == provider_message_id
                )
            ).first()
            is not None
        )

    def add_message(
        self,
        *,
        conversation_id: str,
        direction: str,
        author: str,
        channel: str,
        body: str,
        now: datetime,
        author_id: str | None = None,
        provider_message_id: str | None = None,
        intent: str | None = None,
        confidence: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> str:
        message_id = new_id()
        self.conn.execute(
            insert(messages).values(
                id=message_id,
                conversation_id=conversation_id,
                direction=direction,
                author=author,
                author_id=author_id,
                channel=channel,
                body=body,
                provider_message_id=provider_message_id,
                intent=intent,
                confidence=confidence,
                created_at=now,
                meta=meta or {},
            )
        )
        return message_id

    def list_messages(self, conversation_id: str) -> list[Any]:
        return list(
            self.conn.execute(
                select(messages)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.created_at, messages.c.id)
            )
        )
