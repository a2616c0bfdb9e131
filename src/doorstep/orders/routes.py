"""Order read API. Secret keys need `orders:read`; staff sessions need analyst or agent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from doorstep.clock import ensure_utc
from doorstep.context import CtxDep
from doorstep.customers.tables import customers
from doorstep.orders import queries
from doorstep.orders.schemas import OrderPage, OrderRead
from doorstep.pagination import MAX_PAGE_SIZE
from doorstep.security.deps import require
from doorstep.security.model import Principal, Role, Scope

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])

CanRead = Annotated[Principal, Depends(require(scope=Scope.READ_ORDERS, roles=(Role.ANALYST, Role.AGENT)))]


@router.get("", summary="List orders, newest first (cursor pagination)")
def list_orders(
    ctx: CtxDep,
    _principal: CanRead,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    customer_id: Annotated[str | None, Query(description="orders of this customer (and profiles merged into it)")] = None,
    status: Annotated[str | None, Query(description="placed | cancelled | refunded | partially_refunded ...")] = None,
    placed_after: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    placed_before: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
) -> OrderPage:
    with ctx.read_engine.connect() as conn:
        customer_ids = None
        if customer_id is not None:
            merged = [r.id for r in conn.execute(select(customers.c.id).where(customers.c.merged_into == customer_id))]
            customer_ids = [customer_id, *merged]
        return queries.list_orders(
            conn, limit=limit, cursor=cursor, customer_ids=customer_ids, status=status,
            placed_after=ensure_utc(placed_after) if placed_after else None,
            placed_before=ensure_utc(placed_before) if placed_before else None,
        )


@router.get("/{order_id}", summary="An order by id or by the shop's order number: lines and steps")
def get_order(ctx: CtxDep, order_id: str, _principal: CanRead) -> OrderRead:
    with ctx.read_engine.connect() as conn:
        return queries.get_order(conn, order_id)
