"""Staff pages: /customers (search and list) and /customers/{id} (profile, identities and why, timeline,
orders). Any signed-in staff role except driver."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from doorstep.context import CtxDep
from doorstep.customers import queries
from doorstep.pagination import MAX_PAGE_SIZE
from doorstep.security.model import Principal, Role
from doorstep.web.pages import staff_page
from doorstep.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

StaffOnly = Annotated[Principal, Depends(staff_page(Role.ADMIN, Role.ANALYST, Role.AGENT))]


@router.get("/customers")
def customers_page(
    request: Request,
    ctx: CtxDep,
    _principal: StaffOnly,
    q: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> Response:
    search = (q or "").strip()
    email = search if "@" in search else None
    phone = search if search.startswith("+") else None
    with ctx.read_engine.connect() as conn:
        page = queries.list_customers(
            conn, limit=limit, cursor=cursor, email=email, phone=phone,
            q=search if search and not (email or phone) else None,
            default_region=ctx.settings.default_phone_region or None,
        )
    return render(request, "customers_list.html", page=page, q=search)


@router.get("/customers/{customer_id}")
def customer_page(request: Request, ctx: CtxDep, customer_id: str, _principal: StaffOnly) -> Response:
    with ctx.read_engine.connect() as conn:
        customer = queries.get_customer(conn, customer_id, events_limit=200)
    return render(request, "customer_profile.html", customer=customer)
