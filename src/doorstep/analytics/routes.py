"""The journey dashboard: the page, its JSON, the live stream (SSE), and the drill-down lists with CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from doorstep.analytics.errors import AnalyticsError
from doorstep.analytics.live import DashboardService
from doorstep.analytics.model import CAUSE_LABELS, PERFECT_STEPS, Filters
from doorstep.analytics.replica import ReplicaWarmingUp
from doorstep.context import CtxDep
from doorstep.db.types import json_default
from doorstep.security.deps import require
from doorstep.security.model import Principal, Role, Scope
from doorstep.web.pages import staff_page
from doorstep.web.templating import render, templates

router = APIRouter(tags=["analytics"])

AnalystPage = Annotated[Principal, Depends(staff_page(Role.ANALYST))]
AnalystApi = Annotated[Principal, Depends(require(scope=Scope.READ_ANALYTICS, roles=(Role.ANALYST,)))]
PERIODS = {"7": 7, "30": 30, "90": 90, "365": 365}
HEARTBEAT_S = 15.0
DRILL_PAGE_ROWS = 500


class FilterParams:
    def __init__(
        self,
        period: Annotated[str, Query(description="7, 30, 90 or 365 days up to today; or 'custom'")] = "30",
        start: Annotated[date | None, Query(description="first day (custom period)")] = None,
        end: Annotated[date | None, Query(description="last day, inclusive (custom period)")] = None,
        carrier: str | None = None,
        region: str | None = None,
        channel: str | None = None,
        segment: str | None = None,
    ):
        self.period, self.start, self.end = period, start, end
        self.carrier, self.region, self.channel, self.segment = (
            v or None for v in (carrier, region, channel, segment)
        )

    def filters(self, now: datetime) -> Filters:
        try:
            if self.start and self.end:
                return Filters(
                    datetime.combine(self.start, datetime.min.time(), UTC),
                    datetime.combine(self.end, datetime.min.time(), UTC) + timedelta(days=1),
                    self.carrier,
                    self.region,
                    self.channel,
                    self.segment,
                )
            days = PERIODS.get(self.period)
            if days is None:
                raise ValueError(
                    f"period {self.period!r} is not one of {', '.join(PERIODS)} (or give start and end)"
                )
            return Filters.last_days(
                days,
                now=now,
                carrier=self.carrier,
                region=self.region,
                channel=self.channel,
                segment=self.segment,
            )
        except ValueError as exc:
            raise AnalyticsError(str(exc)) from None

    def query(self, **extra: str) -> str:
        values = {
            "period": self.period,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "carrier": self.carrier,
            "region": self.region,
            "channel": self.channel,
            "segment": self.segment,
            **extra,
        }
        return urlencode({k: v for k, v in values.items() if v})


Params = Annotated[FilterParams, Depends()]


def _service(ctx: Any) -> DashboardService:
    service: DashboardService = ctx.services["dashboard"]
    return service


def _json(value: Any) -> str:
    return orjson.dumps(value, default=json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _sections(request: Request, data: dict[str, Any], params: FilterParams) -> dict[str, str]:
    """The page's live parts, rendered by the same template macros as the first page load."""
    module = templates.get_template("dashboard_parts.html").make_module(
        {"data": data, "q": params.query(), "steps": PERFECT_STEPS, "cause_labels": CAUSE_LABELS}
    )
    return {name: str(getattr(module, name)()) for name in ("journey", "perfect", "drivers", "downstream")}


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page(request: Request, ctx: CtxDep, principal: AnalystPage, params: Params) -> Response:
    service = _service(ctx)
    f = params.filters(ctx.clock.now())
    try:
        data = await run_in_threadpool(service.compute, f)
    except ReplicaWarmingUp as exc:
        # the replica's first build (minutes on a large store): say so, and look again shortly
        return render(request, "dashboard_warming.html", status_code=503, progress=exc.extra)
    options = await run_in_threadpool(service.options)
    return render(
        request,
        "dashboard.html",
        data=data,
        params=params,
        q=params.query(),
        options=options,
        periods=list(PERIODS),
        steps=PERFECT_STEPS,
        cause_labels=CAUSE_LABELS,
    )


@router.get("/dashboard/data.json")
async def dashboard_data(ctx: CtxDep, principal: AnalystApi, params: Params) -> Response:
    """Every number on the dashboard for the filters, with the previous period beside it."""
    data = await run_in_threadpool(_service(ctx).compute, params.filters(ctx.clock.now()))
    return Response(_json(data), media_type="application/json")


@router.get("/dashboard/stream")
async def dashboard_stream(request: Request, ctx: CtxDep, principal: AnalystApi, params: Params) -> Response:
    """Server-sent events: `event: dashboard` with fresh numbers (and rendered sections) whenever the store
    changes."""
    service = _service(ctx)
    f = params.filters(ctx.clock.now())

    async def events() -> AsyncIterator[str]:
        seen = service.version
        yield f"retry: 2000\nevent: hello\ndata: {_json({'version': seen})}\n\n"
        idle = 0.0
        while True:
            if await request.is_disconnected():
                return
            version = await run_in_threadpool(service.wait_for_change, seen, 0.5)
            if version == seen:
                idle += 0.5
                if idle >= HEARTBEAT_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                continue
            seen, idle = version, 0.0
            data = await run_in_threadpool(service.compute, f)
            payload = {
                "version": data["version"],
                "values": data["values"],
                "computed_ms": data["computed_ms"],
                "sections": _sections(request, data, params),
            }
            yield f"event: dashboard\nid: {version}\ndata: {_json(payload)}\n\n"
            await asyncio.sleep(0)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _drill_rows(
    ctx: Any, params: FilterParams, name: str, limit: int | None
) -> tuple[str, list[dict[str, Any]]]:
    return _service(ctx).drill(params.filters(ctx.clock.now()), name, limit=limit)


@router.get("/dashboard/drill", response_class=HTMLResponse, include_in_schema=False)
async def drill_page(
    request: Request,
    ctx: CtxDep,
    principal: AnalystPage,
    params: Params,
    set: Annotated[str, Query(description="which orders or customers")] = "orders",
) -> Response:
    kind, rows = await run_in_threadpool(_drill_rows, ctx, params, set, DRILL_PAGE_ROWS + 1)
    return render(
        request,
        "dashboard_drill.html",
        kind=kind,
        rows=rows[:DRILL_PAGE_ROWS],
        more=len(rows) > DRILL_PAGE_ROWS,
        set=set,
        q=params.query(),
        csv_q=params.query(set=set),
        title=_drill_title(set),
    )


@router.get("/dashboard/drill.csv")
async def drill_csv(
    ctx: CtxDep,
    principal: AnalystApi,
    params: Params,
    set: Annotated[str, Query(description="which orders or customers")] = "orders",
) -> Response:
    """Every order or customer behind a number, as CSV."""
    kind, rows = await run_in_threadpool(_drill_rows, ctx, params, set, None)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()})
    name = set.replace(":", "-")
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{kind}-{name}.csv"'},
    )


def _drill_title(name: str) -> str:
    kind, _, value = name.partition(":")
    if kind == "cause":
        return f"Orders behind contacts and one-star reviews: {CAUSE_LABELS.get(value, value)}"
    if kind == "fall":
        return f"Orders that fell off the perfect journey: {dict(PERFECT_STEPS).get(value, value)}"
    return {
        "orders": "Orders placed",
        "late": "Orders delivered late",
        "dispatch_late": "Orders dispatched late",
        "failed_attempt": "Orders with a failed first attempt",
        "contacted": "Orders that needed a contact",
        "returned": "Orders returned",
        "one_star": "Orders with a one-star score",
        "perfect": "Orders on the perfect journey",
        "visitors": "Visitors",
        "new_visitors": "New visitors",
        "repeat_customers": "Repeat customers",
    }.get(name, name)


__all__ = ["JSONResponse", "router"]
