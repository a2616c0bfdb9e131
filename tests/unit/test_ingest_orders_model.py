"""Orders: Money in minor units by ISO 4217 exponent, and what Segment e-commerce calls do to an order."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from doorstep.orders.events import OrderCancelled, OrderPlaced, OrderRefunded, OrderStepReached, OrderUpdated
from doorstep.orders.model import Money, MoneyError, Order, order_facts, order_id_for, promised_window

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("19.99", "EUR", 1999), ("1999", "JPY", 1999), ("12.345", "KWD", 12345), (19.995, "usd", 2000),
     ("0.005", "GBP", 1), ("1.23456", "CLF", 12346)],
)
def test_money_minor_units_follow_iso_4217(amount: object, currency: str, minor: int) -> None:
    assert Money.of(amount, currency).minor == minor


def test_money_round_trips_and_refuses_mixing_currencies() -> None:
    assert Money.from_minor(1999, "EUR").amount == Decimal("19.99")
    assert Money.from_minor(500, "JPY").amount == Decimal(500)
    with pytest.raises(MoneyError):
        Money.of(1, "EUR") + Money.of(1, "USD")
    with pytest.raises(MoneyError):
        Money.of("abc", "EUR")
    with pytest.raises(MoneyError):
        Money.of(1, "EURO")


def completed(**overrides: object) -> dict[str, object]:
    props: dict[str, object] = {
        "order_id": "1001", "revenue": 90, "shipping": 5, "tax": 4.5, "discount": 10, "coupon": "WELCOME10",
        "currency": "eur",
        "products": [{"product_id": "shoe", "sku": "SH-42", "name": "Runner", "category": "Shoes", "price": 45,
                      "quantity": 2}],
        "shipping_address": {"name": "Maya Lopez", "street": "1 High St", "city": "London", "postal_code": "N1 9GU",
                             "country": "United Kingdom"},
        "promised_delivery_from": "2026-11-26T09:00:00+01:00", "promised_delivery_to": "2026-11-26",
    }
    props.update(overrides)
    return props


def test_order_completed_places_the_order_with_money_lines_address_and_promise() -> None:
    props = completed()
    order = Order.place(order_facts(props, external_id="1001"), customer_id="c1", at=AT, now=AT,
                        default_currency="USD", properties=props)

    assert order.id == order_id_for("1001")
    assert (order.currency, order.total.minor, order.shipping.minor, order.tax.minor, order.discount.minor) == (
        "EUR", 9950, 500, 450, 1000)
    assert [(line.product_id, line.quantity, line.unit_price.minor, line.category) for line in order.lines] == [
        ("shoe", 2, 4500, "Shoes")]
    assert (order.address.city, order.address.postcode, order.address.country) == ("London", "N1 9GU", "GB")
    assert order.promised_from == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert order.promised_to == datetime(2026, 11, 26, 23, 59, 59, 999999, tzinfo=UTC)
    assert list(order.steps) == ["placed"]
    placed = [e for e in order.events if isinstance(e, OrderPlaced)]
    assert len(placed) == 1 and placed[0].total == "99.5" and placed[0].currency == "EUR"


def test_total_wins_over_revenue_and_lines_are_the_last_resort() -> None:
    assert order_facts({"total": "12.00", "revenue": 99}, external_id="x").total == Decimal("12.00")
    assert order_facts({"value": 7}, external_id="x").total == Decimal(7)
    order = Order.place(order_facts({"products": [{"product_id": "p", "price": 3, "quantity": 3}]}, external_id="x"),
                        customer_id="c", at=AT, now=AT, default_currency="GBP", properties={})
    assert (order.total.minor, order.currency) == (900, "GBP")


def test_paid_status_adds_the_paid_step() -> None:
    order = Order.place(order_facts({"payment_status": "paid", "total": 1}, external_id="x"), customer_id="c", at=AT,
                        now=AT, default_currency="USD", properties={})

    assert list(order.steps) == ["placed", "paid"]
    assert [e.step for e in order.events if isinstance(e, OrderStepReached)] == ["placed", "paid"]


def test_update_reports_only_what_changed() -> None:
    props = completed()
    order = Order.place(order_facts(props, external_id="1001"), customer_id="c1", at=AT, now=AT,
                        default_currency="USD", properties=props)
    order.events.clear()

    same = order.update(order_facts(props, external_id="1001"), at=AT, now=AT, properties=props)
    changed = order.update(order_facts({"coupon": "VIP", "total": 80}, external_id="1001"), at=AT, now=AT,
                           properties={})

    assert same == {}
    assert changed == {"total": "80", "coupon": "VIP"}
    assert [type(e) for e in order.events] == [OrderUpdated]


def test_cancel_once_and_partial_then_full_refund() -> None:
    order = Order.place(order_facts({"total": 100, "currency": "EUR"}, external_id="1"), customer_id="c", at=AT,
                        now=AT, default_currency="USD", properties={})
    order.events.clear()

    first = order.refund(Decimal(30), refund_key="m1", at=AT, now=AT)
    again = order.refund(Decimal(30), refund_key="m1", at=AT, now=AT)
    status_after_partial = order.status
    rest = order.refund(None, refund_key="m2", at=AT, now=AT)

    assert first == Money(Decimal(30), "EUR") and again is None and rest == Money(Decimal(70), "EUR")
    assert status_after_partial == "partially_refunded"
    assert order.status == "refunded"
    assert [type(e) for e in order.events].count(OrderRefunded) == 2
    assert order.cancel(reason="fraud", at=AT, now=AT) is True
    assert order.cancel(reason="fraud", at=AT, now=AT) is False
    assert [type(e) for e in order.events].count(OrderCancelled) == 1


def test_promise_shapes() -> None:
    assert promised_window({"delivery_promise": {"from": "2026-11-26T09:00:00Z", "to": "2026-11-26T13:00:00Z"}}) == (
        datetime(2026, 11, 26, 9, tzinfo=UTC), datetime(2026, 11, 26, 13, tzinfo=UTC))
    assert promised_window({"estimated_delivery_date": "2026-11-27"})[0] == datetime(2026, 11, 27, tzinfo=UTC)
    assert promised_window({"delivery_promise": {"from": "2026-11-27T10:00:00Z", "to": "2026-11-26T10:00:00Z"}}) == (
        None, None)
    assert promised_window({"delivery_promise": "soon"}) == (None, None)


def test_bad_amounts_become_warnings_not_crashes() -> None:
    facts = order_facts({"total": "lots", "currency": "euros", "shipping": True}, external_id="x")

    assert facts.total is None and facts.currency is None and facts.shipping is None
    assert len(facts.warnings) == 3


def test_absurd_amounts_and_quantities_cannot_overflow_the_store() -> None:
    with pytest.raises(MoneyError):
        Money.of(1e30, "EUR")
    order = Order.place(
        order_facts({"total": 1e30, "products": [{"product_id": "p", "price": 2, "quantity": 1e300}]}, external_id="x"),
        customer_id="c", at=AT, now=AT, default_currency="EUR", properties={},
    )
    assert order.lines[0].quantity == 1
    assert order.total.minor == 200
