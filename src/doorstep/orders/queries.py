"""Read side of orders for the API and the staff pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from doorstep.errors import NotFound
from doorstep.orders.model import Money
from doorstep.orders.schemas import (
    OrderLineRead,
    OrderPage,
    OrderRead,
    OrderStepRead,
    OrderSummary,
    ShippingAddressRead,
)
from doorstep.orders.tables import order_lines, order_steps, orders
from doorstep.pagination import decode_cursor, encode_cursor

STEP_ORDER = ["placed", "paid", "picked", "packed", "dispatched", "out_for_delivery", "delivered", "invoiced",
              "follow_up_sent", "cancelled", "refunded"]


def _amount(minor: int | None, currency: str) -> str:
    return str(Money.from_minor(minor or 0, currency).amount)


def _summary(row: Any) -> OrderSummary:
    return OrderSummary(id=row.id, external_id=row.external_id, customer_id=row.customer_id, status=row.status,
                        currency=row.currency, total=_amount(row.total_minor, row.currency), placed_at=row.placed_at,
                        updated_at=row.updated_at)


def get_order(conn: Connection, order_id: str) -> OrderRead:
    """By Doorstep id, or by the shop's order number."""
    row = conn.execute(select(orders).where(orders.c.id == order_id)).first()
    if row is None:
        row = conn.execute(select(orders).where(orders.c.external_id == order_id)).first()
    if row is None:
        raise NotFound(f"no order with id or order number {order_id!r}")
    lines = conn.execute(select(order_lines).where(order_lines.c.order_id == row.id).order_by(order_lines.c.line_no)).all()
    steps = conn.execute(select(order_steps).where(order_steps.c.order_id == row.id)).all()
    rank = {s: i for i, s in enumerate(STEP_ORDER)}
    steps = sorted(steps, key=lambda s: (s.occurred_at, rank.get(s.step, 99)))
    return OrderRead(
        **_summary(row).model_dump(),
        shipping=_amount(row.shipping_minor, row.currency),
        tax=_amount(row.tax_minor, row.currency),
        discount=_amount(row.discount_minor, row.currency),
        coupon=row.coupon,
        channel=row.channel,
        campaign_source=row.campaign_source,
        shipping_address=ShippingAddressRead(name=row.ship_name, line1=row.ship_line1, city=row.ship_city,
                                             postcode=row.ship_postcode, region=row.ship_region,
                                             country=row.ship_country),
        promised_from=row.promised_from,
        promised_to=row.promised_to,
        lines=[OrderLineRead(line_no=line.line_no, product_id=line.product_id, sku=line.sku, name=line.name,
                             category=line.category, quantity=line.quantity,
                             unit_price=_amount(line.unit_price_minor, row.currency)) for line in lines],
        steps=[OrderStepRead(step=s.step, occurred_at=s.occurred_at, detail=s.detail) for s in steps],
        properties=dict(row.properties or {}),
        created_at=row.created_at,
    )


def list_orders(
    conn: Connection,
    *,
    limit: int = 50,
    cursor: str | None = None,
    customer_ids: list[str] | None = None,
    status: str | None = None,
    placed_after: datetime | None = None,
    placed_before: datetime | None = None,
) -> OrderPage:
    """Orders, newest first."""
    query = select(orders)
    if customer_ids is not None:
        query = query.where(orders.c.customer_id.in_(customer_ids))
    if status:
        query = query.where(orders.c.status == status)
    if placed_after is not None:
        query = query.where(orders.c.placed_at >= placed_after)
    if placed_before is not None:
        query = query.where(orders.c.placed_at < placed_before)
    if cursor:
        at, last_id = decode_cursor(cursor, kinds=(datetime, str))
        query = query.where(or_(orders.c.placed_at < at, and_(orders.c.placed_at == at, orders.c.id < last_id)))
    rows = conn.execute(query.order_by(orders.c.placed_at.desc(), orders.c.id.desc()).limit(limit + 1)).all()
    next_cursor = encode_cursor(rows[limit - 1].placed_at, rows[limit - 1].id) if len(rows) > limit else None
    return OrderPage(items=[_summary(r) for r in rows[:limit]], next_cursor=next_cursor)
