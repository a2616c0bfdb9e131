"""The ports on the real store: live order facts read with plain SQL, and customer actions.

Actions go through the domain commands the tracking page uses (`LastmileActions`). What no command covers
(cancelling an order, a new street address, a pickup point) is reported as needing a person, so the dialogue
hands the confirmed request to an agent instead of pretending it happened.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select

from doorstep.conversations.ports import (
    ActionRequest,
    ActionResult,
    OrderFacts,
    ReturnFacts,
    ShipmentFacts,
    SlotOption,
)
from doorstep.conversations.tables import verification_attempts
from doorstep.customers.tables import customers, identities
from doorstep.orders.tables import order_steps, orders
from doorstep.returns.tables import returns
from doorstep.shipments.tables import proofs_of_delivery, shipments, tracking_events

CHANNEL_IDENTITY_KINDS = {"sms": ("phone",), "whatsapp": ("whatsapp", "phone"), "messenger": ("messenger",)}


class SqlOrderFacts:
    """OrderFactsPort on an open connection."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def find_order(self, number: str) -> OrderFacts | None:
        wanted = number.strip().lstrip("#").upper()
        row = self.conn.execute(
            select(orders.c.id).where(func.upper(orders.c.external_id).in_({wanted, "#" + wanted}))
        ).first()
        return self.get_order(row.id) if row else None

    def get_order(self, order_id: str) -> OrderFacts | None:
        o = self.conn.execute(
            select(orders, customers.c.email, customers.c.postcode.label("customer_postcode"))
            .join(customers, customers.c.id == orders.c.customer_id)
            .where(orders.c.id == order_id)
        ).first()
        if o is None:
            return None
        ships = []
        for s in self.conn.execute(
            select(shipments)
            .where(shipments.c.order_id == order_id, shipments.c.is_return.is_(False))
            .order_by(shipments.c.created_at)
        ):
            last = self.conn.execute(
                select(tracking_events.c.message)
                .where(tracking_events.c.shipment_id == s.id)
                .order_by(tracking_events.c.occurred_at.desc())
                .limit(1)
            ).scalar()
            proof = self.conn.execute(
                select(proofs_of_delivery)
                .where(proofs_of_delivery.c.shipment_id == s.id)
                .order_by(proofs_of_delivery.c.delivered_at.desc())
                .limit(1)
            ).first()
            ships.append(
                ShipmentFacts(
                    id=s.id,
                    carrier=s.carrier,
                    tracking_number=s.tracking_number,
                    status=s.status,
                    promised_from=s.promised_from,
                    promised_to=s.promised_to,
                    predicted_from=s.predicted_from,
                    predicted_to=s.predicted_to,
                    delay_reason=s.delay_reason,
                    last_scan_at=s.last_scan_at,
                    last_location=s.last_location,
                    last_message=last,
                    dispatched_at=s.dispatched_at,
                    delivered_at=s.delivered_at or (proof.delivered_at if proof else None),
                    proof_recipient=proof.recipient_name if proof else None,
                    has_proof_photo=bool(proof and proof.photo_path),
                )
            )
        rets = [
            ReturnFacts(
                id=r.id,
                status=r.status,
                resolution=r.resolution,
                refund_minor=r.refund_minor,
                currency=r.currency,
                requested_at=r.requested_at,
                updated_at=r.updated_at,
            )
            for r in self.conn.execute(
                select(returns).where(returns.c.order_id == order_id).order_by(returns.c.requested_at)
            )
        ]
        has_invoice = (
            self.conn.execute(
                select(order_steps.c.step).where(
                    order_steps.c.order_id == order_id, order_steps.c.step == "invoiced"
                )
            ).first()
            is not None
        )
        return OrderFacts(
            id=o.id,
            number=o.external_id,
            customer_id=o.customer_id,
            status=o.status,
            placed_at=o.placed_at,
            email=o.email,
            postcode=o.ship_postcode,
            customer_postcode=o.customer_postcode,
            promised_from=o.promised_from,
            promised_to=o.promised_to,
            shipments=ships,
            returns=rets,
            has_invoice=has_invoice,
        )

    def recent_orders(self, customer_id: str, *, limit: int = 5) -> list[OrderFacts]:
        ids = (
            self.conn.execute(
                select(orders.c.id)
                .where(orders.c.customer_id == customer_id)
                .order_by(orders.c.placed_at.desc())
                .limit(limit)
            )
            .scalars()
            .all()
        )
        return [o for o in (self.get_order(i) for i in ids) if o is not None]

    def free_slots(self, order_id: str, *, now: datetime, until: datetime) -> list[SlotOption] | None:
        from doorstep.shipments.tables import delivery_slots

        ship = self.conn.execute(
            select(shipments.c.carrier, shipments.c.destination_region, orders.c.ship_region)
            .join(orders, orders.c.id == shipments.c.order_id)
            .where(shipments.c.order_id == order_id, shipments.c.is_return.is_(False))
            .order_by(shipments.c.created_at.desc())
            .limit(1)
        ).first()
        if ship is None:
            return None
        query = select(delivery_slots).where(delivery_slots.c.carrier == ship.carrier)
        region = ship.destination_region or ship.ship_region
        if region:
            query = query.where(delivery_slots.c.region == region)
        if self.conn.execute(query.limit(1)).first() is None:
            return None  # no slot calendar for this carrier and area
        rows = self.conn.execute(
            query.where(
                delivery_slots.c.starts_at > now,
                delivery_slots.c.starts_at < until,
                delivery_slots.c.booked < delivery_slots.c.capacity,
            ).order_by(delivery_slots.c.starts_at)
        ).all()
        return [SlotOption(id=r.id, starts_at=r.starts_at, ends_at=r.ends_at) for r in rows]

    def failed_verifications(self, *, keys: list[str], since: datetime) -> int:
        counts = [
            self.conn.execute(
                select(func.count())
                .select_from(verification_attempts)
                .where(
                    verification_attempts.c.key == key,
                    verification_attempts.c.is_success.is_(False),
                    verification_attempts.c.attempted_at >= since,
                )
            ).scalar_one()
            for key in keys
        ]
        return max(counts, default=0)

    def record_verification(
        self,
        *,
        conversation_id: str,
        keys: list[str],
        is_success: bool,
        now: datetime,
        prune_before: datetime,
    ) -> None:
        self.conn.execute(
            delete(verification_attempts).where(verification_attempts.c.attempted_at < prune_before)
        )
        self.conn.execute(
            insert(verification_attempts),
            [
                {
                    "conversation_id": conversation_id,
                    "key": key,
                    "is_success": is_success,
                    "attempted_at": now,
                }
                for key in keys
            ],
        )


def customer_for_channel(conn: Connection, *, channel: str, address: str) -> str | None:
    """The customer a phone number or Messenger id belongs to (identities first, then the profile)."""
    kinds = CHANNEL_IDENTITY_KINDS.get(channel)
    if not kinds or not address:
        return None
    customer_id = conn.execute(
        select(identities.c.customer_id)
        .where(identities.c.kind.in_(kinds), identities.c.value == address)
        .limit(1)
    ).scalar()
    if customer_id is None:
        customer_id = _notify_channel_identity(conn, channel=channel, address=address)
    if customer_id is None and "phone" in kinds:
        customer_id = conn.execute(
            select(customers.c.id).where(customers.c.phone == address).limit(1)
        ).scalar()
    if customer_id is None:
        return None
    # A merged profile answers for the one it was merged into.
    merged = conn.execute(select(customers.c.merged_into).where(customers.c.id == customer_id)).scalar()
    return merged or customer_id


def _notify_channel_identity(conn: Connection, *, channel: str, address: str) -> str | None:
    """Addresses the notifications domain learned (Messenger PSIDs ...), when its table is present."""
    from doorstep.notifications import tables as notification_tables

    table = getattr(notification_tables, "channel_identities", None)
    if table is None:
        return None
    return conn.execute(
        select(table.c.customer_id).where(table.c.channel == channel, table.c.address == address).limit(1)
    ).scalar()


def customer_for_email(conn: Connection, email: str) -> str | None:
    return conn.execute(
        select(customers.c.id)
        .where(or_(customers.c.email == email.lower(), customers.c.email == email))
        .limit(1)
    ).scalar()


SAFE_PLACE_WORDS = [
    ("front_porch", re.compile(r"\b(porch|front door|doorstep|doormat)\b", re.I)),
    ("back_door", re.compile(r"\b(back door|back garden|rear door)\b", re.I)),
    ("garage", re.compile(r"\bgarage\b", re.I)),
    ("shed", re.compile(r"\bshed\b", re.I)),
    ("reception", re.compile(r"\b(reception|concierge|front desk|porter)\b", re.I)),
]
HOUSE = re.compile(r"\b(?:number|no\.?|house|flat)\s*(\d+[a-z]?)\b", re.I)
RETURN_REASON_CODES = {
    "fit.too_small": "fit.too_small",
    "fit.too_big": "fit.too_large",
    "fit.other": "fit.not_as_pictured",
    "preference.changed_mind": "changed_mind",
    "other": "changed_mind",
}


class LastmileActions:
    """ActionsPort on the tracking page's commands (lastmile: shipments/handlers_lastmile.py, returns/handlers.py,
    orders/routes_chain.py). Each command owns its transaction, so this runs outside the inbound projection
    (see handlers.perform_pending_actions)."""

    def __init__(self, ctx: Any):
        self.ctx = ctx

    def perform(self, request: ActionRequest, *, now: datetime) -> ActionResult:
        from doorstep.errors import DoorstepError

        handler = getattr(self, f"_{request.kind}", None)
        if handler is None:
            return ActionResult(
                False, "I can't do this automatically, so a colleague will do it for you.", needs_person=True
            )
        try:
            return handler(request, now)
        except DoorstepError as exc:
            return ActionResult(False, exc.detail)

    def _shipment_id(self, order_id: str) -> str | None:
        with self.ctx.engine.connect() as conn:
            return conn.execute(
                select(shipments.c.id)
                .where(shipments.c.order_id == order_id, shipments.c.is_return.is_(False))
                .order_by(shipments.c.created_at.desc())
                .limit(1)
            ).scalar()

    def _change(self, request: ActionRequest, kind: str, detail: dict[str, Any]) -> ActionResult:
        from doorstep.shipments.delivery import describe_change
        from doorstep.shipments.handlers_lastmile import change_delivery

        shipment_id = self._shipment_id(request.order_id)
        if shipment_id is None:
            return ActionResult(False, f"order {request.order_number} has no parcel with a carrier yet.")
        done = change_delivery(
            self.ctx, shipment_id=shipment_id, kind=kind, detail=detail, requested_by="assistant"
        )
        return ActionResult(
            True,
            f"{describe_change(kind, done['detail'])} for order {request.order_number}; "
            "the carrier has been told.",
        )

    def _reschedule(self, request: ActionRequest, now: datetime) -> ActionResult:
        slot_id = request.params.get("slot_id")
        if not slot_id:
            return ActionResult(
                False,
                "the carrier has no delivery calendar I can book, so a colleague will "
                "arrange the new day with them.",
                needs_person=True,
            )
        return self._change(request, "slot", {"slot_id": slot_id})

    def _redirect(self, request: ActionRequest, now: datetime) -> ActionResult:
        p = request.params
        note = str(p.get("instructions") or "")[:200]
        if p.get("kind") == "safe_place":
            place = next((value for value, rx in SAFE_PLACE_WORDS if rx.search(note)), "other")
            return self._change(
                request,
                "safe_place",
                {"place": place, "note": note or None} if place == "other" else {"place": place},
            )
        if p.get("kind") == "neighbour":
            house = HOUSE.search(note)
            if house is None:
                return self._change(request, "instructions", {"text": note})
            return self._change(request, "neighbour", {"name": "Neighbour", "house": house.group(1)})
        # A new address or a pickup point needs a person (address checks, the carrier's point list).
        return ActionResult(
            False, "changing the address needs a colleague to check it with the carrier.", needs_person=True
        )

    def _start_return(self, request: ActionRequest, now: datetime) -> ActionResult:
        from doorstep.orders.tables import order_lines
        from doorstep.returns.handlers import LineRequest, request_return

        with self.ctx.engine.connect() as conn:
            lines = conn.execute(
                select(order_lines.c.id, order_lines.c.quantity).where(
                    order_lines.c.order_id == request.order_id
                )
            ).all()
        if not lines:
            return ActionResult(
                False,
                "I can't see the items of this order, so a colleague will start the return.",
                needs_person=True,
            )
        p = request.params
        result = request_return(
            self.ctx,
            order_id=request.order_id,
            lines=[
                LineRequest(order_line_id=line.id, quantity=line.quantity, condition="as_new")
                for line in lines
            ],
            reason_code=RETURN_REASON_CODES.get(str(p.get("reason_code")), "changed_mind"),
            resolution=str(p.get("resolution") or "refund"),
            method=None,
            reason_detail=p.get("note"),
        )
        label = " Your return label is on your tracking page." if result.get("label_tracking_number") else ""
        what = "exchange" if result["resolution"] == "exchange" else "return"
        return ActionResult(
            True,
            f"your {what} for order {request.order_number} is {result['status'].replace('_', ' ')}.{label}",
        )

    def _cancel(self, request: ActionRequest, now: datetime) -> ActionResult:
        from doorstep.shipments.actions_lastmile import cancel_before_dispatch

        with self.ctx.uow() as uow:  # OrderCancelled lands in the outbox with the cancellation
            detail = cancel_before_dispatch(
                uow.conn,
                order_id=request.order_id,
                requested_by="assistant",
                now=now,
                publish=uow.publish,
                settings=self.ctx.settings,
            )
            uow.commit()
        return ActionResult(True, detail)

    def _resend_invoice(self, request: ActionRequest, now: datetime) -> ActionResult:
        from doorstep.notifications.api import queue_reply
        from doorstep.orders.routes_chain import invoice_link
        from doorstep.orders.tables import invoices

        with self.ctx.engine.begin() as conn:
            has_invoice = conn.execute(
                select(invoices.c.id).where(invoices.c.order_id == request.order_id)
            ).first()
            if has_invoice is None:
                return ActionResult(
                    False,
                    f"no invoice has been issued for order {request.order_number} yet; it "
                    "is issued when the order is delivered.",
                )
            order = conn.execute(
                select(orders.c.customer_id, customers.c.email)
                .join(customers, customers.c.id == orders.c.customer_id)
                .where(orders.c.id == request.order_id)
            ).one()
            url = self.ctx.settings.public_base_url + invoice_link(
                self.ctx.settings.secret_key, request.order_id
            )
            if order.email:
                queue_reply(
                    conn,
                    customer_id=order.customer_id,
                    channel="email",
                    to_address=order.email,
                    text=f"Your invoice for order {request.order_number}: {url}",
                    dedupe_key=f"assistant-invoice:{request.order_id}:{now.isoformat()}",
                    now=now,
                    order_id=request.order_id,
                )
        sent = " I've emailed it to you too." if order.email else ""
        return ActionResult(True, f"here is the invoice for order {request.order_number}: {url}{sent}")
