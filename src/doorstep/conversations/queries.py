"""Read side for the agent inbox: the queue, one conversation, and the customer-360 panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from doorstep.conversations.tables import conversations, messages
from doorstep.customers.tables import customers, identities
from doorstep.notifications.tables import notifications
from doorstep.orders.tables import order_lines, orders
from doorstep.returns.tables import returns
from doorstep.security.model import Principal, Role
from doorstep.security.tables import users
from doorstep.shipments.tables import shipments, tracking_events

OPEN_STATUSES = ("waiting", "assigned")


def visible_to(principal: Principal) -> Any:
    """Agents see the unassigned queue and what is assigned to them; admins see everything."""
    if principal.role == Role.ADMIN:
        return conversations.c.id.is_not(None)
    return or_(
        and_(conversations.c.assigned_to.is_(None), conversations.c.status.in_(("waiting", "bot"))),
        conversations.c.assigned_to == principal.id,
    )


def can_see(principal: Principal, conv: Any) -> bool:
    if principal.role == Role.ADMIN:
        return True
    if conv.assigned_to is None:
        return conv.status in ("waiting", "bot")
    return bool(conv.assigned_to == principal.id)


@dataclass(frozen=True)
class QueueItem:
    id: str
    channel: str
    status: str
    urgency: int
    handoff_reason: str | None
    summary: str | None
    contact_reason: str | None
    customer_name: str | None
    assigned_to_name: str | None
    waiting_since: datetime
    last_message: str | None


def queue(
    conn: Connection, principal: Principal, *, include_resolved: bool = False, limit: int = 200
) -> list[QueueItem]:
    """Conversations that need a person: most urgent first, then longest waiting."""
    statuses = (*OPEN_STATUSES, "resolved") if include_resolved else OPEN_STATUSES
    rows = conn.execute(
        select(
            conversations,
            customers.c.name.label("customer_name"),
            users.c.name.label("agent_name"),
            users.c.email.label("agent_email"),
        )
        .outerjoin(customers, customers.c.id == conversations.c.customer_id)
        .outerjoin(users, users.c.id == conversations.c.assigned_to)
        .where(conversations.c.status.in_(statuses), visible_to(principal))
        .order_by(
            conversations.c.urgency.desc(), conversations.c.handed_off_at.asc(), conversations.c.opened_at
        )
        .limit(limit)
    ).all()
    items = []
    for r in rows:
        last = conn.execute(
            select(messages.c.body)
            .where(messages.c.conversation_id == r.id, messages.c.author == "customer")
            .order_by(messages.c.created_at.desc(), messages.c.id.desc())
            .limit(1)
        ).scalar()
        items.append(
            QueueItem(
                id=r.id,
                channel=r.channel,
                status=r.status,
                urgency=r.urgency,
                handoff_reason=r.handoff_reason,
                summary=r.summary,
                contact_reason=r.contact_reason,
                customer_name=r.customer_name,
                assigned_to_name=(r.agent_name or r.agent_email) if r.assigned_to else None,
                waiting_since=r.handed_off_at or r.opened_at,
                last_message=last,
            )
        )
    return items


def customer_360(
    conn: Connection, customer_id: str, *, exclude_conversation: str | None = None
) -> dict[str, Any]:
    """Profile, orders with shipments and their timelines, returns, past contacts and messages sent."""
    profile = conn.execute(select(customers).where(customers.c.id == customer_id)).first()
    if profile is None:
        return {}
    ids = conn.execute(
        select(identities.c.kind, identities.c.value).where(identities.c.customer_id == customer_id)
    ).all()
    order_rows = conn.execute(
        select(orders)
        .where(orders.c.customer_id == customer_id)
        .order_by(orders.c.placed_at.desc())
        .limit(10)
    ).all()
    order_list = []
    for o in order_rows:
        ships = []
        for s in conn.execute(
            select(shipments).where(shipments.c.order_id == o.id).order_by(shipments.c.created_at)
        ):
            timeline = conn.execute(
                select(tracking_events)
                .where(tracking_events.c.shipment_id == s.id)
                .order_by(tracking_events.c.occurred_at.desc())
                .limit(15)
            ).all()
            ships.append({"row": s, "timeline": timeline})
        lines = conn.execute(
            select(order_lines).where(order_lines.c.order_id == o.id).order_by(order_lines.c.line_no)
        ).all()
        rets = conn.execute(select(returns).where(returns.c.order_id == o.id)).all()
        order_list.append({"row": o, "shipments": ships, "lines": lines, "returns": rets})
    past = select(conversations).where(conversations.c.customer_id == customer_id)
    if exclude_conversation:
        past = past.where(conversations.c.id != exclude_conversation)
    contacts = conn.execute(past.order_by(conversations.c.opened_at.desc()).limit(10)).all()
    sent = conn.execute(
        select(notifications)
        .where(notifications.c.customer_id == customer_id)
        .order_by(notifications.c.created_at.desc())
        .limit(15)
    ).all()
    return {"profile": profile, "identities": ids, "orders": order_list, "contacts": contacts, "sent": sent}


def agents(conn: Connection) -> list[Any]:
    return list(
        conn.execute(
            select(users.c.id, users.c.name, users.c.email)
            .where(users.c.role.in_(("agent", "admin")), users.c.is_active.is_(True))
            .order_by(users.c.email)
        )
    )
