"""Public web chat endpoints used by /static/chat-widget.js. A session is a conversation; its signed token
(returned on creation) is the only key to it. Customer messages go through the event log like every other
channel, so the worker answers them; the widget polls for replies."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from sqlalchemy import select

from doorstep.context import CtxDep
from doorstep.conversations.adapters import SqlOrderFacts
from doorstep.conversations.errors import ConversationError, ErrorCode
from doorstep.conversations.handlers import WEB_CHAT, open_chat_session
from doorstep.conversations.schemas import (
    ChatMessageAccepted,
    ChatMessageCreate,
    ChatMessagePage,
    ChatMessageRead,
    ChatSessionCreate,
    ChatSessionRead,
)
from doorstep.conversations.tables import conversations, messages
from doorstep.ids import new_id
from doorstep.ingest.log import LogEntry, append
from doorstep.security.links import BadLink, sign, verify

router = APIRouter(prefix="/chat", tags=["chat"])

CHAT_PURPOSE = "chat"
CHAT_TOKEN_TTL_S = 7 * 24 * 3600
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_token(ctx: CtxDep, session_id: str, token: str | None) -> None:
    if not token:
        raise ConversationError("send the session's token as X-Chat-Token", code=ErrorCode.FORBIDDEN)
    try:
        subject = verify(ctx.settings.secret_key, CHAT_PURPOSE, token, max_age_s=CHAT_TOKEN_TTL_S)
    except BadLink:
        raise ConversationError(
            "this chat session has expired: start a new one", code=ErrorCode.FORBIDDEN
        ) from None
    if subject != session_id:
        raise ConversationError("the token does not belong to this chat session", code=ErrorCode.FORBIDDEN)


def _messages(ctx: CtxDep, session_id: str, after: str | None) -> tuple[str, list[ChatMessageRead]]:
    with ctx.read_engine.connect() as conn:
        conv = conn.execute(select(conversations.c.status).where(conversations.c.id == session_id)).first()
        if conv is None:
            raise ConversationError(f"no chat session {session_id}", code=ErrorCode.NOT_FOUND)
        stmt = select(messages).where(messages.c.conversation_id == session_id)
        if after:
            stmt = stmt.where(messages.c.id > after)  # ids are time-ordered (uuid7)
        rows = conn.execute(stmt.order_by(messages.c.created_at, messages.c.id)).all()
    return conv.status, [
        ChatMessageRead(id=r.id, author=r.author, body=r.body, created_at=r.created_at) for r in rows
    ]


@router.post("/sessions", status_code=status.HTTP_201_CREATED, response_model=ChatSessionRead)
def create_session(body: ChatSessionCreate, ctx: CtxDep) -> ChatSessionRead:
    """Opens a chat. With a tracking link's token the customer is verified for that order."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        order = None
        if body.tracking_token:
            try:
                order_id = verify(ctx.settings.secret_key, "track", body.tracking_token)
            except BadLink:
                order_id = None  # an expired link still gets a chat, just not a verified one
            order = SqlOrderFacts(uow.conn).get_order(order_id) if order_id else None
        session_id = open_chat_session(uow, now=now, brand=ctx.settings.brand_name, verified_order=order)
        uow.commit()
    state, items = _messages(ctx, session_id, None)
    return ChatSessionRead(
        id=session_id,
        token=sign(ctx.settings.secret_key, CHAT_PURPOSE, session_id),
        status=state,
        messages=items,
    )


@router.post(
    "/sessions/{session_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ChatMessageAccepted,
)
def post_message(
    session_id: str,
    body: ChatMessageCreate,
    ctx: CtxDep,
    x_chat_token: Annotated[str | None, Header()] = None,
) -> ChatMessageAccepted:
    """Accepts a customer message; the assistant's reply appears in GET .../messages shortly after."""
    _check_token(ctx, session_id, x_chat_token)
    client_id = body.client_id if body.client_id and CLIENT_ID.match(body.client_id) else new_id()
    provider_id = f"{session_id}:{client_id}"
    now = ctx.clock.now()
    entry = LogEntry(
        source="inbound_message",
        message_id=f"{WEB_CHAT}:{provider_id}",
        type="message",
        name=None,
        partition_key=f"{WEB_CHAT}:{session_id}",
        occurred_at=now,
        payload={
            "channel": WEB_CHAT,
            "from": session_id,
            "to": "web",
            "text": body.text,
            "provider_message_id": provider_id,
            "sent_at": now.isoformat(),
            "raw": {},
        },
    )
    with ctx.engine.begin() as conn:
        if conn.execute(select(conversations.c.id).where(conversations.c.id == session_id)).first() is None:
            raise ConversationError(f"no chat session {session_id}", code=ErrorCode.NOT_FOUND)
        append(conn, [entry], received_at=now)
    wake = ctx.services.get("wake_worker")
    if wake is not None:
        wake()
    return ChatMessageAccepted(accepted=True, message_id=provider_id)


@router.get("/sessions/{session_id}/messages", response_model=ChatMessagePage)
def list_messages(
    session_id: str,
    ctx: CtxDep,
    x_chat_token: Annotated[str | None, Header()] = None,
    after: Annotated[str | None, Query(max_length=36)] = None,
) -> ChatMessagePage:
    """The conversation so far (or only messages after the id `after`): poll every second or two."""
    _check_token(ctx, session_id, x_chat_token)
    state, items = _messages(ctx, session_id, after)
    return ChatMessagePage(status=state, messages=items)
