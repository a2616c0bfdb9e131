"""Domain events of shipments: what the last mile tells the rest of Doorstep.

Every event carries order_id and customer_id (None for a scan whose shipment is not yet matched) so journeys
can address the customer without another lookup. Keyed by order, falling back to the shipment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from doorstep.bus.messages import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ShipmentEvent(DomainEvent):
    shipment_id: str
    order_id: str | None
    customer_id: str | None

    @property
    def key(self) -> str:
        return f"order:{self.order_id}" if self.order_id else f"shipment:{self.shipment_id}"


@dataclass(frozen=True, kw_only=True)
class ShipmentCreated(ShipmentEvent):
    carrier: str
    tracking_number: str


@dataclass(frozen=True, kw_only=True)
class ShipmentStatusChanged(ShipmentEvent):
    """Pending | InfoReceived | InTransit | OutForDelivery | AttemptFail | Delivered | AvailableForPickup |
    Exception | Expired."""

    status: str
    previous_status: str | None
    subtag: str | None = None
    location: str | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentDispatched(ShipmentEvent):
    promised_to: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentOutForDelivery(ShipmentEvent):
    eta_from: datetime | None = None
    eta_to: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentPredictedLate(ShipmentEvent):
    promised_to: datetime
    predicted_from: datetime
    predicted_to: datetime
    delay_hours: float
    confidence: float
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentStalled(ShipmentEvent):
    status: str
    hours_since_scan: float


@dataclass(frozen=True, kw_only=True)
class ShipmentProbablyLost(ShipmentEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class DeliveryAttemptFailed(ShipmentEvent):
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentReadyForPickup(ShipmentEvent):
    location: str | None
    pickup_deadline: datetime | None


@dataclass(frozen=True, kw_only=True)
class ShipmentReturnedToSender(ShipmentEvent):
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentDelivered(ShipmentEvent):
    delivered_at: datetime
    is_late: bool
    delay_hours: float  # 0 when on time
    subtag: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeliveryChanged(ShipmentEvent):
    """The customer (or the assistant, or an agent) changed the delivery: slot, pickup point, safe place,
    neighbour, instructions."""

    kind: str
    detail: dict[str, object]
    requested_by: str


@dataclass(frozen=True, kw_only=True)
class DriverDeparted(ShipmentEvent):
    eta_from: datetime
    eta_to: datetime


@dataclass(frozen=True, kw_only=True)
class ProofOfDeliveryRecorded(ShipmentEvent):
    proof_id: str
    delivered_at: datetime
    recipient_name: str | None = None
