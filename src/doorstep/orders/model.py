"""Orders: money, lines, the chain of steps, and how Segment's e-commerce events change an order.

Pure rules: no I/O; ids and `now` come in as arguments.

What an `Order Completed` / `Order Updated` call may carry (Segment V2 e-commerce spec plus delivery fields):
- `order_id` (required; the shop's order number, stored as external_id), `currency` (ISO 4217; default from
  settings, USD like Segment), `total` (else `revenue` + `shipping` + `tax`, else `value`, else the sum of
  the lines), `shipping`, `tax`, `discount`, `coupon`, `affiliation`/`channel`;
- `products`: [{product_id | sku, sku, name, category, price, quantity (default 1)}];
- shipping address: `shipping_address` {name, street | line1 | address1, city, postal_code | postcode | zip,
  state | region, country} or flat `shipping_name`, `shipping_city` ...;
- promised delivery window: `promised_delivery_from` + `promised_delivery_to`, or `delivery_promise`
  {"from", "to"} (also `start`/`end`), or a single date (`delivery_promise: "2026-11-26"`,
  `estimated_delivery_date`) meaning that whole day (UTC). ISO 8601 datetimes with an offset, or dates;
- paid: `payment_status` / `financial_status` in (paid, captured, succeeded, completed), `paid: true`, or
  `paid_at`: the 'paid' step is recorded beside 'placed'.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from doorstep.bus.messages import DomainEvent
from doorstep.orders.events import OrderCancelled, OrderPlaced, OrderRefunded, OrderStepReached, OrderUpdated

NAMESPACE = uuid.UUID("0b8a52a4-3c1e-4d5f-8e6a-7f9b1c2d3e40")  # Doorstep's uuid5 namespace for orders

# ISO 4217 minor-unit exponents that are not 2. Everything else has cents.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
         "XAF", "XOF", "XPF"],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


class OrderStep(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    PICKED = "picked"
    PACKED = "packed"
    DISPATCHED = "dispatched"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    INVOICED = "invoiced"
    FOLLOW_UP_SENT = "follow_up_sent"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class OrderStatus(StrEnum):
    PLACED = "placed"
    CANCELLED = "cancelled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


MAX_AMOUNT = Decimal(10) ** 12  # beyond any real order; keeps minor units inside a 64-bit column
MAX_QUANTITY = 100_000  # per line; larger values are taken as data errors and read as 1
PAID_STATUSES = frozenset({"paid", "captured", "succeeded", "completed", "settled"})


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)


def normalise_currency(value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise MoneyError(f"currency {value!r} is not an ISO 4217 code like 'EUR'")
    return value.strip().upper()


@dataclass(frozen=True)
class Money:
    """An amount in a currency. Stored as integer minor units (cents, yen, fils) by ISO 4217 exponent.

    >>> Money.of("12.345", "KWD").minor
    12345
    >>> Money.from_minor(1999, "EUR").amount
    Decimal('19.99')
    """

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, value: Any, currency: str) -> Money:
        return cls(parse_decimal(value), normalise_currency(currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), normalise_currency(currency))

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        currency = normalise_currency(currency)
        return cls(Decimal(minor).scaleb(-exponent(currency)), currency)

    @property
    def minor(self) -> int:
        """Rounded half up to the currency's minor unit."""
        quantum = Decimal(1).scaleb(-exponent(self.currency))
        return int(self.amount.quantize(quantum, rounding=ROUND_HALF_UP).scaleb(exponent(self.currency)))

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise MoneyError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise MoneyError(f"cannot subtract {other.currency} from {self.currency}")
        return Money(self.amount - other.amount, self.currency)

    def __str__(self) -> str:
        return f"{self.amount.quantize(Decimal(1).scaleb(-exponent(self.currency)))} {self.currency}"


def parse_decimal(value: Any) -> Decimal:
    """A Decimal from a JSON number or numeric string; floats go through str() so 19.99 stays 19.99."""
    if isinstance(value, bool) or value is None:
        raise MoneyError(f"{value!r} is not an amount")
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not an amount") from None
    if not number.is_finite():
        raise MoneyError(f"{value!r} is not an amount")
    if abs(number) >= MAX_AMOUNT:
        raise MoneyError(f"{value!r} is beyond any real amount (at most {MAX_AMOUNT:,})")
    return number


def order_id_for(external_id: str) -> str:
    """Deterministic: replaying the log gives every order the id it had."""
    return str(uuid.uuid5(NAMESPACE, f"order:{external_id}"))


@dataclass
class OrderLine:
    line_no: int
    product_id: str
    quantity: int
    unit_price: Money
    sku: str | None = None
    name: str | None = None
    category: str | None = None


@dataclass
class ShippingAddress:
    name: str | None = None
    line1: str | None = None
    city: str | None = None
    postcode: str | None = None
    region: str | None = None
    country: str | None = None


@dataclass
class OrderFacts:
    """What one e-commerce call says about an order; absent fields are None (an update leaves them as is)."""

    external_id: str
    currency: str | None = None
    total: Decimal | None = None
    shipping: Decimal | None = None
    tax: Decimal | None = None
    discount: Decimal | None = None
    coupon: str | None = None
    channel: str | None = None
    lines: list[dict[str, Any]] | None = None
    address: ShippingAddress | None = None
    promised_from: datetime | None = None
    promised_to: datetime | None = None
    is_paid: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class Order:
    id: str
    external_id: str
    customer_id: str
    status: str
    currency: str
    total: Money
    shipping: Money
    tax: Money
    discount: Money
    placed_at: datetime
    coupon: str | None = None
    channel: str | None = None
    campaign_source: str | None = None
    address: ShippingAddress = field(default_factory=ShippingAddress)
    promised_from: datetime | None = None
    promised_to: datetime | None = None
    lines: list[OrderLine] = field(default_factory=list)
    steps: dict[str, datetime] = field(default_factory=dict)
    step_details: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    refunded: Money | None = None
    events: list[DomainEvent] = field(default_factory=list)
    is_new: bool = False
    lines_changed: bool = False

    @classmethod
    def place(
        cls, facts: OrderFacts, *, customer_id: str, at: datetime, now: datetime, default_currency: str,
        properties: Mapping[str, Any], campaign_source: str | None = None,
    ) -> Order:
        """A new order from Order Completed: step 'placed' (and 'paid' when known), OrderPlaced."""
        currency = facts.currency or normalise_currency(default_currency)
        lines = build_lines(facts.lines or [], currency)
        lines_total = sum((line.unit_price.amount * line.quantity for line in lines), Decimal(0))
        total = facts.total if facts.total is not None else lines_total
        order = cls(
            id=order_id_for(facts.external_id),
            external_id=facts.external_id,
            customer_id=customer_id,
            status=OrderStatus.PLACED,
            currency=currency,
            total=Money(total, currency),
            shipping=Money(facts.shipping or Decimal(0), currency),
            tax=Money(facts.tax or Decimal(0), currency),
            discount=Money(facts.discount or Decimal(0), currency),
            placed_at=at,
            coupon=facts.coupon,
            channel=facts.channel,
            campaign_source=campaign_source,
            address=facts.address or ShippingAddress(),
            promised_from=facts.promised_from,
            promised_to=facts.promised_to,
            lines=lines,
            properties=dict(properties),
            created_at=now,
            updated_at=now,
            is_new=True,
            lines_changed=True,
        )
        order.reach(OrderStep.PLACED, at=at)
        order.events.append(
            OrderPlaced(order_id=order.id, customer_id=customer_id, external_id=order.external_id,
                        total=str(order.total.amount), currency=currency, promised_from=order.promised_from,
                        promised_to=order.promised_to, occurred_at=at)
        )
        if facts.is_paid:
            order.reach(OrderStep.PAID, at=at)
        return order

    def reach(self, step: OrderStep | str, *, at: datetime, detail: Any = None) -> bool:
        """Records a step once; returns whether it is new."""
        if str(step) in self.steps:
            return False
        self.steps[str(step)] = at
        if detail is not None:
            self.step_details[str(step)] = detail
        self.events.append(OrderStepReached(order_id=self.id, customer_id=self.customer_id, step=str(step),
                                            occurred_at=at))
        return True

    def update(self, facts: OrderFacts, *, at: datetime, now: datetime, properties: Mapping[str, Any]) -> dict[str, Any]:
        """Applies the fields an Order Updated (or a repeated Order Completed) carries; returns what changed."""
        changes: dict[str, Any] = {}
        if facts.currency is not None and facts.currency != self.currency:
            if self.lines or self.total.amount:  # an order's currency is fixed once it has amounts
                facts.warnings.append(f"currency {facts.currency} ignored: the order is in {self.currency}")
            else:
                self.currency = facts.currency
        currency = self.currency
        for attr in ("total", "shipping", "tax", "discount"):
            value = getattr(facts, attr)
            if value is not None and getattr(self, attr).amount != value:
                setattr(self, attr, Money(value, currency))
                changes[attr] = str(value)
        for attr in ("coupon", "channel", "promised_from", "promised_to"):
            value = getattr(facts, attr)
            if value is not None and getattr(self, attr) != value:
                setattr(self, attr, value)
                changes[attr] = value.isoformat() if isinstance(value, datetime) else value
        if facts.address is not None and facts.address != self.address:
            self.address = facts.address
            changes["shipping_address"] = {k: v for k, v in vars(facts.address).items() if v is not None}
        if facts.lines is not None:
            lines = build_lines(facts.lines, currency)
            if _line_key(lines) != _line_key(self.lines):
                self.lines = lines
                self.lines_changed = True
                changes["products"] = len(lines)
                if facts.total is None:
                    self.total = Money(sum((line.unit_price.amount * line.quantity for line in lines), Decimal(0)),
                                       currency)
                    changes["total"] = str(self.total.amount)
        if facts.is_paid and self.reach(OrderStep.PAID, at=at):
            changes["paid"] = True
        if changes:
            self.properties = {**self.properties, **properties}
            self.updated_at = now
            self.events.append(OrderUpdated(order_id=self.id, customer_id=self.customer_id, changes=changes,
                                            occurred_at=at))
        return changes

    def cancel(self, *, reason: str, at: datetime, now: datetime) -> bool:
        if self.status == OrderStatus.CANCELLED:
            return False
        self.status = OrderStatus.CANCELLED
        self.updated_at = now
        self.reach(OrderStep.CANCELLED, at=at, detail={"reason": reason} if reason else None)
        self.events.append(OrderCancelled(order_id=self.id, customer_id=self.customer_id, reason=reason,
                                          occurred_at=at))
        return True

    def refund(self, amount: Decimal | None, *, refund_key: str, at: datetime, now: datetime) -> Money | None:
        """Records a refund (the whole order when no amount is given). A refund already recorded under
        `refund_key` (its message) is not counted twice. Returns the amount refunded now."""
        refunds: list[dict[str, Any]] = list((self.step_details.get(str(OrderStep.REFUNDED)) or {}).get("refunds", []))
        if any(r.get("key") == refund_key for r in refunds):
            return None
        already = sum((Decimal(r["amount"]) for r in refunds), Decimal(0))
        remaining = self.total.amount - already
        money = Money(remaining if amount is None else min(amount, max(remaining, Decimal(0))), self.currency)
        refunds.append({"key": refund_key, "amount": str(money.amount), "at": at.isoformat()})
        refunded = already + money.amount
        self.refunded = Money(refunded, self.currency)
        self.step_details[str(OrderStep.REFUNDED)] = {"refunds": refunds, "refunded": str(refunded)}
        if str(OrderStep.REFUNDED) not in self.steps:
            self.steps[str(OrderStep.REFUNDED)] = at
            self.events.append(OrderStepReached(order_id=self.id, customer_id=self.customer_id,
                                                step=str(OrderStep.REFUNDED), occurred_at=at))
        if self.status != OrderStatus.CANCELLED:
            self.status = OrderStatus.REFUNDED if refunded >= self.total.amount else OrderStatus.PARTIALLY_REFUNDED
        self.updated_at = now
        self.events.append(OrderRefunded(order_id=self.id, customer_id=self.customer_id, amount=str(money.amount),
                                         currency=self.currency, occurred_at=at))
        return money


def _line_key(lines: list[OrderLine]) -> list[tuple[Any, ...]]:
    return [(line.product_id, line.sku, line.name, line.category, line.quantity, line.unit_price.minor)
            for line in lines]


def build_lines(products: list[dict[str, Any]], currency: str) -> list[OrderLine]:
    lines: list[OrderLine] = []
    for product in products:
        if not isinstance(product, dict):
            continue
        product_id = _text(product.get("product_id") or product.get("productId") or product.get("id")
                           or product.get("sku")) or f"unknown-{len(lines) + 1}"
        try:
            price = parse_decimal(product.get("price", 0))
        except MoneyError:
            price = Decimal(0)
        quantity = product.get("quantity", 1)
        if isinstance(quantity, float) and quantity.is_integer():
            quantity = int(quantity)
        if isinstance(quantity, str) and quantity.strip().isdigit():
            quantity = int(quantity.strip())
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
            quantity = 1
        lines.append(
            OrderLine(
                line_no=len(lines) + 1,
                product_id=product_id[:100],
                quantity=quantity,
                unit_price=Money(price, currency),
                sku=_clip(product.get("sku"), 100),
                name=_clip(product.get("name"), 300),
                category=_clip(product.get("category"), 200),
            )
        )
    return lines


def _clip(value: Any, width: int) -> str | None:
    text = _text(value)
    return text[:width] if text else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def _amount(properties: Mapping[str, Any], key: str, warnings: list[str]) -> Decimal | None:
    if properties.get(key) is None:
        return None
    try:
        return parse_decimal(properties[key])
    except MoneyError as exc:
        warnings.append(f"{key}: {exc}")
        return None


def parse_when(value: Any, *, end_of_day: bool = False) -> datetime | None:
    """An ISO 8601 datetime (naive = UTC) or a date (its start, or its end with `end_of_day`)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else moment
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def promised_window(properties: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    start = parse_when(properties.get("promised_delivery_from"))
    end = parse_when(properties.get("promised_delivery_to"), end_of_day=True)
    promise = properties.get("delivery_promise", properties.get("delivery_window"))
    if isinstance(promise, dict):
        start = start or parse_when(promise.get("from") or promise.get("start"))
        end = end or parse_when(promise.get("to") or promise.get("end"), end_of_day=True)
    elif isinstance(promise, str):
        start = start or parse_when(promise)
        end = end or parse_when(promise, end_of_day=True)
    estimated = properties.get("estimated_delivery_date")
    if start is None and end is None and isinstance(estimated, str):
        start, end = parse_when(estimated), parse_when(estimated, end_of_day=True)
    if start is not None and end is not None and end < start:
        return None, None
    return start, end


def shipping_address(properties: Mapping[str, Any]) -> ShippingAddress | None:
    raw = properties.get("shipping_address") or properties.get("shippingAddress")
    block: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    flat = {k[len("shipping_"):]: v for k, v in properties.items() if k.startswith("shipping_") and k != "shipping_address"}

    def pick(*names: str) -> str | None:
        for source in (block, flat):
            for name in names:
                value = _text(source.get(name))
                if value:
                    return value
        return None

    address = ShippingAddress(
        name=(pick("name") or "")[:200] or None,
        line1=(pick("street", "line1", "address1", "address") or "")[:300] or None,
        city=(pick("city") or "")[:100] or None,
        postcode=(pick("postal_code", "postalCode", "postcode", "zip") or "")[:20] or None,
        region=(pick("state", "region", "province") or "")[:100] or None,
        country=_country(pick("country", "country_code")),
    )
    return address if any(vars(address).values()) else None


def _country(value: str | None) -> str | None:
    from doorstep.customers.model import country_code

    return country_code(value) if value else None


def order_facts(properties: Mapping[str, Any], *, external_id: str) -> OrderFacts:
    """Reads an e-commerce call's properties into OrderFacts (see the module docstring for what counts)."""
    warnings: list[str] = []
    currency: str | None = None
    if properties.get("currency") is not None:
        try:
            currency = normalise_currency(properties["currency"])
        except MoneyError as exc:
            warnings.append(f"currency: {exc}")
    total = _amount(properties, "total", warnings)
    if total is None:
        revenue = _amount(properties, "revenue", warnings)
        if revenue is not None:
            total = revenue + (_amount(properties, "shipping", []) or 0) + (_amount(properties, "tax", []) or 0)
        else:
            total = _amount(properties, "value", warnings)
    status = str(properties.get("payment_status") or properties.get("financial_status") or "").lower()
    is_paid = status in PAID_STATUSES or properties.get("paid") is True or bool(parse_when(properties.get("paid_at")))
    start, end = promised_window(properties)
    products = properties.get("products")
    return OrderFacts(
        external_id=external_id,
        currency=currency,
        total=total,
        shipping=_amount(properties, "shipping", warnings),
        tax=_amount(properties, "tax", warnings),
        discount=_amount(properties, "discount", warnings),
        coupon=(_text(properties.get("coupon")) or "")[:100] or None,
        channel=(_text(properties.get("channel") or properties.get("affiliation")) or "")[:30] or None,
        lines=products if isinstance(products, list) else None,
        address=shipping_address(properties),
        promised_from=start,
        promised_to=end,
        is_paid=is_paid,
        warnings=warnings,
    )


def external_order_id(properties: Mapping[str, Any]) -> str | None:
    value = _text(properties.get("order_id") or properties.get("orderId"))
    return value[:100] if value else None
