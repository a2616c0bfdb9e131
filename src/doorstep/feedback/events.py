from __future__ import annotations

from dataclasses import dataclass

from doorstep.bus.messages import DomainEvent


@dataclass(frozen=True, kw_only=True)
class FeedbackReceived(DomainEvent):
    feedback_id: str
    customer_id: str | None
    order_id: str | None
    kind: str  # survey | review
    score: int | None  # csat 1-5 or review stars 1-5
    topic: str | None

    @property
    def key(self) -> str:
        return f"order:{self.order_id}" if self.order_id else f"feedback:{self.feedback_id}"
