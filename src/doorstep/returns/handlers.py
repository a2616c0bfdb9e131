"""Returns use cases: request (policy-checked, approved and labelled in one go), the later steps from staff
or from the return shipment's scans, the exchange order created when the return is scanned in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from doorstep.bus.messages import Envelope
from doorstep.bus.registry import Bus, HandlerContext
from doorstep.context import AppContext
from doorstep.ids import new_id
from doorstep.orders.events import OrderPlaced
from doorstep.orders.tables import order_lines, orders
from doorstep.returns.errors import InvalidReturn, ReturnNotFound
from doorstep.returns.events import (
    ExchangeShipped,
    RefundIssued,
    ReturnApproved,
    ReturnLabelIssued,
    ReturnReceived,
    ReturnRejected,
    ReturnRequested,
)
from doorstep.returns.label import LabelData, render_label_pdf
from doorstep.returns.model import LineToReturn, Policy, advance, check_request, load_policy
from doorstep.returns.tables import return_lines, returns
from doorstep.shipments.events import ShipmentCreated, ShipmentStatusChanged
from doorstep.shipments.tables import shipments

MINOR = Decimal(100)
WAREHOUSE = ("Returns Dept.", "Unit 4, Parcel Park", "Northampton NN4 7YB", "United Kingdom")


@lru_cache(maxsize=4)
def _policy(path: str | None) -> Policy:
    return load_policy(Path(path) if path else None)


def policy(settings: Any) -> Policy:
    return _policy(settings.extra.get("returns_policy_path"))


@dataclass(frozen=True)
class LineRequest:
    order_line_id: int
    quantity: int
    condition: str


class _Publisher:
    """Collects steps and events while a return moves, so one transaction writes both."""

    def __init__(self, conn: Connection, publish: Any, row: Any, now: datetime):
        self.conn, self.publish, self.now = conn, publish, now
        self.id, self.order_id, self.customer_id = row.id, row.order_id, row.customer_id
        self.status = row.status
        self.steps = list(row.steps)

    def step(self, to: str, **values: Any) -> None:
        advance(self.status, to)
        self.status = to
        self.steps.append({"step": to, "at": self.now.isoformat()})
        self.conn.execute(
            update(returns)
            .where(returns.c.id == self.id)
            .values(status=to, steps=self.steps, updated_at=self.now, **values)
        )

    @property
    def ids(self) -> dict[str, str]:
        return {"return_id": self.id, "order_id": self.order_id, "customer_id": self.customer_id}


def request_return(
    ctx: AppContext,
    *,
    order_id: str,
    lines: list[LineRequest],
    reason_code: str,
    resolution: str,
    method: str | None,
    reason_detail: str | None = None,
    exchange_sku: str | None = None,
) -> dict[str, Any]:
    """Checks the policy; a valid request is approved at once and gets its label (or, keep-the-item, its
    refund). Nothing is written when the policy refuses."""
    now = ctx.clock.now()
    pol = policy(ctx.settings)
    if reason_detail is not None and len(reason_detail) > 1000:
        raise InvalidReturn("reason_detail is longer than 1000 characters", field="reason_detail")
    with ctx.uow() as uow:
        conn = uow.conn
        order = conn.execute(select(orders).where(orders.c.id == order_id).with_for_update()).first()
        if order is None:
            raise ReturnNotFound(f"no order {order_id!r}", field="order_id")
        delivered_at = conn.execute(
            select(func.max(shipments.c.delivered_at)).where(
                shipments.c.order_id == order.id, shipments.c.is_return.is_(False)
            )
        ).scalar_one()
        to_return = [_line(conn, order.id, i, req) for i, req in enumerate(lines)]
        decision = check_request(
            pol,
            lines=to_return,
            reason_code=reason_code,
            resolution=resolution,
            method=method,
            delivered_at=delivered_at,
            now=now,
        )
        return_id = new_id()
        conn.execute(
            insert(returns).values(
                id=return_id,
                order_id=order.id,
                customer_id=order.customer_id,
                status="requested",
                resolution=resolution,
                method=decision.method,
                reason_code=reason_code,
                reason_detail=reason_detail,
                refund_minor=int(decision.refund_amount * MINOR),
                currency=order.currency,
                requested_at=now,
                updated_at=now,
                steps=[{"step": "requested", "at": now.isoformat()}],
            )
        )
        for line, req in zip(to_return, lines, strict=True):
            conn.execute(
                insert(return_lines).values(
                    return_id=return_id,
                    order_line_id=line.order_line_id,
                    quantity=req.quantity,
                    reason_code=reason_code,
                    condition=req.condition,
                )
            )
        row = conn.execute(select(returns).where(returns.c.id == return_id)).one()
        flow = _Publisher(conn, uow.publish, row, now)
        uow.publish(
            ReturnRequested(occurred_at=now, **flow.ids, reason_code=reason_code, resolution=resolution)
        )
        if exchange_sku:
            conn.execute(
                update(returns)
                .where(returns.c.id == return_id)
                .values(reason_detail=_with_sku(reason_detail, exchange_sku))
            )
        if not decision.needs_review:
            _approve(ctx, flow, order=order)
        uow.commit()
    return get_return(ctx, return_id) | {"notes": decision.notes}


def _approve(ctx: AppContext | HandlerContext, flow: _Publisher, *, order: Any) -> None:
    flow.step("approved")
    method = flow_method(flow)
    flow.publish(ReturnApproved(occurred_at=flow.now, **flow.ids, method=method))
    if method == "keep_item":
        _finish(ctx, flow, order=order)
    else:
        _issue_label(ctx, flow, order=order)


def _with_sku(detail: str | None, sku: str) -> str:
    return f"{detail or ''}\n[exchange for {sku}]".strip()


def _line(conn: Connection, order_id: str, index: int, req: LineRequest) -> LineToReturn:
    row = conn.execute(
        select(order_lines).where(order_lines.c.id == req.order_line_id, order_lines.c.order_id == order_id)
    ).first()
    if row is None:
        raise InvalidReturn(
            f"no line {req.order_line_id} on this order", field=f"lines.{index}.order_line_id"
        )
    done = conn.execute(
        select(func.coalesce(func.sum(return_lines.c.quantity), 0))
        .select_from(return_lines.join(returns, returns.c.id == return_lines.c.return_id))
        .where(return_lines.c.order_line_id == row.id, returns.c.status != "rejected")
    ).scalar_one()
    return LineToReturn(
        order_line_id=row.id,
        product_id=row.product_id,
        name=row.name or row.product_id,
        category=row.category,
        quantity=req.quantity,
        ordered_quantity=row.quantity,
        already_returned=int(done),
        unit_price=Decimal(row.unit_price_minor) / MINOR,
        condition=req.condition,
    )


def _issue_label(ctx: AppContext | HandlerContext, flow: _Publisher, *, order: Any) -> None:
    conn = flow.conn
    original = conn.execute(
        select(shipments.c.carrier).where(shipments.c.order_id == order.id, shipments.c.is_return.is_(False))
    ).first()
    carrier = original.carrier if original else "royalmail"
    tracking_number = "RT" + flow.id.replace("-", "")[-12:].upper()
    conn.execute(
        insert(shipments).values(
            id=new_id(),
            order_id=order.id,
            carrier=carrier,
            tracking_number=tracking_number,
            is_return=True,
            status="InfoReceived",
            origin_region=order.ship_region,
            created_at=flow.now,
            updated_at=flow.now,
        )
    )
    path = label_path(Path(ctx.settings.var_dir), flow.customer_id, flow.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        render_label_pdf(
            LabelData(
                return_id=flow.id,
                tracking_number=tracking_number,
                carrier=carrier,
                order_number=order.external_id,
                from_lines=tuple(
                    x
                    for x in (
                        order.ship_name,
                        order.ship_line1,
                        f"{order.ship_postcode or ''} {order.ship_city or ''}".strip(),
                    )
                    if x
                ),
                to_lines=WAREHOUSE,
                method=flow_method(flow),
            )
        )
    )
    flow.step("label_issued", label_tracking_number=tracking_number)
    flow.publish(
        ReturnLabelIssued(
            occurred_at=flow.now, **flow.ids, tracking_number=tracking_number, label_path=str(path)
        )
    )


def label_path(var_dir: Path, customer_id: str, return_id: str) -> Path:
    return var_dir / "labels" / customer_id / f"{return_id}.pdf"


def _finish(ctx: AppContext | HandlerContext, flow: _Publisher, *, order: Any) -> None:
    row = flow.conn.execute(select(returns).where(returns.c.id == flow.id)).one()
    if row.resolution == "exchange":
        exchange_id = row.exchange_order_id or _create_exchange(flow, order=order, row=row)
        flow.step("exchanged")
        flow.publish(ExchangeShipped(occurred_at=flow.now, **flow.ids, exchange_order_id=exchange_id))
    else:
        flow.step("refunded")
        amount = Decimal(row.refund_minor or 0) / MINOR
        flow.publish(
            RefundIssued(
                occurred_at=flow.now, **flow.ids, amount=str(amount), currency=row.currency or order.currency
            )
        )


def _create_exchange(flow: _Publisher, *, order: Any, row: Any) -> str:
    """A new order at no charge with the returned lines (or the asked-for SKU), and its shipment."""
    conn, now = flow.conn, flow.now
    n = conn.execute(
        select(func.count()).select_from(orders).where(orders.c.external_id.like(f"{order.external_id}-X%"))
    ).scalar_one()
    exchange_id = new_id()
    external = f"{order.external_id}-X{n + 1}"
    conn.execute(
        insert(orders).values(
            id=exchange_id,
            external_id=external,
            customer_id=order.customer_id,
            status="placed",
            currency=order.currency,
            total_minor=0,
            shipping_minor=0,
            tax_minor=0,
            discount_minor=0,
            ship_name=order.ship_name,
            ship_line1=order.ship_line1,
            ship_city=order.ship_city,
            ship_postcode=order.ship_postcode,
            ship_region=order.ship_region,
            ship_country=order.ship_country,
            placed_at=now,
            properties={"exchange_for_return": flow.id, "original_order": order.external_id},
            created_at=now,
            updated_at=now,
        )
    )
    sku = None
    if row.reason_detail and "[exchange for " in row.reason_detail:
        sku = row.reason_detail.rsplit("[exchange for ", 1)[1].rstrip("]")
    returned = conn.execute(
        select(order_lines, return_lines.c.quantity.label("returned"))
        .join(return_lines, return_lines.c.order_line_id == order_lines.c.id)
        .where(return_lines.c.return_id == flow.id)
    ).all()
    for i, line in enumerate(returned, start=1):
        conn.execute(
            insert(order_lines).values(
                order_id=exchange_id,
                line_no=i,
                product_id=line.product_id,
                sku=sku or line.sku,
                name=line.name,
                category=line.category,
                quantity=line.returned,
                unit_price_minor=0,
            )
        )
    original = conn.execute(
        select(shipments.c.carrier).where(shipments.c.order_id == order.id, shipments.c.is_return.is_(False))
    ).first()
    shipment_id = new_id()
    carrier = original.carrier if original else "royalmail"
    tracking = "EX" + exchange_id.replace("-", "")[-12:].upper()
    conn.execute(
        insert(shipments).values(
            id=shipment_id,
            order_id=exchange_id,
            carrier=carrier,
            tracking_number=tracking,
            is_return=False,
            status="InfoReceived",
            destination_region=order.ship_region,
            destination_postcode=order.ship_postcode,
            created_at=now,
            updated_at=now,
        )
    )
    conn.execute(update(returns).where(returns.c.id == flow.id).values(exchange_order_id=exchange_id))
    flow.publish(
        OrderPlaced(
            occurred_at=now,
            order_id=exchange_id,
            customer_id=order.customer_id,
            external_id=external,
            total="0",
            currency=order.currency,
        )
    )
    flow.publish(
        ShipmentCreated(
            occurred_at=now,
            shipment_id=shipment_id,
            order_id=exchange_id,
            customer_id=order.customer_id,
            carrier=carrier,
            tracking_number=tracking,
        )
    )
    return exchange_id


def move_return(ctx: AppContext, *, return_id: str, step: str, reason: str | None = None) -> dict[str, Any]:
    """Staff steps: in_transit, received (scan-in: creates the exchange), inspected (then refund or
    exchange follows), rejected."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        _move(ctx, uow.conn, uow.publish, return_id=return_id, step=step, reason=reason, now=now)
        uow.commit()
    return get_return(ctx, return_id)


def _move(
    ctx: Any, conn: Connection, publish: Any, *, return_id: str, step: str, reason: str | None, now: datetime
) -> None:
    row = conn.execute(select(returns).where(returns.c.id == return_id).with_for_update()).first()
    if row is None:
        raise ReturnNotFound(f"no return {return_id!r}", field="return_id")
    order = conn.execute(select(orders).where(orders.c.id == row.order_id)).one()
    flow = _Publisher(conn, publish, row, now)
    if step == "rejected":
        if not reason:
            raise InvalidReturn("say why the return is rejected", field="reason")
        flow.step("rejected")
        publish(ReturnRejected(occurred_at=now, **flow.ids, reason=reason))
        return
    if step == "approved":
        _approve(ctx, flow, order=order)
        return
    if step in ("in_transit", "received") and row.status == step:
        return  # a repeated scan changes nothing
    flow.step(step)
    if step == "received":
        publish(ReturnReceived(occurred_at=now, **flow.ids))
        if row.resolution == "exchange" and not row.exchange_order_id:
            exchange_id = _create_exchange(flow, order=order, row=row)
            publish(ExchangeShipped(occurred_at=now, **flow.ids, exchange_order_id=exchange_id))
    elif step == "inspected":
        if row.resolution == "exchange":
            flow.step("exchanged")
        else:
            _finish(ctx, flow, order=order)


def get_return(ctx: AppContext, return_id: str) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        row = conn.execute(select(returns).where(returns.c.id == return_id)).first()
        if row is None:
            raise ReturnNotFound(f"no return {return_id!r}", field="return_id")
        lines = conn.execute(select(return_lines).where(return_lines.c.return_id == return_id)).all()
    return {
        "id": row.id,
        "order_id": row.order_id,
        "status": row.status,
        "resolution": row.resolution,
        "method": row.method,
        "reason_code": row.reason_code,
        "refund_amount": str((Decimal(row.refund_minor or 0) / MINOR).quantize(Decimal("0.01"))),
        "currency": row.currency,
        "label_tracking_number": row.label_tracking_number,
        "exchange_order_id": row.exchange_order_id,
        "steps": row.steps,
        "lines": [
            {"order_line_id": ln.order_line_id, "quantity": ln.quantity, "condition": ln.condition}
            for ln in lines
        ],
    }


def on_return_shipment_scanned(envelope: Envelope, ctx: HandlerContext) -> None:
    """The return parcel's own scans move the return: in transit, then received at the warehouse."""
    event = envelope.event()
    assert isinstance(event, ShipmentStatusChanged)
    conn = ctx.uow.conn
    shipment = conn.execute(
        select(shipments.c.tracking_number, shipments.c.is_return).where(shipments.c.id == event.shipment_id)
    ).first()
    if shipment is None or not shipment.is_return:
        return
    row = conn.execute(
        select(returns.c.id, returns.c.status).where(
            returns.c.label_tracking_number == shipment.tracking_number
        )
    ).first()
    if row is None:
        return
    wanted = {"InTransit": "in_transit", "OutForDelivery": "in_transit", "Delivered": "received"}.get(
        event.status
    )
    if wanted is None or row.status in ("received", "inspected", "refunded", "exchanged", "rejected"):
        return
    if wanted == "received" and row.status == "label_issued":
        _move(
            ctx, conn, ctx.uow.publish, return_id=row.id, step="received", reason=None, now=event.occurred_at
        )
    elif wanted == "in_transit" and row.status == "label_issued":
        _move(
            ctx,
            conn,
            ctx.uow.publish,
            return_id=row.id,
            step="in_transit",
            reason=None,
            now=event.occurred_at,
        )
    elif wanted == "received" and row.status == "in_transit":
        _move(
            ctx, conn, ctx.uow.publish, return_id=row.id, step="received", reason=None, now=event.occurred_at
        )


def register(bus: Bus) -> None:
    bus.subscribe(ShipmentStatusChanged, "returns.return_shipment_scanned", on_return_shipment_scanned)


def flow_method(flow: _Publisher) -> str:
    return str(flow.conn.execute(select(returns.c.method).where(returns.c.id == flow.id)).scalar_one())
