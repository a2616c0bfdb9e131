"""Journeys react to domain events: each matching rule queues one message (idempotent by dedupe key). No
network here: the sender loop (services.py) renders, chooses the channel and delivers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from doorstep.bus.messages import Envelope
from doorstep.bus.registry import Bus, HandlerContext
from doorstep.notifications.journeys import JourneyStore, event_fields
from doorstep.notifications.model import Rule
from doorstep.notifications.repository import NotificationRepository

HANDLER_NAME = "notifications.journey"
_default_store = JourneyStore()


def _store(ctx: HandlerContext) -> JourneyStore:
    store = ctx.services.get("notification_journeys")
    return store if store is not None else _default_store


def _as_datetime(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return fallback
    return fallback


def queue_for_rule(
    repo: NotificationRepository,
    *,
    rule: Rule,
    event_type: str,
    payload: dict[str, Any],
    occurred_at: datetime,
    customer_id: str,
    locale: str,
    now: datetime,
    journey_version: int = 0,
) -> bool:
    """Queues the message a rule asks for; False if this state change was already queued."""
    return repo.add_queued(
        customer_id=customer_id,
        order_id=payload.get("order_id"),
        shipment_id=payload.get("shipment_id"),
        trigger=rule.trigger,
        channel="auto",  # chosen at send time, from the preferences and consent as they are then
        locale=locale,
        topic=rule.topic,
        dedupe_key=rule.dedupe_key(event_type, payload),
        created_at=now,
        scheduled_for=occurred_at + timedelta(seconds=rule.delay_s) if rule.delay_s else now,
        event_occurred_at=occurred_at,
        detail={
            "event_type": event_type,
            "event": payload,
            "is_urgent": rule.is_urgent,
            "cancel_if": {
                "shipment_status": list(rule.cancel_if_shipment_status),
                "order_status": list(rule.cancel_if_order_status),
            },
            "journey_version": journey_version,
        },
    )


def react_to_event(envelope: Envelope, ctx: HandlerContext) -> None:
    conn = ctx.uow.conn
    journey = _store(ctx).current(conn)
    payload = envelope.payload
    rules = [r for r in journey.rules_for(envelope.event_type) if r.matches(payload)]
    if not rules:
        return
    repo = NotificationRepository(conn)
    customer = repo.resolve_customer(payload.get("customer_id"), payload.get("order_id"))
    if customer is None:
        return  # nobody to tell (a scan not yet matched to an order)
    now = ctx.clock.now()
    occurred_at = _as_datetime(payload.get("occurred_at"), envelope.occurred_at)
    queued = False
    for rule in rules:
        queued |= queue_for_rule(
            repo,
            rule=rule,
            event_type=envelope.event_type,
            payload=payload,
            occurred_at=occurred_at,
            customer_id=customer.id,
            locale=customer.locale or "en",
            now=now,
        )
    wake = ctx.services.get("wake_sender")
    if queued and wake is not None:
        wake()


def register(bus: Bus) -> None:
    for event_type in sorted(event_fields()):
        bus.subscribe(event_type, HANDLER_NAME, react_to_event)
