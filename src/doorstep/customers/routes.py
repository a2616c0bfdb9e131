"""Customer read API and erasure. Secret keys need `customers:read` (erasure: `admin`); staff sessions need
analyst or agent (erasure: admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from doorstep.context import CtxDep
from doorstep.customers import queries
from doorstep.customers.handlers import erase_customer
from doorstep.customers.schemas import CustomerErasedRead, CustomerPage, CustomerRead
from doorstep.pagination import MAX_PAGE_SIZE
from doorstep.security.deps import require
from doorstep.security.model import Principal, Role, Scope

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])

CanRead = Annotated[Principal, Depends(require(scope=Scope.READ_CUSTOMERS, roles=(Role.ANALYST, Role.AGENT)))]
CanErase = Annotated[Principal, Depends(require(scope=Scope.ADMIN))]


@router.get("", summary="List customers (cursor pagination)")
def list_customers(
    ctx: CtxDep,
    _principal: CanRead,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    email: Annotated[str | None, Query(description="profiles holding this email (any of their emails)")] = None,
    phone: Annotated[str | None, Query(description="profiles holding this phone (normalised to E.164)")] = None,
    q: Annotated[str | None, Query(description="substring of email, name or phone")] = None,
    updated_since: Annotated[datetime | None, Query(description="ISO 8601; profiles changed at or after")] = None,
) -> CustomerPage:
    if updated_since is not None and updated_since.tzinfo is None:
        from doorstep.clock import ensure_utc

        updated_since = ensure_utc(updated_since)
    with ctx.read_engine.connect() as conn:
        return queries.list_customers(
            conn, limit=limit, cursor=cursor, email=email, phone=phone, q=q, updated_since=updated_since,
            default_region=ctx.settings.default_phone_region or None,
        )


@router.get("/{customer_id}", summary="A customer profile: identities and why, traits, consents, recent events")
def get_customer(ctx: CtxDep, customer_id: str, _principal: CanRead) -> CustomerRead:
    with ctx.read_engine.connect() as conn:
        return queries.get_customer(conn, customer_id)


@router.delete("/{customer_id}", summary="Erase a customer everywhere (right to erasure)")
async def erase(ctx: CtxDep, customer_id: str, _principal: CanErase) -> CustomerErasedRead:
    """Deletes the profile, every profile merged into it, everything hanging off them (orders, shipments,
    messages, consents, timeline) and their calls in the inbound log. Records CustomerErased."""

    def run() -> CustomerErasedRead:
        with ctx.uow() as uow:
            counts = erase_customer(customer_id, uow=uow, now=ctx.clock.now())
            uow.commit()
        return CustomerErasedRead(customer_id=customer_id, profiles=counts["profiles"],
                                  log_events=counts["log_events"], identities=counts["identities"])

    return await run_in_threadpool(run)
