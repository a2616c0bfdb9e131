"""Returns and exchanges: the policy (windows from delivery, per category, non-returnable items, condition
rules, keep-the-item rule), nested reasons, and the steps a return goes through. Pure: `now` comes in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from doorstep.returns.errors import InvalidReturn, ReturnRefused, ReturnStepRefused

DEFAULT_POLICY_PATH = Path(__file__).parent / "policy.yaml"
RESOLUTIONS = ("refund", "exchange", "store_credit")
METHODS = ("drop_off", "courier_pickup", "keep_item")
CONDITIONS = ("unopened", "as_new", "used", "damaged")

# Steps and what may follow each. Terminal: rejected, refunded, exchanged.
TRANSITIONS: dict[str, frozenset[str]] = {
    "requested": frozenset({"approved", "rejected"}),
    "approved": frozenset({"label_issued", "refunded", "exchanged", "rejected"}),
    "label_issued": frozenset({"in_transit", "received"}),
    "in_transit": frozenset({"received"}),
    "received": frozenset({"inspected"}),
    "inspected": frozenset({"refunded", "exchanged", "rejected"}),
    "rejected": frozenset(),
    "refunded": frozenset(),
    "exchanged": frozenset(),
}
# What the customer reads for each step on the tracking page.
STEP_WORDS = {
    "requested": "Return requested",
    "approved": "Return approved",
    "rejected": "Return not accepted",
    "label_issued": "Return label ready",
    "in_transit": "On its way back to us",
    "received": "We have received it",
    "inspected": "Checked by our team",
    "refunded": "Refund issued",
    "exchanged": "Replacement sent",
}


@dataclass(frozen=True)
class CategoryRule:
    window_days: float
    returnable: bool = True
    condition: str | None = None  # unopened_or_defective


@dataclass(frozen=True)
class Policy:
    default_window_days: float
    categories: dict[str, CategoryRule]
    non_returnable_products: frozenset[str]
    return_shipping_cost: Decimal
    courier_pickup_fee: Decimal
    reasons: dict[str, str]  # flattened: "fit.too_small" -> "Too small"
    shop_fault_reasons: frozenset[str]
    manual_review_over: Decimal | None = None

    def rule_for(self, category: str | None) -> CategoryRule:
        """The longest category prefix that has a rule ("shoes/running" uses "shoes")."""
        path = _category_path(category)
        for n in range(len(path), 0, -1):
            rule = self.categories.get("/".join(path[:n]))
            if rule is not None:
                return rule
        return CategoryRule(window_days=self.default_window_days)


def _category_path(category: str | None) -> list[str]:
    if not category:
        return []
    normalised = category.replace(">", "/").lower()
    return [part.strip().replace(" ", "_") for part in normalised.split("/") if part.strip()]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        code = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, code + "."))
        else:
            out[code] = str(value)
    return out


def load_policy(path: Path | None = None) -> Policy:
    raw = yaml.safe_load((path or DEFAULT_POLICY_PATH).read_text())
    default_days = float(raw["default_window_days"])
    categories = {
        "/".join(_category_path(name)): CategoryRule(
            window_days=float(entry.get("window_days", default_days)),
            returnable=bool(entry.get("returnable", True)),
            condition=entry.get("condition"),
        )
        for name, entry in (raw.get("categories") or {}).items()
    }
    reasons = _flatten(raw["reasons"])
    fault = frozenset(raw.get("shop_fault_reasons") or [])
    unknown = fault - set(reasons)
    if unknown:
        raise ValueError(f"shop_fault_reasons names unknown reasons: {sorted(unknown)}")
    return Policy(
        default_window_days=default_days,
        categories=categories,
        non_returnable_products=frozenset(raw.get("non_returnable_products") or []),
        return_shipping_cost=Decimal(str(raw["return_shipping_cost"])),
        courier_pickup_fee=Decimal(str(raw.get("courier_pickup_fee", "0"))),
        reasons=reasons,
        shop_fault_reasons=fault,
        manual_review_over=Decimal(str(raw["manual_review_over"])) if raw.get("manual_review_over") else None,
    )


@dataclass(frozen=True)
class LineToReturn:
    order_line_id: int
    product_id: str
    name: str
    category: str | None
    quantity: int  # asked to return
    ordered_quantity: int
    already_returned: int
    unit_price: Decimal
    condition: str


@dataclass(frozen=True)
class Decision:
    method: str
    refund_amount: Decimal
    fee: Decimal
    notes: list[str] = field(default_factory=list)
    needs_review: bool = False


def check_request(
    policy: Policy,
    *,
    lines: Sequence[LineToReturn],
    reason_code: str,
    resolution: str,
    method: str | None,
    delivered_at: datetime | None,
    now: datetime,
) -> Decision:
    """Applies the policy; returns the method to use (keep_item when shipping back costs more than the items)
    and the amount to refund, or raises saying which rule refused it."""
    if reason_code not in policy.reasons:
        raise InvalidReturn(f"reason_code must be one of {', '.join(policy.reasons)}", field="reason_code")
    if resolution not in RESOLUTIONS:
        raise InvalidReturn(f"resolution must be one of {', '.join(RESOLUTIONS)}", field="resolution")
    if method is not None and method not in METHODS:
        raise InvalidReturn(f"method must be one of {', '.join(METHODS)}", field="method")
    if not lines:
        raise InvalidReturn("choose at least one item to return", field="lines")
    if delivered_at is None:
        raise ReturnRefused("the order has not been delivered yet: returns open on delivery", field="order")
    is_shop_fault = reason_code in policy.shop_fault_reasons
    notes: list[str] = []
    for i, line in enumerate(lines):
        where = f"lines.{i}"
        if line.condition not in CONDITIONS:
            raise InvalidReturn(
                f"condition must be one of {', '.join(CONDITIONS)}", field=f"{where}.condition"
            )
        if line.quantity < 1 or line.quantity > line.ordered_quantity - line.already_returned:
            raise InvalidReturn(
                f"{line.name}: you can return at most {line.ordered_quantity - line.already_returned}",
                field=f"{where}.quantity",
            )
        rule = policy.rule_for(line.category)
        if line.product_id in policy.non_returnable_products or not rule.returnable:
            raise ReturnRefused(
                f"{line.name} cannot be returned ({line.category or 'this item'})",
                field=f"{where}.order_line_id",
            )
        closes = delivered_at + timedelta(days=rule.window_days)
        if now > closes:
            raise ReturnRefused(
                f"return window closed: delivered {delivered_at:%Y-%m-%d %H:%M:%S}, window {rule.window_days:g} days "
                f"for {line.category or 'this item'} (closed {closes:%Y-%m-%d %H:%M:%S} UTC)",
                field=f"{where}.order_line_id",
            )
        if rule.condition == "unopened_or_defective" and line.condition != "unopened" and not is_shop_fault:
            raise ReturnRefused(
                f"{line.name} can only be returned unopened, unless it is faulty", field=f"{where}.condition"
            )
        if line.condition in ("used", "damaged") and not is_shop_fault:
            raise ReturnRefused(
                f"{line.name} is {line.condition}: only items in their original condition can be returned for this reason",
                field=f"{where}.condition",
            )
    value = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
    chosen = method or "drop_off"
    if value < policy.return_shipping_cost:
        if chosen != "keep_item":
            notes.append(
                f"keep the item: sending it back would cost more ({policy.return_shipping_cost}) than it is worth"
            )
        chosen = "keep_item"
    elif chosen == "keep_item":
        raise ReturnRefused(
            f"keeping the item is offered only when return shipping ({policy.return_shipping_cost}) costs more than "
            f"the items ({value})",
            field="method",
        )
    fee = policy.courier_pickup_fee if chosen == "courier_pickup" and not is_shop_fault else Decimal(0)
    refund = value - fee if resolution != "exchange" else Decimal(0)
    needs_review = policy.manual_review_over is not None and value > policy.manual_review_over
    return Decision(
        method=chosen, refund_amount=max(refund, Decimal(0)), fee=fee, notes=notes, needs_review=needs_review
    )


def advance(status: str, to: str) -> None:
    """Refuses a step that does not follow the current one."""
    if to not in TRANSITIONS:
        raise InvalidReturn(f"step must be one of {', '.join(TRANSITIONS)}", field="step")
    if to not in TRANSITIONS.get(status, frozenset()):
        raise ReturnStepRefused(f"a return that is {status} cannot become {to}", field="step")


def final_step(resolution: str) -> str:
    return "exchanged" if resolution == "exchange" else "refunded"
