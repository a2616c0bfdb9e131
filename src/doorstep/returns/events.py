from __future__ import annotations

from dataclasses import dataclass

from doorstep.bus.messages import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ReturnEvent(DomainEvent):
    return_id: str
    order_id: str
    customer_id: str

    @property
    def key(self) -> str:
        return f"order:{self.order_id}"


@dataclass(frozen=True, kw_only=True)
class ReturnRequested(ReturnEvent):
    reason_code: str
    resolution: str


@dataclass(frozen=True, kw_only=True)
class ReturnApproved(ReturnEvent):
    method: str


@dataclass(frozen=True, kw_only=True)
class ReturnRejected(ReturnEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class ReturnLabelIssued(ReturnEvent):
    tracking_number: str
    label_path: str


@dataclass(frozen=True, kw_only=True)
class ReturnReceived(ReturnEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class RefundIssued(ReturnEvent):
    amount: str
    currency: str


@dataclass(frozen=True, kw_only=True)
class ExchangeShipped(ReturnEvent):
    exchange_order_id: str
