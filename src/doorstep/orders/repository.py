"""Persistence of orders, their lines and steps, and the product catalogue seen in events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from doorstep.db.dialect import insert_ignore, upsert
from doorstep.errors import NotFound
from doorstep.orders.model import Money, Order, OrderLine, ShippingAddress
from doorstep.orders.tables import order_lines, order_steps, orders, products


class OrderRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def get(self, order_id: str, *, for_update: bool = True) -> Order | None:
        return self._load(orders.c.id == order_id, for_update=for_update)

    def get_by_external_id(self, external_id: str, *, for_update: bool = True) -> Order | None:
        return self._load(orders.c.external_id == external_id, for_update=for_update)

    def get_or_raise(self, order_id: str) -> Order:
        order = self.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}")
        return order

    def _load(self, where: Any, *, for_update: bool) -> Order | None:
        query = select(orders).where(where)
        if for_update:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            return None
        currency = row.currency
        order = Order(
            id=row.id,
            external_id=row.external_id,
            customer_id=row.customer_id,
            status=row.status,
            currency=currency,
            total=Money.from_minor(row.total_minor, currency),
            shipping=Money.from_minor(row.shipping_minor or 0, currency),
            tax=Money.from_minor(row.tax_minor or 0, currency),
            discount=Money.from_minor(row.discount_minor or 0, currency),
            placed_at=row.placed_at,
            coupon=row.coupon,
            channel=row.channel,
            campaign_source=row.campaign_source,
            address=ShippingAddress(row.ship_name, row.ship_line1, row.ship_city, row.ship_postcode, row.ship_region,
                                    row.ship_country),
            promised_from=row.promised_from,
            promised_to=row.promised_to,
            properties=dict(row.properties or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for line in self.conn.execute(
            select(order_lines).where(order_lines.c.order_id == row.id).order_by(order_lines.c.line_no)
        ).all():
            order.lines.append(
                OrderLine(line.line_no, line.product_id, line.quantity, Money.from_minor(line.unit_price_minor, currency),
                          line.sku, line.name, line.category)
            )
        for step in self.conn.execute(select(order_steps).where(order_steps.c.order_id == row.id)).all():
            order.steps[step.step] = step.occurred_at
            if step.detail is not None:
                order.step_details[step.step] = step.detail
        return order

    def add(self, order: Order) -> None:
        values = self._values(order)
        values.update(id=order.id, external_id=order.external_id, placed_at=order.placed_at,
                      created_at=order.created_at)
        self.conn.execute(insert(orders).values(**values))
        self._save_children(order)
        order.is_new = False

    def save(self, order: Order) -> None:
        self.conn.execute(update(orders).where(orders.c.id == order.id).values(**self._values(order)))
        self._save_children(order)

    def _values(self, order: Order) -> dict[str, Any]:
        return {
            "customer_id": order.customer_id,
            "status": str(order.status),
            "currency": order.currency,
            "total_minor": order.total.minor,
            "shipping_minor": order.shipping.minor,
            "tax_minor": order.tax.minor,
            "discount_minor": order.discount.minor,
            "coupon": order.coupon,
            "channel": order.channel,
            "campaign_source": order.campaign_source,
            "ship_name": order.address.name,
            "ship_line1": order.address.line1,
            "ship_city": order.address.city,
            "ship_postcode": order.address.postcode,
            "ship_region": order.address.region,
            "ship_country": order.address.country,
            "promised_from": order.promised_from,
            "promised_to": order.promised_to,
            "properties": order.properties,
            "updated_at": order.updated_at,
        }

    def _save_children(self, order: Order) -> None:
        if order.lines_changed:
            # lines are updated in place by number (return lines point at them), extra old ones removed
            rows = [
                {"order_id": order.id, "line_no": line.line_no, "product_id": line.product_id, "sku": line.sku,
                 "name": line.name, "category": line.category, "quantity": line.quantity,
                 "unit_price_minor": line.unit_price.minor}
                for line in order.lines
            ]
            if rows:
                self.conn.execute(
                    upsert(self.conn, order_lines, index_elements=["order_id", "line_no"],
                           update_columns=["product_id", "sku", "name", "category", "quantity", "unit_price_minor"]),
                    rows,
                )
            self.conn.execute(
                delete(order_lines).where(order_lines.c.order_id == order.id, order_lines.c.line_no > len(rows))
            )
            order.lines_changed = False
        step_rows = [
            {"order_id": order.id, "step": step, "occurred_at": at, "detail": order.step_details.get(step)}
            for step, at in order.steps.items()
        ]
        if step_rows:
            self.conn.execute(
                upsert(self.conn, order_steps, index_elements=["order_id", "step"], update_columns=["detail"]),
                step_rows,
            )

    def move_customer(self, *, from_customer_id: str, to_customer_id: str) -> int:
        return self.conn.execute(
            update(orders).where(orders.c.customer_id == from_customer_id).values(customer_id=to_customer_id)
        ).rowcount or 0

    def upsert_products(self, items: list[dict[str, Any]], *, now: datetime) -> None:
        """Keeps the catalogue current from what events say about products (later calls win)."""
        rows: dict[str, dict[str, Any]] = {}
        for item in items:
            rows[item["id"]] = {**item, "updated_at": now}
        if not rows:
            return
        values = list(rows.values())
        for row in values:
            for key in ("sku", "name", "category", "price_minor", "currency"):
                row.setdefault(key, None)
        self.conn.execute(insert_ignore(self.conn, products, index_elements=["id"]), values)
        for row in values:
            changes = {k: v for k, v in row.items() if k != "id" and v is not None}
            self.conn.execute(update(products).where(products.c.id == row["id"]).values(**changes))
