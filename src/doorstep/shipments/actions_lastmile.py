"""The last mile's commands for other callers that own a transaction but hold only its connection: the
assistant's ActionsPort calls `reschedule_for_order`, `redirect_for_order` (re-exported by
shipments/delivery.py), `start_return_for_order` (returns/commands.py), `cancel_before_dispatch` and
`resend_invoice` (orders/chain.py) as fn(conn, order_id=..., requested_by=..., now=..., **params) and reads
back a short sentence for the customer. Refusals raise the domains' DoorstepErrors with a readable detail.

Domain events go to the outbox in the caller's transaction: pass `publish=uow.publish` when you have a unit
of work; without it they are written through a bus built from the service's handler modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from doorstep.bus.registry import Bus
from doorstep.errors import RuleViolated
from doorstep.settings import Settings, get_settings

RESCHEDULE_HORIZON = timedelta(days=14)
SAFE_PLACE_WORDS = [
    ("front_porch", re.compile(r"\b(porch|front door|doorstep)\b", re.I)),
    ("back_door", re.compile(r"\b(back door|back garden|rear)\b", re.I)),
    ("garage", re.compile(r"\bgarage\b", re.I)),
    ("shed", re.compile(r"\bshed\b", re.I)),
    ("reception", re.compile(r"\b(reception|concierge|porter)\b", re.I)),
]
HOUSE = re.compile(r"\b(?:number|no\.?|nr\.?|#)\s*(\d+[a-z]?)\b|\b(\d+[a-z]?)\s+(?:next door|opposite)", re.I)
NEIGHBOUR_NAME = re.compile(
    r"\b(?:with|to)\s+((?:Mr|Mrs|Ms|Dr)\.?\s+[A-Z][\w'-]+|[A-Z][\w'-]+(?:\s[A-Z][\w'-]+)?)"
)
# The assistant's return reasons, mapped onto the policy's codes.
ASSISTANT_REASONS = {
    "fit.too_big": "fit.too_large",
    "fit.other": "fit.not_as_pictured",
    "preference.changed_mind": "changed_mind",
}


@lru_cache(maxsize=1)
def _default_bus() -> Bus:
    from doorstep.app import build_bus

    return build_bus(get_settings())


class _Outbox:
    """publish() for callers without a unit of work: flushed into the same connection on `done()`."""

    def __init__(self, conn: Connection, publish: Callable[[Any], None] | None, now: datetime):
        self._given = publish
        self._uow = None
        if publish is None:
            from doorstep.clock import FixedClock
            from doorstep.db.uow import UnitOfWork

            self._uow = UnitOfWork(None, bus=_default_bus(), clock=FixedClock(now), conn=conn)

    def __call__(self, event: Any) -> None:
        if self._given is not None:
            self._given(event)
        else:
            assert self._uow is not None
            self._uow.publish(event)

    def done(self) -> None:
        if self._uow is not None:
            self._uow.flush_events()


def _shipment_of(conn: Connection, order_id: str) -> Any:
    from doorstep.shipments.delivery import StopNotFound
    from doorstep.shipments.tables import shipments

    row = conn.execute(
        select(shipments.c.id)
        .where(shipments.c.order_id == order_id, shipments.c.is_return.is_(False))
        .order_by(shipments.c.created_at.desc())
    ).first()
    if row is None:
        raise StopNotFound(
            "this order has not been handed to a carrier yet, so there is no delivery to change"
        )
    return row.id


def _caps(settings: Settings) -> Callable[[str], Any]:
    from doorstep.shipments.delivery import capabilities_for
    from doorstep.shipments.handlers_lastmile import _capabilities

    table = _capabilities(settings.extra.get("carrier_capabilities_path"))
    return lambda carrier: capabilities_for(table, carrier)


def reschedule_for_order(
    conn: Connection,
    *,
    order_id: str,
    requested_by: str,
    now: datetime,
    date: str | None = None,
    window_from: str | None = None,
    window_to: str | None = None,
    part_of_day: str | None = None,
    publish: Callable[[Any], None] | None = None,
    settings: Settings | None = None,
) -> str:
    """Books the first free slot inside the asked window (or on the asked day)."""
    from doorstep.shipments.delivery import ChangeRefused, describe_change
    from doorstep.shipments.handlers_lastmile import apply_delivery_change, list_slots, load_shipment

    settings = settings or get_settings()
    shipment = load_shipment(conn, _shipment_of(conn, order_id))
    slots = [
        s
        for s in list_slots(
            conn, carrier=shipment.carrier, region=shipment.region, now=now, until=now + RESCHEDULE_HORIZON
        )
        if s.remaining > 0
    ]
    wanted_from = datetime.fromisoformat(window_from) if window_from else None
    wanted_to = datetime.fromisoformat(window_to) if window_to else None
    if wanted_from and wanted_to:
        fitting = [s for s in slots if s.starts_at < wanted_to and s.ends_at > wanted_from]
    elif date:
        fitting = [s for s in slots if s.starts_at.date().isoformat() == date]
    else:
        fitting = slots
    if not fitting:
        offer = ", ".join(f"{s.starts_at:%a %d %b %H:%M}–{s.ends_at:%H:%M}" for s in slots[:3])
        raise ChangeRefused(
            "there is no free delivery slot then"
            + (f"; free slots: {offer} (times in UTC)" if offer else ""),
            field="date",
        )
    outbox = _Outbox(conn, publish, now)
    result = apply_delivery_change(
        conn,
        outbox,
        shipment_id=shipment.id,
        kind="slot",
        detail={"slot_id": fitting[0].id},
        requested_by=requested_by,
        now=now,
        caps_for=_caps(settings),
    )
    outbox.done()
    return describe_change("slot", result["detail"]) + " (UTC), and the carrier has been told."


def redirect_for_order(
    conn: Connection,
    *,
    order_id: str,
    requested_by: str,
    now: datetime,
    kind: str,
    instructions: str | None = None,
    address: str | None = None,
    publish: Callable[[Any], None] | None = None,
    settings: Settings | None = None,
) -> str:
    """A neighbour or a safe place from the customer's words; pickup points and new addresses are chosen
    on the tracking page or by a person."""
    from doorstep.shipments.delivery import ChangeRefused, describe_change
    from doorstep.shipments.handlers_lastmile import apply_delivery_change

    settings = settings or get_settings()
    text = (instructions or address or "").strip()
    if kind == "neighbour":
        house = HOUSE.search(text)
        if house is None:
            raise ChangeRefused(
                "tell me the neighbour's house number, for example “number 12”", field="house"
            )
        name = NEIGHBOUR_NAME.search(text)
        detail: dict[str, Any] = {
            "name": name.group(1) if name else "Neighbour",
            "house": house.group(1) or house.group(2),
        }
    elif kind == "safe_place":
        place = next((p for p, rx in SAFE_PLACE_WORDS if rx.search(text)), "other")
        detail = {"place": place, "note": text[:200] or None}
    elif kind == "pickup_point":
        raise ChangeRefused(
            "pick the pickup point on your tracking page: it lists the ones near you", field="kind"
        )
    else:
        raise ChangeRefused(
            "a new delivery address needs a colleague to check it with the carrier", field="kind"
        )
    outbox = _Outbox(conn, publish, now)
    result = apply_delivery_change(
        conn,
        outbox,
        shipment_id=_shipment_of(conn, order_id),
        kind=kind,
        detail=detail,
        requested_by=requested_by,
        now=now,
        caps_for=_caps(settings),
    )
    outbox.done()
    return describe_change(kind, result["detail"]) + ". The carrier has been told."


def start_return_for_order(
    conn: Connection,
    *,
    order_id: str,
    requested_by: str,
    now: datetime,
    resolution: str = "refund",
    reason_code: str = "other",
    note: str | None = None,
    publish: Callable[[Any], None] | None = None,
    settings: Settings | None = None,
) -> str:
    """A return of every item still returnable on the order, in the condition it arrived."""
    from doorstep.orders.tables import order_lines
    from doorstep.returns.handlers import LineRequest, open_return, returned_quantity
    from doorstep.returns.routes import label_link
    from doorstep.returns.tables import returns

    settings = settings or get_settings()
    lines = []
    for line in conn.execute(
        select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_no)
    ):
        left = line.quantity - returned_quantity(conn, line.id)
        if left > 0:
            lines.append(LineRequest(line.id, left, "as_new"))
    if not lines:
        raise RuleViolated("everything on this order is already being returned", field="lines")
    outbox = _Outbox(conn, publish, now)
    return_id, notes = open_return(
        conn,
        outbox,
        settings=settings,
        now=now,
        order_id=order_id,
        lines=lines,
        reason_code=ASSISTANT_REASONS.get(reason_code, reason_code),
        resolution=resolution,
        method=None,
        reason_detail=(note or "")[:1000] or None,
    )
    outbox.done()
    row = conn.execute(
        select(returns.c.status, returns.c.method, returns.c.refund_minor, returns.c.currency).where(
            returns.c.id == return_id
        )
    ).one()
    if row.status == "requested":
        return "your return is registered; a colleague approves it within one working day and you will get the label."
    if row.method == "keep_item":
        return f"you can keep the item: sending it back would cost more than it is worth. {' '.join(notes)}".strip()
    link = settings.public_base_url.rstrip("/") + label_link(settings.secret_key, return_id)
    return f"your return is approved. Print the label here: {link}"


def cancel_before_dispatch(
    conn: Connection,
    *,
    order_id: str,
    requested_by: str,
    now: datetime,
    publish: Callable[[Any], None] | None = None,
    settings: Settings | None = None,
) -> str:
    """Cancels while nothing has left the warehouse; afterwards the answer is a return."""
    from doorstep.bus.tables import timers
    from doorstep.orders.events import OrderCancelled
    from doorstep.orders.tables import order_steps, orders
    from doorstep.shipments.tables import delivery_slots, shipments, slot_bookings

    order = conn.execute(select(orders).where(orders.c.id == order_id).with_for_update()).first()
    if order is None:
        raise RuleViolated("I could not find that order", field="order_id")
    if order.status == "cancelled":
        return f"order {order.external_id} was already cancelled."
    steps = set(conn.execute(select(order_steps.c.step).where(order_steps.c.order_id == order_id)).scalars())
    moving = conn.execute(
        select(shipments.c.id).where(
            shipments.c.order_id == order_id,
            shipments.c.is_return.is_(False),
            shipments.c.status.not_in(["Pending", "InfoReceived"]),
        )
    ).first()
    if moving is not None or steps & {"dispatched", "out_for_delivery", "delivered"}:
        raise RuleViolated(
            f"order {order.external_id} has already left our warehouse, so it can no longer be cancelled; "
            "once it arrives you can return it for a refund",
            field="order_id",
        )
    conn.execute(update(orders).where(orders.c.id == order_id).values(status="cancelled", updated_at=now))
    conn.execute(
        insert(order_steps).values(
            order_id=order_id, step="cancelled", occurred_at=now, detail={"by": requested_by}
        )
    )
    for booking in conn.execute(
        select(slot_bookings.c.shipment_id, slot_bookings.c.slot_id)
        .join(shipments, shipments.c.id == slot_bookings.c.shipment_id)
        .where(shipments.c.order_id == order_id)
    ).all():
        conn.execute(
            update(delivery_slots)
            .where(delivery_slots.c.id == booking.slot_id, delivery_slots.c.booked > 0)
            .values(booked=delivery_slots.c.booked - 1)
        )
        conn.execute(delete(slot_bookings).where(slot_bookings.c.shipment_id == booking.shipment_id))
    conn.execute(
        update(timers)
        .where(timers.c.key == f"order:{order_id}", timers.c.fired_at.is_(None))
        .values(cancelled_at=now)
    )
    outbox = _Outbox(conn, publish, now)
    outbox(
        OrderCancelled(
            occurred_at=now,
            order_id=order_id,
            customer_id=order.customer_id,
            reason=f"asked by the customer ({requested_by})",
        )
    )
    outbox.done()
    return f"order {order.external_id} is cancelled; the refund goes back to your payment method."


def resend_invoice(
    conn: Connection,
    *,
    order_id: str,
    requested_by: str,
    now: datetime,
    email: str | None = None,
    publish: Callable[[Any], None] | None = None,
    settings: Settings | None = None,
) -> str:
    """The invoice's signed link, for the reply (the PDF is issued once the delivery is proven)."""
    from doorstep.orders.routes_chain import invoice_link
    from doorstep.orders.tables import invoices

    settings = settings or get_settings()
    row = conn.execute(select(invoices.c.number).where(invoices.c.order_id == order_id)).first()
    if row is None:
        raise RuleViolated(
            "there is no invoice yet: it is issued as soon as the order is delivered", field="order_id"
        )
    return f"here is invoice {row.number}: {settings.public_base_url.rstrip('/')}{invoice_link(settings.secret_key, order_id)}"
