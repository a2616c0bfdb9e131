from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from doorstep.returns.errors import InvalidReturn, ReturnRefused, ReturnStepRefused
from doorstep.returns.model import LineToReturn, advance, check_request, load_policy

POLICY = load_policy()
DELIVERED = datetime(2026, 11, 1, 14, 30, 15, tzinfo=UTC)


def line(
    category: str | None = "tops",
    *,
    price: str = "40.00",
    condition: str = "as_new",
    product_id: str = "p1",
    quantity: int = 1,
    ordered: int = 1,
    returned: int = 0,
) -> LineToReturn:
    return LineToReturn(
        order_line_id=1,
        product_id=product_id,
        name="Item",
        category=category,
        quantity=quantity,
        ordered_quantity=ordered,
        already_returned=returned,
        unit_price=Decimal(price),
        condition=condition,
    )


def check(
    *lines: LineToReturn,
    now: datetime,
    reason: str = "fit.too_small",
    resolution: str = "refund",
    method: str | None = None,
):
    return check_request(
        POLICY,
        lines=list(lines),
        reason_code=reason,
        resolution=resolution,
        method=method,
        delivered_at=DELIVERED,
        now=now,
    )


def test_window_boundary_is_exact_to_the_second() -> None:
    closes = DELIVERED + timedelta(days=30)
    assert check(line(), now=closes).refund_amount == Decimal("40.00")
    with pytest.raises(
        ReturnRefused, match="return window closed: delivered 2026-11-01 14:30:15, window 30 days"
    ):
        check(line(), now=closes + timedelta(seconds=1))


def test_window_is_per_category_with_longest_prefix() -> None:
    day_45 = DELIVERED + timedelta(days=45)
    assert check(line("Shoes > Running"), now=day_45).method == "drop_off"  # shoes: 60 days
    with pytest.raises(ReturnRefused, match="window 14 days"):
        check(line("electronics", condition="unopened"), now=DELIVERED + timedelta(days=14, seconds=1))


def test_non_returnable_category_and_product() -> None:
    with pytest.raises(ReturnRefused, match="cannot be returned") as info:
        check(line("underwear"), now=DELIVERED + timedelta(days=1))
    assert info.value.extra["field"] == "lines.0.order_line_id"
    with pytest.raises(ReturnRefused, match="cannot be returned"):
        check(line(product_id="personalised-mug"), now=DELIVERED + timedelta(days=1))


def test_condition_rules_depend_on_fault() -> None:
    soon = DELIVERED + timedelta(days=2)
    with pytest.raises(ReturnRefused, match="only be returned unopened"):
        check(line("electronics", condition="as_new"), now=soon, reason="changed_mind")
    assert check(
        line("electronics", condition="used"), now=soon, reason="quality.defective"
    ).refund_amount == Decimal("40.00")
    with pytest.raises(ReturnRefused, match="is used"):
        check(line(condition="used"), now=soon, reason="changed_mind")


def test_keep_item_when_shipping_back_costs_more() -> None:
    soon = DELIVERED + timedelta(days=2)
    cheap = check(line(price="5.99"), now=soon, method="drop_off")
    assert cheap.method == "keep_item" and cheap.refund_amount == Decimal("5.99") and cheap.notes
    at_cost = check(line(price="6.50"), now=soon)  # equal cost: send it back
    assert at_cost.method == "drop_off"
    with pytest.raises(ReturnRefused, match="keeping the item") as info:
        check(line(price="40.00"), now=soon, method="keep_item")
    assert info.value.extra["field"] == "method"


def test_courier_fee_only_when_customer_is_at_fault_and_exchange_refunds_nothing() -> None:
    soon = DELIVERED + timedelta(days=2)
    assert check(line(), now=soon, method="courier_pickup").refund_amount == Decimal("37.50")
    assert check(line(), now=soon, method="courier_pickup", reason="wrong_item").refund_amount == Decimal(
        "40.00"
    )
    assert check(line(), now=soon, resolution="exchange").refund_amount == Decimal("0")


def test_bad_input_names_the_field() -> None:
    soon = DELIVERED + timedelta(days=2)
    with pytest.raises(InvalidReturn) as info:
        check(line(), now=soon, reason="fit")  # a group, not a reason
    assert info.value.extra["field"] == "reason_code"
    with pytest.raises(InvalidReturn) as info:
        check(line(quantity=2, ordered=2, returned=1), now=soon)
    assert info.value.extra["field"] == "lines.0.quantity"


def test_not_delivered_cannot_be_returned() -> None:
    with pytest.raises(ReturnRefused, match="not been delivered"):
        check_request(
            POLICY,
            lines=[line()],
            reason_code="changed_mind",
            resolution="refund",
            method=None,
            delivered_at=None,
            now=DELIVERED,
        )


def test_steps_follow_the_flow() -> None:
    advance("label_issued", "in_transit")
    with pytest.raises(ReturnStepRefused, match="a return that is requested cannot become refunded"):
        advance("requested", "refunded")
    with pytest.raises(ReturnStepRefused):
        advance("refunded", "received")
