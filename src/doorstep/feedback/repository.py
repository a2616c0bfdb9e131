"""Persistence of feedback rows (the unit of work owns the transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from doorstep.feedback.tables import feedback
from doorstep.orders.tables import orders


class FeedbackRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(feedback).values(**row))

    def update(self, feedback_id: str, values: dict[str, Any]) -> None:
        self.conn.execute(update(feedback).where(feedback.c.id == feedback_id).values(**values))

    def get_by_external_id(self, external_id: str) -> Any | None:
        return self.conn.execute(
            select(feedback).where(feedback.c.external_id == external_id).with_for_update()
        ).first()

    def existing_external_ids(self, external_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for lo in range(0, len(external_ids), 500):
            chunk = external_ids[lo : lo + 500]
            found.update(
                self.conn.execute(
                    select(feedback.c.external_id).where(feedback.c.external_id.in_(chunk))
                ).scalars()
            )
        return found

    def order(self, order_id: str) -> Any | None:
        return self.conn.execute(
            select(orders.c.id, orders.c.external_id, orders.c.customer_id).where(orders.c.id == order_id)
        ).first()

    def orders_by_external_id(self, external_ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for lo in range(0, len(external_ids), 500):
            chunk = external_ids[lo : lo + 500]
            for row in self.conn.execute(
                select(orders.c.id, orders.c.external_id, orders.c.customer_id).where(
                    orders.c.external_id.in_(chunk)
                )
            ):
                found[row.external_id] = row
        return found
