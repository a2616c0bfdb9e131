"""Domain events of the customers domain (the contract other domains react to)."""

from __future__ import annotations

from dataclasses import dataclass

from doorstep.bus.messages import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CustomerCreated(DomainEvent):
    customer_id: str

    @property
    def key(self) -> str:
        return f"customer:{self.customer_id}"


@dataclass(frozen=True, kw_only=True)
class CustomersMerged(DomainEvent):
    """`merged_id` was folded into `customer_id`; references to it should move."""

    customer_id: str
    merged_id: str
    reason: str

    @property
    def key(self) -> str:
        return f"customer:{self.customer_id}"


@dataclass(frozen=True, kw_only=True)
class ConsentChanged(DomainEvent):
    customer_id: str
    channel: str
    topic: str  # service | marketing
    is_granted: bool
    source: str

    @property
    def key(self) -> str:
        return f"customer:{self.customer_id}"


@dataclass(frozen=True, kw_only=True)
class CustomerErased(DomainEvent):
    customer_id: str

    @property
    def key(self) -> str:
        return f"customer:{self.customer_id}"
