"""The order chain: placed, paid, picked, packed, dispatched, out for delivery, delivered, invoiced, follow-up
sent. Pure rules: which step may be recorded now, by whom. Each step is reached once and timestamped."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from doorstep.errors import DoorstepError


class ChainErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    RULE_VIOLATED = "rule_violated"


class OrderChainError(DoorstepError):
    """Base of the order chain's errors."""

    code = ChainErrorCode.INVALID


class OrderNotFound(OrderChainError):
    code = ChainErrorCode.NOT_FOUND
    status = 404


class StepRefused(OrderChainError):
    code = ChainErrorCode.RULE_VIOLATED
    status = 422


STEPS: tuple[str, ...] = (
    "placed",
    "paid",
    "picked",
    "packed",
    "dispatched",
    "out_for_delivery",
    "delivered",
    "invoiced",
    "follow_up_sent",
)
RANK = {step: i for i, step in enumerate(STEPS)}
# Recorded by staff or the shop's back office through the API; the rest follow from shipment events.
MANUAL_STEPS: tuple[str, ...] = ("paid", "picked", "packed")
# A manual step needs the one before it: nobody packs what was never picked.
PREREQUISITE = {"paid": "placed", "picked": "paid", "packed": "picked"}
TERMINAL_STATUSES = frozenset({"cancelled", "refunded"})
FOLLOW_UP_DELAY_DAYS = 2  # the survey goes out two days after delivery: the customer has tried the item


def check_manual_step(
    step: str, *, reached: Mapping[str, datetime], order_status: str, at: datetime, now: datetime
) -> bool:
    """True when `step` should be recorded, False when it already was (idempotent); raises when refused."""
    if step not in MANUAL_STEPS:
        raise StepRefused(
            f"step {step!r} cannot be recorded by hand: use one of {', '.join(MANUAL_STEPS)} "
            "(later steps follow from shipment events)",
            field="step",
        )
    if at.tzinfo is None:
        raise OrderChainError("occurred_at must carry a time zone", field="occurred_at")
    if at > now:
        raise StepRefused(f"occurred_at {at.isoformat()} is in the future", field="occurred_at")
    if order_status in TERMINAL_STATUSES:
        raise StepRefused(f"the order is {order_status}: no further steps", field="step")
    if step in reached:
        return False
    before = PREREQUISITE[step]
    if before not in reached:
        raise StepRefused(f"step {step!r} needs {before!r} first", field="step")
    return True


def current_step(reached: Mapping[str, datetime]) -> str | None:
    """The furthest step reached, by chain order (not by time)."""
    steps = [s for s in reached if s in RANK]
    return max(steps, key=RANK.__getitem__) if steps else None


def timeline(reached: Mapping[str, datetime]) -> list[tuple[str, datetime | None]]:
    """Every step in chain order with its time, None when not reached yet."""
    return [(step, reached.get(step)) for step in STEPS]
