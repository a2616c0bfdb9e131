"""The order chain's use cases and reactions: manual steps from staff, automatic steps from shipment events,
the invoice after delivery with proof, and the follow-up survey timer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, select, update

from doorstep.bus import timers as bus_timers
from doorstep.bus.messages import DomainEvent, Envelope
from doorstep.bus.registry import Bus, HandlerContext, PrepareContext
from doorstep.customers.tables import customers
from doorstep.db.dialect import insert_ignore
from doorstep.ids import new_id
from doorstep.orders.chain import (
    FOLLOW_UP_DELAY_DAYS,
    RANK,
    OrderNotFound,
    check_manual_step,
)
from doorstep.orders.events import FollowUpDue, InvoiceIssued, OrderPlaced, OrderStepReached
from doorstep.orders.invoice import InvoiceData, InvoiceLine, invoice_number, render_invoice_pdf
from doorstep.orders.tables import invoices, order_lines, order_steps, orders
from doorstep.shipments.events import (
    ProofOfDeliveryRecorded,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentOutForDelivery,
)

if TYPE_CHECKING:
    from doorstep.context import AppContext
    from doorstep.security.model import Principal

MINOR = Decimal(100)


def find_order(conn: Connection, ref: str, *, lock: bool = False) -> Any | None:
    """An order by internal id or by the shop's order number."""
    query = select(orders).where((orders.c.id == ref) | (orders.c.external_id == ref))
    if lock:
        query = query.with_for_update()
    return conn.execute(query).first()


def reached_steps(conn: Connection, order_id: str) -> dict[str, datetime]:
    rows = conn.execute(
        select(order_steps.c.step, order_steps.c.occurred_at).where(order_steps.c.order_id == order_id)
    )
    return {r.step: r.occurred_at for r in rows}


def record_step(
    conn: Connection,
    publish: Any,
    *,
    order_id: str,
    customer_id: str,
    step: str,
    at: datetime,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Records `step` once (a second call changes nothing) and emits OrderStepReached; moves orders.status
    forward along the chain, never back. `at` is when the step happened, `now` when it is written: the order's
    updated_at says when the row last changed (the analytics replica reads changes by it), so a scan that
    arrives a day late still counts as a change now."""
    inserted = conn.execute(
        insert_ignore(conn, order_steps, index_elements=["order_id", "step"])
        .values(order_id=order_id, step=step, occurred_at=at, detail=detail or {})
        .returning(order_steps.c.step)  # rowcount after ON CONFLICT DO NOTHING is not reliable on psycopg
    ).first()
    if inserted is None:
        return False
    row = conn.execute(select(orders.c.status).where(orders.c.id == order_id)).first()
    moves_forward = row is not None and (row.status not in RANK or RANK[row.status] < RANK[step])
    if moves_forward and row is not None and row.status not in ("cancelled", "refunded"):
        conn.execute(update(orders).where(orders.c.id == order_id).values(status=step, updated_at=now))
    publish(OrderStepReached(occurred_at=at, order_id=order_id, customer_id=customer_id, step=step))
    return True


@dataclass(frozen=True)
class StepReached:
    """One `record_step` call, for `record_steps`."""

    order_id: str
    customer_id: str
    step: str
    at: datetime
    detail: dict[str, Any] | None = None


def record_steps(
    conn: Connection, publish: Any, steps: Sequence[StepReached], *, now: datetime
) -> list[StepReached]:
    """`record_step` for many steps, in order, with one insert, one lookup and one update; returns the steps
    that were new. A step repeated in `steps` is recorded once, with its first time, as it would be one call
    at a time; later steps of one order see the status the earlier ones moved it to."""
    first: dict[tuple[str, str], StepReached] = {}
    for s in steps:
        first.setdefault((s.order_id, s.step), s)
    if not first:
        return []
    inserted = {
        (row.order_id, row.step)
        for row in conn.execute(
            insert_ignore(conn, order_steps, index_elements=["order_id", "step"]).returning(
                order_steps.c.order_id, order_steps.c.step
            ),
            [
                {"order_id": s.order_id, "step": s.step, "occurred_at": s.at, "detail": s.detail or {}}
                for s in first.values()
            ],
        )
    }
    if not inserted:
        return []
    statuses: dict[str, str] = dict(
        conn.execute(
            select(orders.c.id, orders.c.status).where(orders.c.id.in_({o for o, _ in inserted}))
        ).all()
    )
    new = [s for key, s in first.items() if key in inserted]
    moves: list[dict[str, Any]] = []
    for s in new:
        status = statuses.get(s.order_id)
        moves_forward = status is not None and (status not in RANK or RANK[status] < RANK[s.step])
        if moves_forward and status not in ("cancelled", "refunded"):
            moves.append({"order_id_": s.order_id, "status_": s.step})
            statuses[s.order_id] = s.step
        publish(
            OrderStepReached(occurred_at=s.at, order_id=s.order_id, customer_id=s.customer_id, step=s.step)
        )
    if moves:
        conn.execute(
            update(orders)
            .where(orders.c.id == bindparam("order_id_"))
            .values(status=bindparam("status_"), updated_at=now),
            moves,
        )
    return new


def record_manual_step(
    ctx: AppContext, *, order_ref: str, step: str, occurred_at: datetime | None, principal: Principal
) -> dict[str, Any]:
    """Staff or the shop's back office records paid, picked or packed."""
    now = ctx.clock.now()
    at = occurred_at or now
    with ctx.uow() as uow:
        order = find_order(uow.conn, order_ref, lock=True)
        if order is None:
            raise OrderNotFound(f"no order {order_ref!r}", field="order")
        reached = reached_steps(uow.conn, order.id)
        if (
            "placed" not in reached
        ):  # the order exists, so it was placed, even if OrderPlaced was not seen yet
            record_step(
                uow.conn,
                uow.publish,
                order_id=order.id,
                customer_id=order.customer_id,
                step="placed",
                at=order.placed_at,
                now=now,
            )
            reached["placed"] = order.placed_at
        is_new = check_manual_step(step, reached=reached, order_status=order.status, at=at, now=now)
        if is_new:
            record_step(
                uow.conn,
                uow.publish,
                order_id=order.id,
                customer_id=order.customer_id,
                step=step,
                at=at,
                now=now,
                detail={"by": principal.name, "principal_kind": principal.kind},
            )
        uow.commit()
        return {
            "order_id": order.id,
            "step": step,
            "recorded": is_new,
            "steps": reached_steps_after(ctx, order.id),
        }


def reached_steps_after(ctx: AppContext, order_id: str) -> dict[str, str]:
    with ctx.engine.connect() as conn:
        return {k: v.isoformat() for k, v in reached_steps(conn, order_id).items()}


# ---- reactions --------------------------------------------------------------------------------------------


def _step_from_event(step: str, at_field: str = "occurred_at") -> Any:
    def handle(envelope: Envelope, ctx: HandlerContext) -> None:
        event = envelope.event()
        order_id = getattr(event, "order_id", None)
        customer_id = getattr(event, "customer_id", None)
        if not order_id:
            return  # a scan not matched to an order yet
        if customer_id is None:
            order = ctx.uow.conn.execute(select(orders.c.customer_id).where(orders.c.id == order_id)).first()
            if order is None:
                return
            customer_id = order.customer_id
        at = getattr(event, at_field, None) or event.occurred_at
        record_step(
            ctx.uow.conn,
            ctx.uow.publish,
            order_id=order_id,
            customer_id=customer_id,
            step=step,
            at=at,
            now=ctx.clock.now(),
        )

    return handle


def on_proof_of_delivery(envelope: Envelope, ctx: HandlerContext) -> None:
    """Delivery with proof: delivered step, invoice PDF, invoiced step, follow-up timer."""
    event = envelope.event()
    assert isinstance(event, ProofOfDeliveryRecorded)
    if not event.order_id:
        return
    conn = ctx.uow.conn
    order = conn.execute(select(orders).where(orders.c.id == event.order_id)).first()
    if order is None:
        return
    record_step(
        conn,
        ctx.uow.publish,
        order_id=order.id,
        customer_id=order.customer_id,
        step="delivered",
        at=event.delivered_at,
        now=ctx.clock.now(),
        detail={"proof_id": event.proof_id},
    )
    issue_invoice(ctx, order=order, delivered_at=event.delivered_at)
    delay_days = float(ctx.settings.extra.get("follow_up_delay_days", FOLLOW_UP_DELAY_DAYS))
    bus_timers.schedule(
        conn,
        key=f"order:{order.id}",
        kind=FollowUpDue.type_name,
        due_at=event.delivered_at + timedelta(days=delay_days),
        payload={
            "order_id": order.id,
            "customer_id": order.customer_id,
            "delivered_at": event.delivered_at.isoformat(),
        },
        dedupe_key=f"follow_up:{order.id}",
    )


def issue_invoice(ctx: HandlerContext, *, order: Any, delivered_at: datetime) -> str | None:
    """Writes the PDF and the invoices row once per order; returns the invoice number (None if it existed)."""
    conn = ctx.uow.conn
    if conn.execute(select(invoices.c.id).where(invoices.c.order_id == order.id)).first():
        return None
    now = ctx.clock.now()
    customer = conn.execute(select(customers.c.name).where(customers.c.id == order.customer_id)).first()
    lines = conn.execute(
        select(order_lines).where(order_lines.c.order_id == order.id).order_by(order_lines.c.line_no)
    ).all()
    number = invoice_number(order.external_id)
    data = InvoiceData(
        number=number,
        brand=ctx.settings.brand_name,
        order_number=order.external_id,
        issued_at=now,
        delivered_at=delivered_at,
        customer_name=order.ship_name or (customer.name if customer else "") or "Customer",
        address_lines=tuple(
            x
            for x in (
                order.ship_line1,
                " ".join(filter(None, [order.ship_postcode, order.ship_city])),
                order.ship_country,
            )
            if x
        ),
        currency=order.currency,
        lines=tuple(
            InvoiceLine(
                name=ln.name or ln.product_id,
                quantity=ln.quantity,
                unit_price=Decimal(ln.unit_price_minor) / MINOR,
            )
            for ln in lines
        ),
        shipping=Decimal(order.shipping_minor or 0) / MINOR,
        tax=Decimal(order.tax_minor or 0) / MINOR,
        discount=Decimal(order.discount_minor or 0) / MINOR,
        total=Decimal(order.total_minor) / MINOR,
    )
    path = invoice_path(Path(ctx.settings.var_dir), order.customer_id, order.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(render_invoice_pdf(data))
    tmp.replace(path)  # a retried handler rewrites the same file; the row below is the commit point
    conn.execute(
        insert(invoices).values(
            id=new_id(),
            order_id=order.id,
            number=number,
            path=str(path),
            total_minor=order.total_minor,
            currency=order.currency,
            issued_at=now,
        )
    )
    record_step(
        conn,
        ctx.uow.publish,
        order_id=order.id,
        customer_id=order.customer_id,
        step="invoiced",
        at=now,
        now=now,
        detail={"invoice_number": number},
    )
    ctx.uow.publish(
        InvoiceIssued(
            occurred_at=now,
            order_id=order.id,
            customer_id=order.customer_id,
            invoice_number=number,
            url_path=f"/orders/{order.id}/invoice.pdf",
        )
    )
    return number


def invoice_path(var_dir: Path, customer_id: str, order_id: str) -> Path:
    """Files holding personal data live under a folder per customer, so erasure removes them in one go."""
    return var_dir / "invoices" / customer_id / f"{order_id}.pdf"


def on_follow_up_due(envelope: Envelope, ctx: HandlerContext) -> None:
    """The survey itself is sent by the notifications journeys reacting to FollowUpDue; the chain records it."""
    event = envelope.event()
    assert isinstance(event, FollowUpDue)
    record_step(
        ctx.uow.conn,
        ctx.uow.publish,
        order_id=event.order_id,
        customer_id=event.customer_id,
        step="follow_up_sent",
        at=event.occurred_at,
        now=ctx.clock.now(),
    )


def on_order_placed(envelope: Envelope, ctx: HandlerContext) -> None:
    event = envelope.event()
    assert isinstance(event, OrderPlaced)
    order = ctx.uow.conn.execute(select(orders.c.placed_at).where(orders.c.id == event.order_id)).first()
    at = order.placed_at if order else event.occurred_at
    record_step(
        ctx.uow.conn,
        ctx.uow.publish,
        order_id=event.order_id,
        customer_id=event.customer_id,
        step="placed",
        at=at,
        now=ctx.clock.now(),
    )


def _placed_steps(envelopes: list[Envelope], conn: Connection) -> list[StepReached]:
    """The "placed" step of each order, at its recorded placing time (the event's time if not recorded)."""
    events: list[OrderPlaced] = []
    for envelope in envelopes:
        event = envelope.event()
        assert isinstance(event, OrderPlaced)
        events.append(event)
    placed_at = dict(
        conn.execute(
            select(orders.c.id, orders.c.placed_at).where(orders.c.id.in_({e.order_id for e in events}))
        ).all()
    )
    return [
        StepReached(
            order_id=e.order_id,
            customer_id=e.customer_id,
            step="placed",
            at=placed_at.get(e.order_id, e.occurred_at),
        )
        for e in events
    ]


def prepare_orders_placed(envelopes: list[Envelope], ctx: PrepareContext) -> list[StepReached]:
    """Read ahead, outside the write lock: an order's placing time does not change once recorded. The status
    the step may move the order on from is read under the lock (record_steps)."""
    return _placed_steps(envelopes, ctx.conn)


def on_orders_placed(envelopes: list[Envelope], ctx: HandlerContext) -> None:
    """The batch form of on_order_placed: the orders' placing times in one query (or read ahead: ctx.prepared),
    the steps in one insert."""
    steps = ctx.prepared if ctx.prepared is not None else _placed_steps(envelopes, ctx.uow.conn)
    record_steps(ctx.uow.conn, ctx.uow.publish, steps, now=ctx.clock.now())


def register(bus: Bus) -> None:
    bus.subscribe(
        OrderPlaced,
        "orders.chain_placed",
        on_order_placed,
        batch=on_orders_placed,
        prepare=prepare_orders_placed,
    )
    bus.subscribe(ShipmentDispatched, "orders.chain_dispatched", _step_from_event("dispatched"))
    bus.subscribe(
        ShipmentOutForDelivery, "orders.chain_out_for_delivery", _step_from_event("out_for_delivery")
    )
    bus.subscribe(ShipmentDelivered, "orders.chain_delivered", _step_from_event("delivered", "delivered_at"))
    bus.subscribe(ProofOfDeliveryRecorded, "orders.chain_proof", on_proof_of_delivery)
    bus.subscribe(FollowUpDue, "orders.chain_follow_up", on_follow_up_due)


__all__ = ["DomainEvent", "StepReached", "record_manual_step", "record_step", "record_steps", "register"]
