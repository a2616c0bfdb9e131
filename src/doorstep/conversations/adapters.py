"""The ports on the real store: live order facts read with plain SQL, and customer actions.

Actions go through the domain commands the tracking page uses (lastmile's shipments/delivery.py,
returns/ and orders/chain.py). Until those modules are merged, `DomainActions` finds nothing to call and
reports that a person must do it, so the dialogue hands the confirmed request to an agent instead of
pretending it happened.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select

from doorstep.conversations.ports import ActionRequest, ActionResult, OrderFacts, ReturnFacts, ShipmentFacts
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
    if customer_id is None and "phone" in kinds:
        customer_id = conn.execute(
            select(customers.c.id).where(customers.c.phone == address).limit(1)
        ).scalar()
    if customer_id is None:
        return None
    # A merged profile answers for the one it was merged into.
    merged = conn.execute(select(customers.c.merged_into).where(customers.c.id == customer_id)).scalar()
    return merged or customer_id


def customer_for_email(conn: Connection, email: str) -> str | None:
    return conn.execute(
        select(customers.c.id)
        .where(or_(customers.c.email == email.lower(), customers.c.email == email))
        .limit(1)
    ).scalar()


# (module, function) of the domain command each action calls once lastmile's branch is merged. Each is called
# as fn(conn, **params, order_id=..., requested_by="assistant", now=...) and returns a short description.
COMMANDS: dict[str, tuple[str, str]] = {
    "reschedule": ("doorstep.shipments.delivery", "reschedule_for_order"),
    "redirect": ("doorstep.shipments.delivery", "redirect_for_order"),
    "start_return": ("doorstep.returns.commands", "start_return_for_order"),
    "cancel": ("doorstep.orders.chain", "cancel_before_dispatch"),
    "resend_invoice": ("doorstep.orders.chain", "resend_invoice"),
}


class DomainActions:
    """ActionsPort calling the tracking page's domain commands in the conversation's transaction."""

    def __init__(self, conn: Connection, *, commands: dict[str, Callable[..., Any]] | None = None):
        self.conn = conn
        self.commands = commands if commands is not None else _resolve_commands()

    def perform(self, request: ActionRequest, *, now: datetime) -> ActionResult:
        command = self.commands.get(request.kind)
        if command is None:
            return ActionResult(
                False,
                "I can't do this automatically yet, so a colleague will do it for you.",
                needs_person=True,
            )
        from doorstep.errors import DoorstepError

        try:
            with self.conn.begin_nested():  # a refused command leaves the conversation's own writes intact
                detail = command(
                    self.conn, order_id=request.order_id, requested_by="assistant", now=now, **request.params
                )
        except DoorstepError as exc:
            return ActionResult(False, exc.detail)
        return ActionResult(True, str(detail) if detail else "it's done.")


def _resolve_commands() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for kind, (module_name, fn_name) in COMMANDS.items():
        if importlib.util.find_spec(module_name) is None:
            continue
        fn = getattr(importlib.import_module(module_name), fn_name, None)
        if callable(fn):
            found[kind] = fn
    return found
