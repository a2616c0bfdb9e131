"""Order chain API: staff and back office record paid / picked / packed; the customer's invoice link."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from doorstep.context import CtxDep
from doorstep.orders.chain import OrderNotFound, timeline
from doorstep.orders.handlers_chain import find_order, reached_steps, record_manual_step
from doorstep.orders.tables import invoices
from doorstep.security import links
from doorstep.security.deps import require
from doorstep.security.model import Principal, Scope

router = APIRouter(tags=["orders"])

INVOICE_LINK_TTL_S = 400 * 24 * 3600  # customers keep invoices; the link outlives a year of accounting


class OrderStepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: Literal["paid", "picked", "packed"]
    occurred_at: datetime | None = None


class OrderStepRead(BaseModel):
    order_id: str
    step: str
    recorded: bool
    steps: dict[str, str]


class OrderChainRead(BaseModel):
    order_id: str
    steps: list[dict[str, Any]]


@router.post("/api/orders/{order_ref}/steps", response_model=OrderStepRead)
def post_step(
    order_ref: str,
    body: OrderStepCreate,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require(scope=Scope.WRITE_ORDERS))],
) -> Any:
    """Records a manual step once; `recorded` is false when it had been recorded already."""
    return record_manual_step(
        ctx, order_ref=order_ref, step=body.step, occurred_at=body.occurred_at, principal=principal
    )


@router.get("/api/orders/{order_ref}/chain", response_model=OrderChainRead)
def get_chain(
    order_ref: str, ctx: CtxDep, principal: Annotated[Principal, Depends(require(scope=Scope.READ_ORDERS))]
) -> Any:
    with ctx.read_engine.connect() as conn:
        order = find_order(conn, order_ref)
        if order is None:
            raise OrderNotFound(f"no order {order_ref!r}", field="order")
        reached = reached_steps(conn, order.id)
    return {
        "order_id": order.id,
        "steps": [{"step": s, "occurred_at": at.isoformat() if at else None} for s, at in timeline(reached)],
    }


def invoice_link(secret: str, order_id: str) -> str:
    return f"/orders/{order_id}/invoice.pdf?token={links.sign(secret, 'invoice', order_id)}"


@router.get("/orders/{order_id}/invoice.pdf", include_in_schema=False)
def get_invoice(order_id: str, ctx: CtxDep, token: Annotated[str, Query(max_length=500)] = "") -> Any:
    """The customer's invoice, behind a signed link (purpose "invoice")."""
    if links.verify(ctx.settings.secret_key, "invoice", token, max_age_s=INVOICE_LINK_TTL_S) != order_id:
        raise links.BadLink("this invoice link is not valid")
    with ctx.read_engine.connect() as conn:
        row = conn.execute(select(invoices).where(invoices.c.order_id == order_id)).first()
    if row is None or not Path(row.path).is_file():
        raise OrderNotFound("no invoice has been issued for this order yet")
    return FileResponse(row.path, media_type="application/pdf", filename=f"{row.number}.pdf")
