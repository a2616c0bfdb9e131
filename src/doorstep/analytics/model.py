"""The journey dashboard's rules: periods, filters, metric definitions and cause ownership. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DISPATCH_SLA_H = 24.0  # dispatched on time: within 24 hours of the order being placed
FIRST_ATTEMPT_GRACE_H = 4.0  # delivered within 4 h of the first attempt counts as first-attempt success
FAILED_ATTEMPT_WINDOW_H = 12.0  # a contact this soon after a failed attempt is about that attempt
WISMO_REASONS = ("wismo", "where_is_my_order", "order_status", "tracking", "delivery_status")
UNHAPPY_MAX_SCORE = 3  # a CSAT answer or review of 3 stars or fewer takes an order off the perfect journey
MAX_PERIOD_DAYS = 366
SEGMENTS = ("new", "returning")

# The perfect journey, step by step: an order falls off at the first step it fails.
PERFECT_STEPS: list[tuple[str, str]] = [
    ("cancelled", "Cancelled"),
    ("dispatch_late", "Dispatched late"),
    ("not_delivered", "Not delivered yet"),
    ("late", "Delivered late"),
    ("failed_attempt", "Failed first attempt"),
    ("contacted", "Needed to contact us"),
    ("returned", "Returned"),
    ("unhappy", "Unhappy (score 3 or less)"),
]
PERFECT = "perfect"

# Who owns each upstream cause of a contact or a one-star review.
CAUSE_OWNERS: dict[str, str] = {
    "late": "carrier",
    "failed_attempt": "carrier",
    "lost": "carrier",
    "damaged": "carrier",
    "wrong_item": "warehouse",
    "dispatch_late": "warehouse",
    "refund_slow": "payments",
    "invoice_missing": "payments",
    "product_issue": "product",
    "price": "product",
    "service": "service",
    "pre_purchase": "service",
    "no_upstream_cause": "service",
}
CAUSE_LABELS: dict[str, str] = {
    "late": "Delivered late / past promise",
    "failed_attempt": "Failed delivery attempt",
    "lost": "Parcel lost",
    "damaged": "Arrived damaged",
    "wrong_item": "Wrong item sent",
    "dispatch_late": "Dispatched late",
    "refund_slow": "Refund not yet received",
    "invoice_missing": "Invoice missing",
    "product_issue": "Product issue",
    "price": "Price",
    "service": "Service",
    "pre_purchase": "Question before buying",
    "no_upstream_cause": "No upstream cause found",
}


def owner_of(cause: str | None) -> str:
    return CAUSE_OWNERS.get(cause or "", "service")


@dataclass(frozen=True)
class Filters:
    """What the dashboard is cut by. `start`/`end` bound the period [start, end), UTC."""

    start: datetime
    end: datetime
    carrier: str | None = None
    region: str | None = None
    channel: str | None = None
    segment: str | None = None  # new | returning (first seen inside or before the period)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("period bounds must be timezone-aware UTC")
        if self.end <= self.start:
            raise ValueError(f"period end {self.end:%Y-%m-%d} must be after its start {self.start:%Y-%m-%d}")
        if self.end - self.start > timedelta(days=MAX_PERIOD_DAYS):
            raise ValueError(f"period longer than {MAX_PERIOD_DAYS} days")
        if self.segment is not None and self.segment not in SEGMENTS:
            raise ValueError(f"segment {self.segment!r} is not one of {', '.join(SEGMENTS)}")

    @property
    def previous(self) -> Filters:
        """The period of the same length just before this one, same cuts."""
        length = self.end - self.start
        return Filters(self.start - length, self.start, self.carrier, self.region, self.channel, self.segment)

    @classmethod
    def last_days(cls, days: int, *, now: datetime, **cuts: Any) -> Filters:
        end = (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(end - timedelta(days=days), end, **cuts)

    def cuts(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("carrier", self.carrier),
                ("region", self.region),
                ("channel", self.channel),
                ("segment", self.segment),
            )
            if v
        }

    def key(self) -> tuple[Any, ...]:
        return (self.start, self.end, self.carrier, self.region, self.channel, self.segment)


@dataclass(frozen=True)
class MetricDef:
    key: str
    stage: str
    label: str
    definition: str
    unit: str = ""  # "%", "h", "€", ""
    higher_is_better: bool = True
    drill: str | None = None  # the set of orders/customers behind it (see analytics.sql.DRILL_SETS)


STAGES: list[tuple[str, str]] = [
    ("awareness", "Awareness"),
    ("consideration", "Consideration"),
    ("purchase", "Purchase"),
    ("fulfilment", "Fulfilment"),
    ("delivery", "Delivery"),
    ("after_purchase", "After purchase"),
    ("loyalty", "Loyalty"),
]

METRICS: list[MetricDef] = [
    MetricDef(
        "sessions",
        "awareness",
        "Sessions",
        "Distinct session ids among page and track calls in the period.",
        drill="visitors",
    ),
    MetricDef(
        "new_visitors",
        "awareness",
        "New visitors",
        "Visitors active in the period whose profile was first seen in the period.",
        drill="new_visitors",
    ),
    MetricDef(
        "product_views", "consideration", "Product views", "'Product Viewed' track calls in the period."
    ),
    MetricDef(
        "add_to_cart_rate",
        "consideration",
        "Add-to-cart rate",
        "Sessions with a 'Product Added' call divided by sessions with a 'Product Viewed' call.",
        "%",
    ),
    MetricDef(
        "checkout_conversion",
        "purchase",
        "Checkout conversion",
        "Sessions with 'Order Completed' divided by sessions with 'Checkout Started'.",
        "%",
    ),
    MetricDef(
        "orders", "purchase", "Orders", "Orders placed in the period (the cohort below).", drill="orders"
    ),
    MetricDef(
        "aov",
        "purchase",
        "Average order value",
        "Mean order total (in the order's currency, minor units / 100) of the orders placed.",
        "money",
    ),
    MetricDef(
        "order_to_dispatch_h",
        "fulfilment",
        "Order to dispatch",
        "Mean hours from placing to dispatch, over the period's dispatched orders.",
        "h",
        higher_is_better=False,
    ),
    MetricDef(
        "dispatched_on_time",
        "fulfilment",
        "Dispatched on time",
        f"Share of dispatched orders dispatched within {DISPATCH_SLA_H:g} h of placing.",
        "%",
        drill="dispatch_late",
    ),
    MetricDef(
        "delivered_on_promise",
        "delivery",
        "Delivered on promise",
        "Share of delivered orders delivered no later than the promised date.",
        "%",
        drill="late",
    ),
    MetricDef(
        "first_attempt_success",
        "delivery",
        "First-attempt success",
        f"Share of delivered orders delivered at the first attempt (within {FIRST_ATTEMPT_GRACE_H:g} h "
        "of it, or with no separate attempt recorded).",
        "%",
        drill="failed_attempt",
    ),
    MetricDef(
        "mean_delay_h",
        "delivery",
        "Mean delay",
        "Mean hours delivered after the promise (on-time deliveries count as 0).",
        "h",
        higher_is_better=False,
        drill="late",
    ),
    MetricDef(
        "p90_delay_h",
        "delivery",
        "90th-percentile delay",
        "Nearest-rank 90th percentile of the delay in hours (on time = 0).",
        "h",
        higher_is_better=False,
    ),
    MetricDef(
        "contacts_per_order",
        "after_purchase",
        "Contacts per order",
        "Conversations opened in the period divided by orders placed in the period.",
        "",
        higher_is_better=False,
        drill="contacted",
    ),
    MetricDef(
        "contacts_per_customer",
        "after_purchase",
        "Contacts per customer",
        "Conversations opened in the period divided by customers who ordered in the period.",
        "",
        higher_is_better=False,
    ),
    MetricDef(
        "wismo_share",
        "after_purchase",
        "WISMO share",
        "Share of contacts whose reason is 'where is my order' (wismo, order status, tracking).",
        "%",
        higher_is_better=False,
    ),
    MetricDef(
        "return_rate",
        "after_purchase",
        "Return rate",
        "Share of the period's orders with at least one return request.",
        "%",
        higher_is_better=False,
        drill="returned",
    ),
    MetricDef(
        "csat",
        "after_purchase",
        "CSAT",
        "Share of survey answers scoring 4 or 5 (of 5), answers submitted in the period.",
        "%",
    ),
    MetricDef(
        "nps",
        "after_purchase",
        "NPS",
        "Promoters (9-10) minus detractors (0-6), as a percentage of NPS answers in the period.",
        "pts",
    ),
    MetricDef(
        "one_star_share",
        "after_purchase",
        "One-star share",
        "Share of reviews and survey answers in the period with a score of 1.",
        "%",
        higher_is_better=False,
        drill="one_star",
    ),
    MetricDef(
        "repeat_purchase_rate",
        "loyalty",
        "Repeat-purchase rate",
        "Share of customers ordering in the period who had ordered before.",
        "%",
        drill="repeat_customers",
    ),
    MetricDef(
        "perfect_share",
        "loyalty",
        "Perfect journeys",
        "Share of the period's orders that stayed on the perfect journey: bought, dispatched and "
        "delivered on time at the first attempt, no contact, no return, no unhappy score.",
        "%",
        drill="perfect",
    ),
]
METRIC_BY_KEY = {m.key: m for m in METRICS}


@dataclass
class MetricValue:
    key: str
    value: float | None
    previous: float | None
    numerator: float | None = None
    denominator: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


def ratio(numerator: float | None, denominator: float | None, *, scale: float = 1.0) -> float | None:
    """None (shown as —) rather than 0 when there is nothing to divide by."""
    if not denominator or numerator is None:
        return None
    return scale * float(numerator) / float(denominator)


def delay_bucket(delay_h: float) -> str:
    if delay_h <= 0:
        return "on time"
    days = int(-(-delay_h // 24))
    return f"{days} day late" if days == 1 else ("3+ days late" if days >= 3 else f"{days} days late")
