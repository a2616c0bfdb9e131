"""What the dialogue needs from the rest of Doorstep, as small interfaces: live facts about orders (read)
and the customer actions (write). The dialogue depends only on these; adapters.py implements them on the
store and, for actions, on the domain commands the tracking page uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class ShipmentFacts:
    id: str
    carrier: str
    tracking_number: str
    status: (
        str  # normalised: Pending | InfoReceived | InTransit | OutForDelivery | AttemptFail | Delivered | ...
    )
    promised_from: datetime | None = None
    promised_to: datetime | None = None
    predicted_from: datetime | None = None
    predicted_to: datetime | None = None
    delay_reason: str | None = None
    last_scan_at: datetime | None = None
    last_location: str | None = None
    last_message: str | None = None
    dispatched_at: datetime | None = None
    delivered_at: datetime | None = None
    proof_recipient: str | None = None
    has_proof_photo: bool = False


@dataclass(frozen=True)
class ReturnFacts:
    id: str
    status: str  # requested | approved | rejected | label_issued | in_transit | received | refunded | ...
    resolution: str  # refund | exchange | store_credit
    refund_minor: int | None
    currency: str | None
    requested_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OrderFacts:
    id: str
    number: str  # the shop's order number
    customer_id: str
    status: str
    placed_at: datetime
    email: str | None
    postcode: str | None  # shipping postcode
    customer_postcode: str | None = None
    promised_from: datetime | None = None
    promised_to: datetime | None = None
    shipments: list[ShipmentFacts] = field(default_factory=list)
    returns: list[ReturnFacts] = field(default_factory=list)
    has_invoice: bool = False

    @property
    def is_dispatched(self) -> bool:
        return self.status in DISPATCHED_STEPS or any(
            s.dispatched_at or s.status not in ("Pending", "InfoReceived") for s in self.shipments
        )

    @property
    def is_delivered(self) -> bool:
        return self.status == "delivered" or any(s.status == "Delivered" for s in self.shipments)


DISPATCHED_STEPS = {"dispatched", "out_for_delivery", "delivered", "invoiced", "follow_up_sent", "refunded"}


class OrderFactsPort(Protocol):
    def find_order(self, number: str) -> OrderFacts | None: ...

    def get_order(self, order_id: str) -> OrderFacts | None: ...

    def recent_orders(self, customer_id: str, *, limit: int = 5) -> list[OrderFacts]: ...

    def failed_verifications(self, *, keys: list[str], since: datetime) -> int: ...


@dataclass(frozen=True)
class ActionRequest:
    """An action the customer confirmed: kind is reschedule | redirect | start_return | cancel | resend_invoice."""

    kind: str
    order_id: str
    order_number: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "order_id": self.order_id,
            "order_number": self.order_number,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionRequest:
        return cls(
            kind=data["kind"],
            order_id=data["order_id"],
            order_number=data["order_number"],
            params=dict(data.get("params") or {}),
        )


@dataclass(frozen=True)
class ActionResult:
    is_done: bool
    detail: str  # for the customer: what happened, or why not
    needs_person: bool = False  # the action could not be done automatically; a person takes it over


class ActionsPort(Protocol):
    def perform(self, request: ActionRequest, *, now: datetime) -> ActionResult: ...
