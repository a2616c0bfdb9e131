"""Domain events of orders and the order chain. Keyed by order so each order's events stay in order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from doorstep.bus.messages import DomainEvent


@dataclass(frozen=True, kw_only=True)
class OrderEvent(DomainEvent):
    order_id: str
    customer_id: str

    @property
    def key(self) -> str:
        return f"order:{self.order_id}"


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(OrderEvent):
    external_id: str
    total: str  # Decimal as string
    currency: str
    promised_from: datetime | None = None
    promised_to: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class OrderUpdated(OrderEvent):
    changes: dict[str, object]


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(OrderEvent):
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class OrderRefunded(OrderEvent):
    amount: str  # Decimal as string
    currency: str


@dataclass(frozen=True, kw_only=True)
class OrderStepReached(OrderEvent):
    """A step of the chain: placed, paid, picked, packed, dispatched, out_for_delivery, delivered, invoiced,
    follow_up_sent."""

    step: str


@dataclass(frozen=True, kw_only=True)
class InvoiceIssued(OrderEvent):
    invoice_number: str
    url_path: str  # e.g. /orders/{id}/invoice.pdf (served behind a signed link)


@dataclass(frozen=True, kw_only=True)
class FollowUpDue(OrderEvent):
    """The post-delivery survey is due (scheduled N days after delivery)."""

    delivered_at: datetime
