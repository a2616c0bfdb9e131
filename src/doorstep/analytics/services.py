"""Wires the dashboard service into the app: built with the context, its watcher started in the lifespan."""

from __future__ import annotations

from doorstep.analytics.live import DashboardService
from doorstep.context import AppContext


def register(ctx: AppContext) -> None:
    ctx.services["dashboard"] = DashboardService(
        database_url=ctx.settings.database_url,
        read_engine=ctx.read_engine,
        clock=ctx.clock,
        var_dir=ctx.settings.var_dir,
    )


def start(ctx: AppContext) -> DashboardService:
    service: DashboardService = ctx.services["dashboard"]
    return service.start()
