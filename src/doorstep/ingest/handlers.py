"""The Segment projection: routes each logged call to the domains it concerns, in log order, in the worker.

identify / track / page / screen / group / alias -> customers (identity, traits, consent, timeline);
e-commerce track calls -> orders and products as well.
"""

from __future__ import annotations

from typing import Any

from doorstep.bus.registry import Bus, HandlerContext
from doorstep.customers import handlers as customers
from doorstep.customers import tables as customer_tables  # noqa: F401  (replay looks tables up by name)
from doorstep.customers.model import obj
from doorstep.orders import handlers as orders
from doorstep.orders import tables as order_tables  # noqa: F401

# Tables this projection owns, parents first: `doorstep events replay` empties them in reverse and rebuilds.
PROJECTION_TABLES = [
    "customers",
    "identities",
    "identity_links",
    "consents",
    "customer_events",
    "products",
    "orders",
    "order_lines",
    "order_steps",
]


def register(bus: Bus) -> None:
    bus.on_log("segment", project_segment, tables=PROJECTION_TABLES)


def project_segment(row: Any, ctx: HandlerContext) -> None:
    payload = row.payload
    now = ctx.clock.now()
    customer_id = customers.record_call(
        payload,
        log_id=row.id,
        message_id=row.message_id,
        occurred_at=row.occurred_at,
        uow=ctx.uow,
        now=now,
        default_region=ctx.settings.default_phone_region or None,
    )
    if customer_id is None or row.type != "track" or row.name not in orders.ECOMMERCE_EVENTS:
        return
    context = obj(payload, "context")
    properties = obj(payload, "properties")
    source = customers.campaign_source(context, properties)
    orders.record_commerce_event(
        row.name,
        payload,
        customer_id=customer_id,
        occurred_at=row.occurred_at,
        message_id=row.message_id,
        campaign_source=str(source)[:100] if source else None,
        uow=ctx.uow,
        now=now,
        default_currency=ctx.settings.default_currency,
    )
