"""Journeys react to domain events: each matching rule queues one message (idempotent by dedupe key). No
network here: the sender loop (services.py) renders, chooses the channel and delivers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from doorstep.bus.messages import Envelope
from doorstep.bus.registry import Bus, HandlerContext, PrepareContext
from doorstep.notifications.journeys import JourneyStore, event_fields
from doorstep.notifications.model import Journey, Rule
from doorstep.notifications.repository import NotificationRepository

HANDLER_NAME = "notifications.journey"
_default_store = JourneyStore()


def _store_of(services: dict[str, Any]) -> JourneyStore:
    store = services.get("notification_journeys")
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


def queued_message(
    *,
    rule: Rule,
    event_type: str,
    payload: dict[str, Any],
    occurred_at: datetime,
    customer_id: str,
    locale: str,
    now: datetime,
    journey_version: int = 0,
) -> dict[str, Any]:
    """The notifications row a rule asks for (id and status are the repository's)."""
    return {
        "customer_id": customer_id,
        "order_id": payload.get("order_id"),
        "shipment_id": payload.get("shipment_id"),
        "trigger": rule.trigger,
        "channel": "auto",  # chosen at send time, from the preferences and consent as they are then
        "locale": locale,
        "topic": rule.topic,
        "dedupe_key": rule.dedupe_key(event_type, payload),
        "created_at": now,
        "scheduled_for": occurred_at + timedelta(seconds=rule.delay_s) if rule.delay_s else now,
        "event_occurred_at": occurred_at,
        "detail": {
            "event_type": event_type,
            "event": payload,
            "is_urgent": rule.is_urgent,
            "cancel_if": {
                "shipment_status": list(rule.cancel_if_shipment_status),
                "order_status": list(rule.cancel_if_order_status),
            },
            "journey_version": journey_version,
        },
    }


def _matching_rules(journey: Journey, envelope: Envelope) -> list[Rule]:
    return [r for r in journey.rules_for(envelope.event_type) if r.matches(envelope.payload)]


def _messages_for(
    envelope: Envelope, rules: list[Rule], customer: Any, *, now: datetime
) -> list[dict[str, Any]]:
    payload = envelope.payload
    occurred_at = _as_datetime(payload.get("occurred_at"), envelope.occurred_at)
    return [
        queued_message(
            rule=rule,
            event_type=envelope.event_type,
            payload=payload,
            occurred_at=occurred_at,
            customer_id=customer.id,
            locale=customer.locale or "en",
            now=now,
        )
        for rule in rules
    ]


def _wake_sender(ctx: HandlerContext) -> None:
    """After the commit: a sender woken earlier would find nothing due yet and sleep for its poll interval."""
    wake = ctx.services.get("wake_sender")
    if wake is not None:
        ctx.uow.after_commit(wake)


def react_to_event(envelope: Envelope, ctx: HandlerContext) -> None:
    conn = ctx.uow.conn
    rules = _matching_rules(_store_of(ctx.services).current(conn), envelope)
    if not rules:
        return
    repo = NotificationRepository(conn)
    payload = envelope.payload
    customer = repo.resolve_customer(payload.get("customer_id"), payload.get("order_id"))
    if customer is None:
        return  # nobody to tell (a scan not yet matched to an order)
    queued = False
    for values in _messages_for(envelope, rules, customer, now=ctx.clock.now()):
        queued |= repo.add_queued(**values)
    if queued:
        _wake_sender(ctx)


def _planned_messages(
    envelopes: list[Envelope], conn: Any, services: dict[str, Any], *, now: datetime
) -> list[dict[str, Any]]:
    """The rows the journey asks for: one journey check, customers resolved with IN queries. Reads only."""
    journey = _store_of(services).current(conn)
    wanted = [(e, rules) for e in envelopes if (rules := _matching_rules(journey, e))]
    if not wanted:
        return []
    customers = NotificationRepository(conn).resolve_customers(
        [(e.payload.get("customer_id"), e.payload.get("order_id")) for e, _ in wanted]
    )
    return [
        values
        for (envelope, rules), customer in zip(wanted, customers, strict=True)
        if customer is not None
        for values in _messages_for(envelope, rules, customer, now=now)
    ]


def prepare_events(envelopes: list[Envelope], ctx: PrepareContext) -> list[dict[str, Any]]:
    """Read ahead, outside the write lock: what a journey's rules, a customer's locale and the time say stays
    right however late the rows are inserted, and the insert is idempotent by dedupe key."""
    return _planned_messages(envelopes, ctx.conn, ctx.services, now=ctx.clock.now())


def react_to_events(envelopes: list[Envelope], ctx: HandlerContext) -> None:
    """The batch form of react_to_event: one journey check, customers resolved with IN queries, all the
    messages queued with one insert (`ctx.prepared`: the messages prepare_events made of these envelopes)."""
    messages = ctx.prepared
    if messages is None:
        messages = _planned_messages(envelopes, ctx.uow.conn, ctx.services, now=ctx.clock.now())
    if messages and NotificationRepository(ctx.uow.conn).add_queued_many(messages):
        _wake_sender(ctx)


def register(bus: Bus) -> None:
    for event_type in sorted(event_fields()):
        bus.subscribe(event_type, HANDLER_NAME, react_to_event, batch=react_to_events, prepare=prepare_events)
