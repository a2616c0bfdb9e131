"""Use cases of the orders domain fed by Segment's V2 e-commerce events, and reactions to customer merges.

`record_commerce_event` runs inside the Segment log projection (ingest/handlers.py):
- Order Completed creates the order (or updates it when it exists), Order Updated updates it (creating it
  when it was never seen), Order Cancelled cancels, Order Refunded records a (partial) refund;
- product events (Product Viewed, Product Added, ... and the lists in Order/Checkout events) keep the
  products table current.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from doorstep.bus.messages import Envelope
from doorstep.bus.registry import Bus, HandlerContext
from doorstep.customers.events import CustomersMerged
from doorstep.customers.model import obj
from doorstep.db.uow import UnitOfWork
from doorstep.orders.model import (
    MoneyError,
    Order,
    external_order_id,
    normalise_currency,
    order_facts,
    parse_decimal,
)

log = logging.getLogger("doorstep.orders")

ORDER_COMPLETED = "Order Completed"
ORDER_UPDATED = "Order Updated"
ORDER_CANCELLED = "Order Cancelled"
ORDER_REFUNDED = "Order Refunded"
ORDER_EVENTS = frozenset({ORDER_COMPLETED, ORDER_UPDATED, ORDER_CANCELLED, ORDER_REFUNDED})

# The rest of Segment's V2 e-commerce spec: these carry products (one, or a `products` list) and land on the
# customer's timeline; their products update the catalogue.
PRODUCT_EVENTS = frozenset(
    {
        "Products Searched", "Product List Viewed", "Product List Filtered", "Promotion Viewed",
        "Promotion Clicked", "Product Clicked", "Product Viewed", "Product Added", "Product Removed",
        "Cart Viewed", "Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
        "Payment Info Entered", "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
        "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart",
        "Product Shared", "Cart Shared", "Product Reviewed",
    }
)
ECOMMERCE_EVENTS = ORDER_EVENTS | PRODUCT_EVENTS


def register(bus: Bus) -> None:
    bus.subscribe(CustomersMerged, "orders.follow_customer_merge", follow_customer_merge)


def follow_customer_merge(envelope: Envelope, ctx: HandlerContext) -> None:
    """Orders of a merged profile move to the profile it was merged into (idempotent: a second run moves 0)."""
    payload = envelope.payload
    ctx.uow.orders.move_customer(from_customer_id=payload["merged_id"], to_customer_id=payload["customer_id"])


def record_commerce_event(
    name: str,
    payload: Mapping[str, Any],
    *,
    customer_id: str,
    occurred_at: datetime,
    message_id: str,
    campaign_source: str | None,
    uow: UnitOfWork,
    now: datetime,
    default_currency: str,
) -> Order | None:
    """Applies one e-commerce track call; returns the order it touched, if any."""
    properties = obj(payload, "properties")
    repo = uow.orders
    currency = _currency(properties, default_currency)
    repo.upsert_products(catalogue_items(properties, currency), now=now)
    if name not in ORDER_EVENTS:
        return None
    external_id = external_order_id(properties)
    if external_id is None:
        log.warning("%s (message %s) has no properties.order_id; no order recorded", name, message_id)
        return None
    order = repo.get_by_external_id(external_id)
    facts = order_facts(properties, external_id=external_id)
    if name in (ORDER_COMPLETED, ORDER_UPDATED):
        if order is None:
            order = Order.place(facts, customer_id=customer_id, at=occurred_at, now=now,
                                default_currency=default_currency, properties=properties,
                                campaign_source=campaign_source)
            repo.add(order)
        else:
            order.update(facts, at=occurred_at, now=now, properties=properties)
            repo.save(order)
    elif order is None:
        log.warning("%s for unknown order %s (message %s) ignored", name, external_id, message_id)
        return None
    elif name == ORDER_CANCELLED:
        reason = str(properties.get("reason") or properties.get("cancel_reason") or "")[:200]
        if order.cancel(reason=reason, at=occurred_at, now=now):
            repo.save(order)
    elif name == ORDER_REFUNDED:
        amount = None
        for key in ("total", "revenue", "value", "amount"):
            if properties.get(key) is not None:
                try:
                    amount = abs(parse_decimal(properties[key]))  # some shops send refunds as negative amounts
                except MoneyError:
                    continue
                break
        if order.refund(amount, refund_key=message_id, at=occurred_at, now=now) is not None:
            repo.save(order)
    if facts.warnings:
        log.info("order %s (message %s): %s", external_id, message_id, "; ".join(facts.warnings))
    uow.collect(order.events)
    return order


def _currency(properties: Mapping[str, Any], default: str) -> str:
    try:
        return normalise_currency(properties.get("currency") or default)
    except MoneyError:
        return normalise_currency(default)


def catalogue_items(properties: Mapping[str, Any], currency: str) -> list[dict[str, Any]]:
    """Products an e-commerce call mentions: the call itself (Product Viewed ...) or its `products` list."""
    from doorstep.orders.model import Money

    candidates: list[Mapping[str, Any]] = []
    if properties.get("product_id") is not None:
        candidates.append(properties)
    if isinstance(properties.get("products"), list):
        candidates.extend(p for p in properties["products"] if isinstance(p, dict))
    items = []
    for product in candidates:
        product_id = product.get("product_id") or product.get("productId")
        if product_id is None or isinstance(product_id, dict | list | bool):
            continue
        item: dict[str, Any] = {"id": str(product_id).strip()[:100]}
        if not item["id"]:
            continue
        for key, width in (("sku", 100), ("name", 300), ("category", 200)):
            value = product.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                item[key] = str(value).strip()[:width]
        if product.get("price") is not None:
            try:
                item["price_minor"] = Money(parse_decimal(product["price"]), currency).minor
                item["currency"] = currency
            except MoneyError:
                pass
        items.append(item)
    return items
