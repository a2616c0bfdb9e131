"""Returns API for staff and the shop's back office, and the customer's label behind a signed link."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from doorstep.context import CtxDep
from doorstep.returns.errors import ReturnNotFound
from doorstep.returns.handlers import LineRequest, get_return, label_path, move_return, request_return
from doorstep.returns.tables import returns
from doorstep.security import links
from doorstep.security.deps import require
from doorstep.security.model import Principal, Scope

router = APIRouter(tags=["returns"])

LABEL_LINK_TTL_S = 90 * 24 * 3600


class ReturnLineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_line_id: int
    quantity: int = Field(1, ge=1, le=1000)
    condition: Literal["unopened", "as_new", "used", "damaged"] = "as_new"


class ReturnCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(max_length=36)
    lines: list[ReturnLineCreate] = Field(min_length=1, max_length=100)
    reason_code: str = Field(max_length=50)
    reason_detail: str | None = Field(None, max_length=1000)
    resolution: Literal["refund", "exchange", "store_credit"]
    method: Literal["drop_off", "courier_pickup", "keep_item"] | None = None
    exchange_sku: str | None = Field(None, max_length=100)


class ReturnStepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: Literal["approved", "rejected", "in_transit", "received", "inspected"]
    reason: str | None = Field(None, max_length=500)


def label_link(secret: str, return_id: str) -> str:
    return f"/returns/{return_id}/label.pdf?token={links.sign(secret, 'return_label', return_id)}"


@router.post("/api/returns", status_code=201)
def post_return(
    body: ReturnCreate,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require(scope=Scope.WRITE_ORDERS))],
) -> Any:
    result = request_return(
        ctx,
        order_id=body.order_id,
        lines=[LineRequest(ln.order_line_id, ln.quantity, ln.condition) for ln in body.lines],
        reason_code=body.reason_code,
        resolution=body.resolution,
        method=body.method,
        reason_detail=body.reason_detail,
        exchange_sku=body.exchange_sku,
    )
    if result["label_tracking_number"]:
        result["label_url"] = label_link(ctx.settings.secret_key, result["id"])
    return result


@router.get("/api/returns/{return_id}")
def read_return(
    return_id: str, ctx: CtxDep, principal: Annotated[Principal, Depends(require(scope=Scope.READ_ORDERS))]
) -> Any:
    return get_return(ctx, return_id)


@router.post("/api/returns/{return_id}/steps")
def post_return_step(
    return_id: str,
    body: ReturnStepCreate,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require(scope=Scope.WRITE_ORDERS))],
) -> Any:
    return move_return(ctx, return_id=return_id, step=body.step, reason=body.reason)


@router.get("/returns/{return_id}/label.pdf", include_in_schema=False)
def get_label(return_id: str, ctx: CtxDep, token: Annotated[str, Query(max_length=500)] = "") -> Any:
    if links.verify(ctx.settings.secret_key, "return_label", token, max_age_s=LABEL_LINK_TTL_S) != return_id:
        raise links.BadLink("this label link is not valid")
    with ctx.read_engine.connect() as conn:
        customer_id = conn.execute(select(returns.c.customer_id).where(returns.c.id == return_id)).scalar()
    path = label_path(Path(ctx.settings.var_dir), customer_id or "-", return_id)
    if customer_id is None or not path.is_file():
        raise ReturnNotFound("no label for this return")
    return FileResponse(path, media_type="application/pdf", filename=f"return-{return_id[-8:]}.pdf")
