"""Use cases of the conversations domain: an inbound message projected from the log and answered by the
assistant, agent replies, assignment and resolution. Each runs in the caller's unit of work."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from doorstep.bus.registry import Bus, HandlerContext
from doorstep.conversations.adapters import (
    LastmileActions,
    SqlOrderFacts,
    customer_for_channel,
    customer_for_email,
)
from doorstep.conversations.errors import ConversationError, ErrorCode
from doorstep.conversations.events import ConversationHandedOff, ConversationResolved, MessageReceived
from doorstep.conversations.model import (
    VERIFICATION_WINDOW,
    Dialogue,
    DialogueState,
    Message,
    Turn,
    parse_rating,
)
from doorstep.conversations.nlu.classifier import understand
from doorstep.conversations.nlu.entities import EntityRules
from doorstep.conversations.ports import ActionRequest, ActionResult
from doorstep.conversations.repository import ConversationRepository
from doorstep.conversations.tables import assistant_actions
from doorstep.db.uow import UnitOfWork
from doorstep.ids import new_id

log = logging.getLogger("doorstep.conversations")

WEB_CHAT = "chat"
# A rating sent this long after the end still belongs to the conversation.
SATISFACTION_GRACE = timedelta(days=2)
REPLY_CHANNELS = {"sms", "whatsapp", "messenger", "email"}


def register(bus: Bus) -> None:
    # tables=[]: replaying the log must not erase agent replies and resolutions; the projection dedupes by
    # provider message id instead.
    bus.on_log("inbound_message", project_inbound_message, tables=[])


def project_inbound_message(row: Any, ctx: HandlerContext) -> None:
    payload = row.payload or {}
    sent_at = payload.get("sent_at")
    try:
        received_at = datetime.fromisoformat(sent_at) if sent_at else row.occurred_at
    except ValueError:
        received_at = row.occurred_at
    if received_at.tzinfo is None:
        received_at = row.occurred_at
    receive_message(
        ctx.uow,
        channel=str(payload.get("channel") or ""),
        address=str(payload.get("from") or ""),
        text=str(payload.get("text") or ""),
        provider_message_id=str(payload.get("provider_message_id") or row.message_id),
        now=ctx.clock.now(),
        received_at=received_at,
        brand=ctx.settings.brand_name,
        rules=entity_rules(ctx.settings),
        wake_actions=ctx.services.get("wake_assistant_actions"),
    )


EMAIL_QUOTE_START = re.compile(
    r"^\s*(On .{5,200} wrote:|-----\s*Original Message\s*-----|From: .+|Sent from my \w+|--\s*)$",
    re.IGNORECASE,
)


def latest_email_text(body: str) -> str:
    """The customer's new words in an email reply: quoted history and signatures cut off."""
    kept: list[str] = []
    for line in body.splitlines():
        if EMAIL_QUOTE_START.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    text = " ".join(" ".join(kept).split())
    return text or " ".join(body.split())[:2000]


def entity_rules(settings: Any) -> EntityRules:
    patterns = getattr(settings, "assistant_order_patterns", None)
    return EntityRules(order_patterns=tuple(patterns)) if patterns else EntityRules()


@dataclass
class Received:
    conversation_id: str
    message_id: str | None  # None: a redelivery, nothing was done
    replies: list[str]


def receive_message(
    uow: UnitOfWork,
    *,
    channel: str,
    address: str,
    text: str,
    provider_message_id: str,
    now: datetime,
    received_at: datetime | None = None,
    brand: str = "our shop",
    rules: EntityRules | None = None,
    wake_actions: Any = None,
) -> Received | None:
    """Stores one customer message (once, even if redelivered), runs the assistant and queues its reply."""
    repo = ConversationRepository(uow.conn)
    if channel == "email":
        text = latest_email_text(text)
    if not channel or not address:
        log.warning("inbound message without channel or sender ignored: %s", provider_message_id)
        return None
    if repo.message_exists(channel, provider_message_id):
        return None
    conv = _conversation_for(repo, uow, channel=channel, address=address, text=text, now=now)
    if conv is None:
        return None
    received_at = received_at or now
    state = DialogueState.from_json(conv.state)
    understood = understand(text, now=now, rules=rules)
    message_id = repo.add_message(
        conversation_id=conv.id,
        direction="inbound",
        author="customer",
        channel=channel,
        body=text,
        now=received_at,
        provider_message_id=provider_message_id,
        intent=understood.intent,
        confidence=understood.confidence,
        meta={"entities": understood.entities},
    )
    uow.publish(
        MessageReceived(
            occurred_at=now,
            conversation_id=conv.id,
            customer_id=conv.customer_id,
            message_id=message_id,
            channel=channel,
        )
    )
    if conv.status == "resolved":  # a late satisfaction rating
        score = parse_rating(text)
        if score is not None and conv.satisfaction is None:
            repo.update(conv.id, satisfaction=score, updated_at=now)
            state.awaiting = None
            repo.update(conv.id, state=state.to_json())
            replies = ["Thank you for your feedback!"]
            _send(uow, repo, conv, replies, now=now, reply_to=message_id)
            return Received(conv.id, message_id, replies)
        return Received(conv.id, message_id, [])
    if conv.status in ("waiting", "assigned"):
        repo.update(conv.id, updated_at=now)  # a person has it: no bot reply
        return Received(conv.id, message_id, [])

    if (
        channel in ("sms", "whatsapp", "messenger")
        and conv.customer_id
        and state.verified_customer_id is None
    ):
        state.verified_customer_id = conv.customer_id  # the channel identity matches the customer
    if channel == "email" and state.email is None:
        state.email = address.lower()
    dialogue = Dialogue(SqlOrderFacts(uow.conn), brand=brand)
    msg = Message(
        text=text,
        intent=understood.intent,
        confidence=understood.confidence,
        entities=understood.entities,
        is_low_confidence=understood.is_low_confidence,
    )
    turn = dialogue.respond(state, msg, now=now, channel_address=f"{channel}:{address}")
    facts = SqlOrderFacts(uow.conn)
    if turn.verification is not None:
        facts.record_verification(
            conversation_id=conv.id,
            keys=turn.verification.keys,
            is_success=turn.verification.is_success,
            now=now,
            prune_before=now - VERIFICATION_WINDOW,
        )
    replies = list(turn.replies)
    final = turn
    if turn.action is not None:
        # Confirmed: the action runs through the domain commands in their own transaction (see
        # perform_pending_actions), after this one commits; the assistant then confirms the outcome.
        uow.conn.execute(
            insert(assistant_actions).values(
                id=new_id(),
                conversation_id=conv.id,
                kind=turn.action.kind,
                request=turn.action.as_dict(),
                status="pending",
                attempts=0,
                created_at=now,
            )
        )
        if wake_actions is not None:
            wake_actions()
    _apply_turn(
        uow,
        repo,
        conv,
        turn,
        final,
        replies,
        understood_intent=understood.intent,
        now=now,
        reply_to=message_id,
    )
    return Received(conv.id, message_id, replies)


def perform_pending_actions(ctx: Any, *, limit: int = 20, actions: Any = None) -> int:
    """Runs confirmed actions (oldest first), each through the domain commands in their own transaction, then
    confirms the outcome in the conversation. Returns how many ran. Called by the background loop and tests."""
    performer = actions or ctx.services.get("assistant_actions") or LastmileActions(ctx)
    with ctx.engine.connect() as conn:
        pending = (
            conn.execute(
                select(assistant_actions.c.id)
                .where(assistant_actions.c.status == "pending")
                .order_by(assistant_actions.c.created_at, assistant_actions.c.id)
                .limit(limit)
            )
            .scalars()
            .all()
        )
    done = 0
    for action_id in pending:
        with ctx.engine.begin() as conn:  # claim it: only one runner performs an action
            claimed = conn.execute(
                update(assistant_actions)
                .where(assistant_actions.c.id == action_id, assistant_actions.c.status == "pending")
                .values(status="running", attempts=assistant_actions.c.attempts + 1)
            ).rowcount
            row = conn.execute(select(assistant_actions).where(assistant_actions.c.id == action_id)).one()
        if claimed != 1:
            continue
        request = ActionRequest.from_dict(row.request)
        try:
            result = performer.perform(request, now=ctx.clock.now())
        except Exception:
            log.exception("assistant action %s (%s) failed", action_id, request.kind)
            result = ActionResult(
                False,
                "something went wrong on our side, so a colleague will do it for you.",
                needs_person=True,
            )
        with ctx.uow() as uow:
            finish_action(
                uow,
                action_id=action_id,
                conversation_id=row.conversation_id,
                request=request,
                result=result,
                now=ctx.clock.now(),
                brand=ctx.settings.brand_name,
            )
            uow.commit()
        done += 1
    return done


def finish_action(
    uow: UnitOfWork,
    *,
    action_id: str,
    conversation_id: str,
    request: ActionRequest,
    result: ActionResult,
    now: datetime,
    brand: str,
) -> None:
    """Records an action's outcome and tells the customer (or hands over when it needs a person)."""
    repo = ConversationRepository(uow.conn)
    conv = repo.get_or_raise(conversation_id, for_update=True)
    status = "done" if result.is_done else "needs_person" if result.needs_person else "refused"
    uow.conn.execute(
        update(assistant_actions)
        .where(assistant_actions.c.id == action_id)
        .values(status=status, result=result.detail, finished_at=now)
    )
    state = DialogueState.from_json(conv.state)
    if state.is_handed_off or conv.status in ("waiting", "assigned", "resolved"):
        return  # a person has the conversation; the outcome is on the action row
    turn = Dialogue(SqlOrderFacts(uow.conn), brand=brand).after_action(state, request, result)
    _apply_turn(
        uow,
        repo,
        conv,
        turn,
        turn,
        list(turn.replies),
        understood_intent=turn.intent,
        now=now,
        reply_to=f"action:{action_id}",
    )


def _conversation_for(
    repo: ConversationRepository, uow: UnitOfWork, *, channel: str, address: str, text: str, now: datetime
) -> Any | None:
    if channel == WEB_CHAT:
        # Web chat: the sender is the chat session, which is the conversation id.
        conv = repo.get(address, for_update=True)
        if conv is None:
            log.warning("web chat message for unknown session %s ignored", address)
        return conv
    conv = repo.latest_for_address(channel, address)
    if conv is not None and conv.status == "resolved":
        state = conv.state or {}
        is_rating = state.get("awaiting") == "satisfaction" and parse_rating(text) is not None
        if not (is_rating and conv.resolved_at and now - conv.resolved_at <= SATISFACTION_GRACE):
            conv = None
    if conv is None:
        if channel == "email":
            customer_id = customer_for_email(uow.conn, address)
        else:
            customer_id = customer_for_channel(uow.conn, channel=channel, address=address)
        conv_id = repo.add(channel=channel, address=address, customer_id=customer_id, now=now)
        conv = repo.get_or_raise(conv_id, for_update=True)
    return conv


def _apply_turn(
    uow: UnitOfWork,
    repo: ConversationRepository,
    conv: Any,
    turn: Turn,
    final: Turn,
    replies: list[str],
    *,
    understood_intent: str,
    now: datetime,
    reply_to: str,
) -> None:
    state = final.state
    values: dict[str, Any] = {
        "state": state.to_json(),
        "intent": final.intent or understood_intent,
        "updated_at": now,
        "order_id": state.order_id or conv.order_id,
        "is_verified": bool(state.verified_customer_id or state.verified_order_id),
    }
    customer_id = conv.customer_id or state.verified_customer_id
    if customer_id and customer_id != conv.customer_id:
        values["customer_id"] = customer_id
    if state.contact_reason and not conv.contact_reason:
        values["contact_reason"] = state.contact_reason
    satisfaction = turn.satisfaction if turn.satisfaction is not None else final.satisfaction
    if satisfaction is not None:
        values["satisfaction"] = satisfaction
    handoff = final.handoff or turn.handoff
    if handoff is not None:
        values.update(
            status="waiting",
            handoff_reason=handoff.reason,
            summary=handoff.summary,
            urgency=handoff.urgency,
            handed_off_at=now,
            is_contained=False,
        )
    elif turn.is_resolved or final.is_resolved:
        values.update(status="resolved", resolved_at=now, is_contained=conv.handed_off_at is None)
    if replies and conv.first_reply_at is None:
        values["first_reply_at"] = now
    repo.update(conv.id, **values)
    refreshed = repo.get_or_raise(conv.id)
    _send(
        uow,
        repo,
        refreshed,
        replies,
        now=now,
        reply_to=reply_to,
        meta={"order_id": final.facts_order_id or turn.facts_order_id},
    )
    if handoff is not None:
        uow.publish(
            ConversationHandedOff(
                occurred_at=now,
                conversation_id=conv.id,
                customer_id=refreshed.customer_id,
                reason=handoff.reason,
                summary=handoff.summary,
            )
        )
    elif values.get("status") == "resolved":
        uow.publish(
            ConversationResolved(
                occurred_at=now,
                conversation_id=conv.id,
                customer_id=refreshed.customer_id,
                contact_reason=refreshed.contact_reason,
                cause=refreshed.cause,
                is_contained=bool(refreshed.is_contained),
            )
        )


def _send(
    uow: UnitOfWork,
    repo: ConversationRepository,
    conv: Any,
    replies: list[str],
    *,
    now: datetime,
    reply_to: str,
    author: str = "bot",
    author_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Stores each reply; on messaging channels also queues it for delivery on the channel the customer used."""
    from doorstep.notifications.api import queue_reply

    for i, text in enumerate(replies):
        info: dict[str, Any] = dict(meta or {})
        if conv.channel in REPLY_CHANNELS:
            # to a sender no profile holds too (customer_id None): the reply goes back to where they wrote from
            info["notification_id"] = queue_reply(
                uow.conn,
                customer_id=conv.customer_id,
                channel=conv.channel,
                to_address=conv.channel_address,
                text=text,
                dedupe_key=f"conversation-reply:{reply_to}:{i}",
                now=now,
                order_id=conv.order_id,
                conversation_id=conv.id,
            )
        repo.add_message(
            conversation_id=conv.id,
            direction="outbound",
            author=author,
            author_id=author_id,
            channel=conv.channel,
            body=text,
            now=now,
            meta=info,
        )


# ---- agent side ------------------------------------------------------------------------------------------------
def open_chat_session(
    uow: UnitOfWork, *, now: datetime, brand: str, verified_order: Any | None = None
) -> str:
    """A new web chat conversation, verified for one order when opened from a signed tracking link."""
    state = DialogueState()
    customer_id = None
    if verified_order is not None:
        state.verified_order_id = verified_order.id
        state.order_id, state.order_number = verified_order.id, verified_order.number
        state.customer_id = customer_id = verified_order.customer_id
    repo = ConversationRepository(uow.conn)
    conv_id = repo.add(channel=WEB_CHAT, address="", customer_id=customer_id, now=now, state=state.to_json())
    repo.update(
        conv_id, channel_address=conv_id, is_verified=verified_order is not None, order_id=state.order_id
    )
    greeting = f"Hi! This is {brand}'s assistant. "
    greeting += f"I can see order {verified_order.number}. " if verified_order is not None else ""
    greeting += "How can I help?"
    repo.add_message(
        conversation_id=conv_id, direction="outbound", author="bot", channel=WEB_CHAT, body=greeting, now=now
    )
    return conv_id


def agent_reply(uow: UnitOfWork, *, conversation_id: str, agent_id: str, text: str, now: datetime) -> None:
    repo = ConversationRepository(uow.conn)
    conv = repo.get_or_raise(conversation_id, for_update=True)
    if not text.strip():
        raise ConversationError("a reply needs some text", code=ErrorCode.INVALID)
    if conv.status == "resolved":
        raise ConversationError(
            "this conversation is resolved; the customer's next message opens a new one",
            code=ErrorCode.CONFLICT,
        )
    values: dict[str, Any] = {"updated_at": now}
    if conv.first_reply_at is None:
        values["first_reply_at"] = now
    if conv.status in ("bot", "waiting"):  # an agent who replies takes the conversation
        values.update(status="assigned", assigned_to=conv.assigned_to or agent_id)
        if conv.handed_off_at is None:
            values.update(
                handed_off_at=now, handoff_reason=conv.handoff_reason or "agent_joined", is_contained=False
            )
        state = DialogueState.from_json(conv.state)
        state.is_handed_off = True
        values["state"] = state.to_json()
    repo.update(conv.id, **values)
    _send(
        uow,
        repo,
        repo.get_or_raise(conv.id),
        [text.strip()],
        now=now,
        reply_to=f"agent:{new_reply_key(now)}",
        author="agent",
        author_id=agent_id,
    )


def new_reply_key(now: datetime) -> str:
    from doorstep.ids import new_id

    return new_id()


def assign(uow: UnitOfWork, *, conversation_id: str, agent_id: str | None, now: datetime) -> None:
    repo = ConversationRepository(uow.conn)
    conv = repo.get_or_raise(conversation_id, for_update=True)
    if conv.status == "resolved":
        raise ConversationError("this conversation is already resolved", code=ErrorCode.CONFLICT)
    status = "assigned" if agent_id else "waiting"
    state = DialogueState.from_json(conv.state)
    state.is_handed_off = True
    values: dict[str, Any] = {
        "assigned_to": agent_id,
        "status": status,
        "updated_at": now,
        "state": state.to_json(),
    }
    if conv.handed_off_at is None:
        values.update(handed_off_at=now, handoff_reason="agent_joined", is_contained=False)
    repo.update(conv.id, **values)


CAUSES = (
    "late",
    "failed_attempt",
    "damaged",
    "lost",
    "missing_item",
    "wrong_item",
    "not_received",
    "refund_slow",
    "invoice_missing",
    "address_problem",
    "product_quality",
    "changed_mind",
    "fraud",
    "information",
    "other",
)
OWNERS = ("carrier", "warehouse", "payments", "product", "service", "customer")
# Pre-filled likely cause and owner for a contact reason or problem kind.
DEFAULT_CAUSE = {
    "track_order": ("late", "carrier"),
    "delivery_eta": ("information", "service"),
    "reschedule_delivery": ("failed_attempt", "carrier"),
    "change_delivery_address": ("address_problem", "customer"),
    "cancel_order": ("changed_mind", "customer"),
    "start_return": ("product_quality", "product"),
    "refund_status": ("refund_slow", "payments"),
    "invoice_request": ("invoice_missing", "payments"),
    "damaged": ("damaged", "carrier"),
    "missing_item": ("missing_item", "warehouse"),
    "wrong_item": ("wrong_item", "warehouse"),
    "not_received": ("not_received", "carrier"),
    "fraud": ("fraud", "payments"),
    "complaint": ("other", "service"),
}


def resolve(
    uow: UnitOfWork,
    *,
    conversation_id: str,
    contact_reason: str | None,
    cause: str | None,
    owner: str | None,
    now: datetime,
    ask_satisfaction: bool = True,
) -> None:
    """Closes a conversation with its contact reason, likely cause and owner, so every contact is counted."""
    repo = ConversationRepository(uow.conn)
    conv = repo.get_or_raise(conversation_id, for_update=True)
    if conv.status == "resolved":
        raise ConversationError("this conversation is already resolved", code=ErrorCode.CONFLICT)
    if cause and cause not in CAUSES:
        raise ConversationError(f"unknown cause {cause!r}; use one of {', '.join(CAUSES)}")
    if owner and owner not in OWNERS:
        raise ConversationError(f"unknown owner {owner!r}; use one of {', '.join(OWNERS)}")
    state = DialogueState.from_json(conv.state)
    replies = []
    if ask_satisfaction and conv.satisfaction is None and not state.asked_satisfaction:
        state.asked_satisfaction = True
        state.awaiting = "satisfaction"
        replies.append(
            "We've closed this conversation. How happy are you with the help you got, from 1 (not at "
            "all) to 5 (very)?"
        )
    repo.update(
        conv.id,
        status="resolved",
        resolved_at=now,
        updated_at=now,
        contact_reason=contact_reason or conv.contact_reason or conv.intent,
        cause=cause,
        cause_owner=owner,
        is_contained=conv.handed_off_at is None,
        state=state.to_json(),
    )
    refreshed = repo.get_or_raise(conv.id)
    if replies:
        _send(uow, repo, refreshed, replies, now=now, reply_to=f"resolve:{conv.id}", author="system")
    uow.publish(
        ConversationResolved(
            occurred_at=now,
            conversation_id=conv.id,
            customer_id=refreshed.customer_id,
            contact_reason=refreshed.contact_reason,
            cause=cause,
            is_contained=bool(refreshed.is_contained),
        )
    )


def suggested_cause(conv: Any) -> tuple[str | None, str | None]:
    state = conv.state or {}
    key = state.get("problem_kind") or conv.contact_reason or conv.intent
    if conv.handoff_reason == "complaint":
        key = key if key in DEFAULT_CAUSE else "complaint"
    return DEFAULT_CAUSE.get(key or "", (None, None))


def purge_unlinked(uow: UnitOfWork, *, older_than: timedelta, now: datetime) -> int:
    """Erases conversations never linked to a customer (unverified strangers) once idle for `older_than`:
    their messages hold personal data that no customer erasure would reach."""
    from sqlalchemy import delete

    from doorstep.conversations.tables import conversations

    return int(
        uow.conn.execute(
            delete(conversations).where(
                conversations.c.customer_id.is_(None), conversations.c.updated_at < now - older_than
            )
        ).rowcount
    )
