"""Staff pages: /messages (every message, newest first, with status) and /journeys (the journey in force,
editable by admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from doorstep.context import CtxDep
from doorstep.notifications.errors import JourneyInvalid
from doorstep.notifications.journeys import parse_source
from doorstep.notifications.model import CHANNELS, STATUSES
from doorstep.notifications.queries import list_attempts, list_notifications
from doorstep.notifications.routes import save_journey
from doorstep.notifications.services import journeys_of
from doorstep.security.model import Principal, Role
from doorstep.web.pages import staff_page
from doorstep.web.templating import render

router = APIRouter(include_in_schema=False)

StaffDep = Annotated[Principal, Depends(staff_page(Role.ADMIN, Role.AGENT, Role.ANALYST))]
AdminPageDep = Annotated[Principal, Depends(staff_page(Role.ADMIN))]


@router.get("/messages", response_class=HTMLResponse)
def messages_page(
    request: Request, ctx: CtxDep, principal: StaffDep, status: str = "", channel: str = ""
) -> HTMLResponse:
    with ctx.read_engine.connect() as conn:
        rows = list_notifications(conn, status=status or None, channel=channel or None, limit=200)
        attempts = list_attempts(conn, [r.id for r in rows])
    return render(
        request,
        "notifications/messages.html",
        messages=rows,
        attempts=attempts,
        statuses=STATUSES,
        channels=CHANNELS,
        status=status,
        channel=channel,
    )


def _journey_page(
    request: Request,
    ctx: CtxDep,
    principal: Principal,
    *,
    error: str = "",
    source: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with ctx.read_engine.connect() as conn:
        journey = journeys_of(ctx).current(conn)
        stored, version = journeys_of(ctx).source(conn)
    return render(
        request,
        "notifications/journeys.html",
        status_code=status_code,
        journey=journey,
        version=version,
        source=source if source is not None else stored,
        error=error,
        can_edit=principal.has_role(Role.ADMIN),
    )


@router.get("/journeys", response_class=HTMLResponse)
def journeys_page(request: Request, ctx: CtxDep, principal: StaffDep) -> HTMLResponse:
    return _journey_page(request, ctx, principal)


@router.post("/journeys", response_class=HTMLResponse)
async def journeys_save(
    request: Request, ctx: CtxDep, principal: AdminPageDep, source: Annotated[str, Form()]
) -> Response:
    try:
        _, data = parse_source(source)
    except JourneyInvalid as exc:
        return await run_in_threadpool(
            _journey_page, request, ctx, principal, error=exc.detail, source=source, status_code=422
        )
    await run_in_threadpool(save_journey, ctx, source=source, data=data, updated_by=principal.name)
    return RedirectResponse("/journeys", status_code=303)
