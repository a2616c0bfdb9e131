"""The agent inbox: the queue of conversations that need a person, one conversation with the bot transcript,
summary, customer-360 panel and suggested answers; reply, assign and resolve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import HTMLResponse, RedirectResponse

from doorstep.context import CtxDep
from doorstep.conversations import handlers, queries
from doorstep.conversations.adapters import SqlOrderFacts
from doorstep.conversations.errors import ConversationError, ConversationNotFound, ErrorCode
from doorstep.conversations.model import suggested_replies
from doorstep.conversations.repository import ConversationRepository
from doorstep.security.model import Principal, Role
from doorstep.web.pages import staff_page
from doorstep.web.templating import render

router = APIRouter(prefix="/inbox", tags=["inbox"], include_in_schema=False)
Agent = Annotated[Principal, Depends(staff_page(Role.AGENT))]


def _visible_or_404(ctx: CtxDep, principal: Principal, conversation_id: str) -> object:
    with ctx.read_engine.connect() as conn:
        conv = ConversationRepository(conn).get(conversation_id)
    if conv is None or not queries.can_see(principal, conv):
        raise ConversationNotFound(conversation_id)  # not 403: do not confirm that it exists
    return conv


@router.get("", response_class=HTMLResponse)
def inbox(request: Request, ctx: CtxDep, principal: Agent, show: str = "open") -> HTMLResponse:
    with ctx.read_engine.connect() as conn:
        items = queries.queue(conn, principal, include_resolved=show == "all")
    return render(request, "inbox.html", items=items, now=ctx.clock.now(), show=show, title="Inbox")


@router.get("/{conversation_id}", response_class=HTMLResponse)
def conversation_page(request: Request, conversation_id: str, ctx: CtxDep, principal: Agent) -> HTMLResponse:
    _visible_or_404(ctx, principal, conversation_id)
    with ctx.read_engine.connect() as conn:
        repo = ConversationRepository(conn)
        conv = repo.get_or_raise(conversation_id)
        transcript = repo.list_messages(conversation_id)
        panel = (
            queries.customer_360(conn, conv.customer_id, exclude_conversation=conv.id)
            if conv.customer_id
            else {}
        )
        order = SqlOrderFacts(conn).get_order(conv.order_id) if conv.order_id and conv.is_verified else None
        agent_list = queries.agents(conn) if principal.role == Role.ADMIN else []
    state = conv.state or {}
    suggestions = suggested_replies(
        intent=conv.contact_reason or conv.intent,
        problem_kind=state.get("problem_kind"),
        handoff_reason=conv.handoff_reason,
        order=order,
        now=ctx.clock.now(),
    )
    cause, owner = handlers.suggested_cause(conv)
    return render(
        request,
        "inbox_conversation.html",
        conv=conv,
        transcript=transcript,
        panel=panel,
        suggestions=suggestions,
        causes=handlers.CAUSES,
        owners=handlers.OWNERS,
        suggested_cause=cause,
        suggested_owner=owner,
        contact_reason=conv.contact_reason or conv.intent or "",
        agents=agent_list,
        now=ctx.clock.now(),
        title="Conversation",
    )


@router.post("/{conversation_id}/reply")
def reply(
    conversation_id: str, ctx: CtxDep, principal: Agent, text: Annotated[str, Form(max_length=4000)]
) -> RedirectResponse:
    """Sends the agent's reply on the channel the customer used."""
    _visible_or_404(ctx, principal, conversation_id)
    with ctx.uow() as uow:
        handlers.agent_reply(
            uow, conversation_id=conversation_id, agent_id=principal.id, text=text, now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse(f"/inbox/{conversation_id}", status_code=303)


@router.post("/{conversation_id}/assign")
def assign(
    conversation_id: str, ctx: CtxDep, principal: Agent, agent_id: Annotated[str, Form()] = "me"
) -> RedirectResponse:
    """Takes the conversation ("me"), hands it back to the queue ("") or, for admins, gives it to an agent."""
    _visible_or_404(ctx, principal, conversation_id)
    target: str | None = principal.id if agent_id == "me" else (agent_id or None)
    if target not in (principal.id, None) and principal.role != Role.ADMIN:
        raise ConversationError(
            "only admins can assign conversations to someone else", code=ErrorCode.FORBIDDEN
        )
    with ctx.uow() as uow:
        handlers.assign(uow, conversation_id=conversation_id, agent_id=target, now=ctx.clock.now())
        uow.commit()
    return RedirectResponse(
        f"/inbox/{conversation_id}" if target == principal.id else "/inbox", status_code=303
    )


@router.post("/{conversation_id}/resolve")
def resolve(
    conversation_id: str,
    ctx: CtxDep,
    principal: Agent,
    contact_reason: Annotated[str, Form(max_length=50)] = "",
    cause: Annotated[str, Form(max_length=50)] = "",
    owner: Annotated[str, Form(max_length=20)] = "",
) -> RedirectResponse:
    """Closes the conversation, recording why the customer got in touch, the likely cause and its owner."""
    _visible_or_404(ctx, principal, conversation_id)
    with ctx.uow() as uow:
        handlers.resolve(
            uow,
            conversation_id=conversation_id,
            contact_reason=contact_reason or None,
            cause=cause or None,
            owner=owner or None,
            now=ctx.clock.now(),
        )
        uow.commit()
    return RedirectResponse("/inbox", status_code=303)
