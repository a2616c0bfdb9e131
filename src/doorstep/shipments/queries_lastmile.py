"""Read side of the customer's tracking page: one order, its shipment, timeline, windows, proof, returns and
the actions that fit its state, in plain words."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from doorstep.customers.tables import customers
from doorstep.orders.tables import invoices, order_lines, order_steps, orders
from doorstep.returns.model import STEP_WORDS
from doorstep.returns.tables import returns
from doorstep.shipments.delivery import Capabilities, ShipmentState, allowed_kinds, describe_change
from doorstep.shipments.tables import (
    delivery_changes,
    delivery_slots,
    driver_assignments,
    proofs_of_delivery,
    shipments,
    slot_bookings,
    tracking_events,
)

STATUS_WORDS = {
    "Pending": "We have your order",
    "InfoReceived": "Your parcel is being prepared",
    "InTransit": "Your parcel is on its way",
    "OutForDelivery": "Out for delivery today",
    "AttemptFail": "We tried to deliver, but missed you",
    "Delivered": "Delivered",
    "AvailableForPickup": "Ready to collect",
    "Exception": "There is a problem with your delivery",
    "Expired": "Tracking has stopped",
}
SUBTAG_WORDS = {
    "left_with_neighbour": "left with a neighbour",
    "at_pickup_point": "at the pickup point",
    "safe_place": "left in your safe place",
    "damaged": "damaged in transit",
    "returned_to_sender": "on its way back to us",
    "address_issue": "the address needs checking",
}
STEP_WORDS_ORDER = {
    "placed": "Order placed",
    "paid": "Payment received",
    "picked": "Picked in the warehouse",
    "packed": "Packed",
    "dispatched": "Handed to the carrier",
    "out_for_delivery": "Out for delivery",
    "delivered": "Delivered",
    "invoiced": "Invoice issued",
    "follow_up_sent": "We asked how it went",
}


@dataclass
class TrackingView:
    order: Any
    customer: Any
    shipment: Any | None
    tz: ZoneInfo
    state: str
    headline: str
    is_late: bool
    timeline: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    changes: list[str]
    proof: Any | None
    driver_eta: tuple[datetime, datetime] | None
    allowed: list[str]
    returnable_lines: list[Any]
    returns: list[dict[str, Any]]
    invoice: Any | None
    answers: list[tuple[str, str]] = field(default_factory=list)
    booked_slot: tuple[datetime, datetime] | None = None

    def fmt(self, value: datetime | None, pattern: str = "%a %d %b, %H:%M") -> str:
        return value.astimezone(self.tz).strftime(pattern) if value else ""

    def window(self, start: datetime | None, end: datetime | None) -> str:
        if not start and not end:
            return ""
        if start and end:
            if start.astimezone(self.tz).date() == end.astimezone(self.tz).date():
                return f"{self.fmt(start)}–{self.fmt(end, '%H:%M')}"
            return f"{self.fmt(start, '%a %d %b')} – {self.fmt(end, '%a %d %b')}"
        return f"by {self.fmt(end or start)}"


def load_view(conn: Connection, order_id: str, *, caps_for: Any, now: datetime) -> TrackingView | None:
    order = conn.execute(select(orders).where(orders.c.id == order_id)).first()
    if order is None:
        return None
    customer = conn.execute(select(customers).where(customers.c.id == order.customer_id)).first()
    try:
        tz = ZoneInfo(customer.timezone) if customer is not None and customer.timezone else ZoneInfo("UTC")
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    shipment = conn.execute(
        select(shipments)
        .where(shipments.c.order_id == order_id, shipments.c.is_return.is_(False))
        .order_by(shipments.c.created_at.desc())
    ).first()
    steps = {
        r.step: r.occurred_at
        for r in conn.execute(select(order_steps).where(order_steps.c.order_id == order_id))
    }
    events: list[dict[str, Any]] = []
    proof = driver_eta = None
    change_words: list[str] = []
    allowed: list[str] = []
    state = "Preparing"
    if shipment is not None:
        state = shipment.status
        for e in conn.execute(
            select(tracking_events)
            .where(tracking_events.c.shipment_id == shipment.id)
            .order_by(tracking_events.c.occurred_at.desc())
        ):
            place = ", ".join(x for x in (e.city, e.country) if x)
            events.append(
                {
                    "at": e.occurred_at,
                    "text": e.message or STATUS_WORDS.get(e.status, e.status),
                    "place": place,
                }
            )
        proof = conn.execute(
            select(proofs_of_delivery)
            .where(proofs_of_delivery.c.shipment_id == shipment.id)
            .order_by(proofs_of_delivery.c.delivered_at.desc())
        ).first()
        eta = conn.execute(
            select(driver_assignments.c.eta_from, driver_assignments.c.eta_to).where(
                driver_assignments.c.shipment_id == shipment.id, driver_assignments.c.status == "departed"
            )
        ).first()
        driver_eta = (eta.eta_from, eta.eta_to) if eta else None
        change_words = [
            describe_change(c.kind, c.detail)
            for c in conn.execute(
                select(delivery_changes)
                .where(delivery_changes.c.shipment_id == shipment.id)
                .order_by(delivery_changes.c.created_at)
            )
        ]
        caps: Capabilities = caps_for(shipment.carrier)
        allowed = allowed_kinds(
            ShipmentState(
                shipment.id,
                shipment.carrier,
                shipment.status,
                shipment.destination_region or order.ship_region,
            ),
            caps,
        )
    steps.setdefault("placed", order.placed_at)
    if shipment is not None and shipment.delivered_at and not events:
        steps.setdefault("delivered", shipment.delivered_at)
    from_scans = {"dispatched", "out_for_delivery", "delivered"} if events else set()
    rank = {step: i for i, step in enumerate(STEP_WORDS_ORDER)}
    events.extend(
        {"at": at, "text": STEP_WORDS_ORDER[step], "place": "", "rank": rank[step]}
        for step, at in steps.items()
        if step in STEP_WORDS_ORDER and step not in from_scans
    )
    events.sort(key=lambda e: (e["at"], e.get("rank", 4.5)), reverse=True)
    is_late = bool(
        shipment is not None
        and shipment.status not in ("Delivered",)
        and shipment.promised_to
        and (
            (shipment.predicted_to and shipment.predicted_to > shipment.promised_to)
            or now > shipment.promised_to
        )
    )
    headline = STATUS_WORDS.get(state, "We have your order")
    if is_late and state in ("InTransit", "InfoReceived", "Pending", "Exception"):
        headline = "Your parcel is running late"
    if state == "Delivered" and shipment is not None and shipment.subtag in SUBTAG_WORDS:
        headline = f"Delivered: {SUBTAG_WORDS[shipment.subtag]}"
    lines = conn.execute(
        select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_no)
    ).all()
    return_rows = conn.execute(
        select(returns).where(returns.c.order_id == order_id).order_by(returns.c.requested_at)
    ).all()
    invoice = conn.execute(select(invoices).where(invoices.c.order_id == order_id)).first()
    view = TrackingView(
        order=order,
        customer=customer,
        shipment=shipment,
        tz=tz,
        state=state,
        headline=headline,
        is_late=is_late,
        timeline=events,
        steps=[{"step": s, "text": STEP_WORDS_ORDER[s], "at": steps.get(s)} for s in STEP_WORDS_ORDER],
        changes=change_words,
        proof=proof,
        driver_eta=driver_eta,
        allowed=allowed,
        returnable_lines=list(lines) if state == "Delivered" else [],
        returns=[
            {
                "id": r.id,
                "status": r.status,
                "words": STEP_WORDS.get(r.status, r.status),
                "resolution": r.resolution,
                "method": r.method,
                "refund_minor": r.refund_minor,
                "currency": r.currency,
                "tracking_number": r.label_tracking_number,
                "steps": r.steps,
            }
            for r in return_rows
        ],
        invoice=invoice,
    )
    if shipment is not None:
        booked = conn.execute(
            select(delivery_slots.c.starts_at, delivery_slots.c.ends_at)
            .join(slot_bookings, slot_bookings.c.slot_id == delivery_slots.c.id)
            .where(slot_bookings.c.shipment_id == shipment.id)
        ).first()
        view.booked_slot = (booked.starts_at, booked.ends_at) if booked else None
    view.answers = answers_for(view, now=now)
    return view


def answers_for(view: TrackingView, *, now: datetime) -> list[tuple[str, str]]:
    """The questions customers ask at each point, answered from the data, so they need not contact anyone."""
    s = view.shipment
    out: list[tuple[str, str]] = []
    if s is None:
        out.append(
            (
                "When will it ship?",
                "Most orders leave our warehouse within one working day. We will message you with the tracking details.",
            )
        )
        return out
    promised = view.window(s.promised_from, s.promised_to)
    predicted = view.window(s.predicted_from, s.predicted_to)
    if view.state == "Exception":
        what = SUBTAG_WORDS.get(s.subtag or "", "") or (s.delay_reason or "the carrier reported a problem")
        out.append(("What happened?", f"The carrier reports: {what}."))
        if s.subtag == "returned_to_sender":
            out.append(
                (
                    "What happens to my order?",
                    "When it reaches us we refund you in full or send it again, as you prefer: tell us with “Report a problem”.",
                )
            )
        else:
            out.append(
                (
                    "What are you doing about it?",
                    "We are in touch with the carrier and will message you within one working day. You do not need to do anything.",
                )
            )
        return out
    if view.state in ("Pending", "InfoReceived", "InTransit"):
        if view.is_late:
            why = f" The carrier reports: {s.delay_reason}." if s.delay_reason else ""
            out.append(
                (
                    "Why is it late?",
                    f"It is taking longer than promised ({promised or 'the date we gave'}).{why} "
                    f"We now expect it {predicted or 'as soon as the carrier scans it again'}.",
                )
            )
            out.append(
                (
                    "Will I get a refund for the delay?",
                    "If it arrives after the new window too, tell us with “Report a problem” and we will make it right.",
                )
            )
        else:
            out.append(
                (
                    "When will it arrive?",
                    f"We expect it {predicted or promised or 'within the promised time'}.",
                )
            )
        out.append(
            (
                "I won’t be home. What can I do?",
                "Choose another day, send it to a pickup point, a neighbour or a safe place below.",
            )
        )
    elif view.state == "OutForDelivery":
        if view.driver_eta:
            out.append(
                ("What time will it come?", f"Your driver expects to arrive {view.window(*view.driver_eta)}.")
            )
        else:
            out.append(
                ("What time will it come?", "Today. You will get a narrower window when the driver sets off.")
            )
        out.append(
            (
                "Can I still change the delivery?",
                "You can add instructions for the driver. Other changes depend on the carrier and are shown below when possible.",
            )
        )
    elif view.state == "AttemptFail":
        out.append(
            (
                "What happens now?",
                "The carrier will try again on the next working day. Pick a time that suits you, or send it to a pickup point.",
            )
        )
    elif view.state == "AvailableForPickup":
        out.append(
            (
                "Where do I collect it?",
                f"At {s.last_location or 'the pickup point in your message'}. Bring photo ID and your order number {view.order.external_id}.",
            )
        )
    elif view.state == "Delivered":
        where = (
            f" ({view.proof.recipient_name} signed for it)"
            if view.proof is not None and view.proof.recipient_name
            else ""
        )
        photo = "the photo above, " if view.proof is not None and view.proof.photo_path else ""
        out.append(
            (
                "It says delivered but I can’t find it",
                f"It was delivered {view.fmt(s.delivered_at)}{where}. Check {photo}your safe place and neighbours; "
                "if it is still missing, use “Report a problem”.",
            )
        )
        out.append(
            (
                "How do I return something?",
                "Start a return below: choose the item and the reason, and print the label (or keep the item when shipping back costs more than it).",
            )
        )
    return out
