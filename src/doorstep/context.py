"""What the running service holds: built once in app.py, reached by routes through `CtxDep`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from doorstep.bus.registry import Bus
from doorstep.clock import Clock
from doorstep.db.uow import UnitOfWork
from doorstep.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine  # writes
    read_engine: Engine  # reads (deferred transactions on SQLite)
    bus: Bus
    clock: Clock
    services: dict[str, Any] = field(default_factory=dict)  # channel adapters, models, notifier ...
    cache: dict[str, Any] = field(default_factory=dict)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, bus=self.bus, clock=self.clock)


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]
