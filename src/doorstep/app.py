"""Builds the service: the one place that wires adapters, domains, routes and the in-process worker."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import multiprocessing
import os
import pkgutil
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from doorstep.bus.registry import Bus
from doorstep.bus.worker import LogPace, Worker
from doorstep.clock import Clock, SystemClock
from doorstep.context import AppContext
from doorstep.db.engine import create_db_engine, mark_background_thread
from doorstep.db.group_commit import GroupCommitter
from doorstep.errors import install_error_handlers, problem
from doorstep.metrics import Metrics
from doorstep.security.deps import require
from doorstep.security.model import Role, Scope
from doorstep.settings import Settings, get_settings

log = logging.getLogger("doorstep.app")

# Domains in the order their handlers and routes are wired. Each may have `handlers.register(bus)`,
# `services.register(ctx)` (adapters and long-lived objects) and `routes.router`.
DOMAINS = [
    "customers",
    "ingest",
    "orders",
    "shipments",
    "returns",
    "notifications",
    "conversations",
    "feedback",
    "analytics",
    "security",
    "web",
    "simulator",  # services: the live demo, only when settings.demo is on
]


def _optional_module(name: str) -> Any | None:
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)  # a module that exists but fails to import is an error, not skipped


def _domain_modules(domain: str, kind: str) -> list[Any]:
    """`handlers`, `routes` or `services` of a domain, plus any `<kind>_<part>.py` beside it (for example
    shipments/routes_driver.py), in name order."""
    package = _optional_module(f"doorstep.{domain}")
    if package is None:
        return []
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.name == kind or info.name.startswith(f"{kind}_")
    )
    return [importlib.import_module(f"doorstep.{domain}.{name}") for name in names]


def build_bus(settings: Settings) -> Bus:
    bus = Bus(partitions=settings.partitions)
    for domain in DOMAINS:
        for module in _domain_modules(domain, "handlers"):
            if hasattr(module, "register"):
                module.register(bus)
    for name in settings.extra_handler_modules:
        importlib.import_module(name).register(bus)
    return bus


def build_context(settings: Settings, *, clock: Clock | None = None) -> AppContext:
    engine = create_db_engine(settings.database_url)
    read_engine = create_db_engine(settings.database_url, for_reads=True) if settings.is_sqlite else engine
    ctx = AppContext(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        bus=build_bus(settings),
        clock=clock or SystemClock(),
    )
    ctx.services["metrics"] = Metrics(read_engine)
    ctx.services["log_writer"] = GroupCommitter(engine)  # ingest appends share commits
    for domain in DOMAINS:
        for module in _domain_modules(domain, "services"):
            if hasattr(module, "register"):
                module.register(ctx)
    return ctx


def build_worker(ctx: AppContext, *, name: str | None = None) -> Worker:
    return Worker(
        ctx.engine,
        bus=ctx.bus,
        clock=ctx.clock,
        settings=ctx.settings,
        services=ctx.services,
        name=name,
        read_engine=ctx.read_engine,
    )


BUSY_BATCH_SIZE = 20  # rows per worker transaction while ingest requests keep arriving
BUSY_WINDOW_S = 1.0  # "while requests keep arriving": one came within this long
# The in-process worker's log transactions keep ingest's commits waiting for SQLite's write lock, and the
# interpreter lock stretches them to twice their CPU time or more while requests run (2026-12-07: up to 113 ms
# at a time, p99 of a 100-event batch 181-230 ms at half the maximum rate). So a transaction lasts at most
# 10 ms while requests arrive (50 ms when none came for a second: the first requests of a burst must not wait
# behind a 100-row one), and once it has gone on 2 ms it commits as soon as a request waits for the lock. Not
# at once: under the live demo's stream that made a transaction of every row or two, and the projection fell
# behind it. On PostgreSQL only the budgets apply: its p99 84-143 ms without, mostly 20-25 ms with (bench/RESULTS_ingest.md).
BUSY_LOG_PACE = LogPace(budget_s=0.01, yield_after_s=0.002)
IDLE_LOG_PACE = LogPace(budget_s=0.05, yield_after_s=0.002)


class InProcessWorker:
    """The default worker: a thread in the API process, woken as soon as ingest appends."""

    def __init__(self, ctx: AppContext):
        self.worker = build_worker(ctx, name="in-process")
        self.worker_ctx = ctx
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="doorstep-worker", daemon=True)
        self.last_woken = float("-inf")  # when a request last appended to the log or recorded domain events
        ctx.services["wake_worker"] = self.woken
        ctx.bus.outbox_listeners.append(self.woken)  # an API use case recorded domain events

    def woken(self) -> None:
        self.last_woken = time.monotonic()
        self.wake.set()

    def _run(self) -> None:
        mark_background_thread()  # on SQLite, ingest requests write first
        if self.worker.settings.broker_url:  # relay and consume through the broker (bus/nats.py)
            importlib.import_module("doorstep.bus.nats").runner(self.worker_ctx)(self.worker, self.stop)
            return
        idle_s = max(self.worker.settings.worker_poll_interval_s, 0.2)
        share = self.worker.settings.in_process_worker_share
        while not self.stop.is_set():
            # requests arriving: short transactions (BUSY_LOG_PACE), so the SQLite write lock is never held long
            self.wake.clear()
            started = time.perf_counter()
            try:
                if time.monotonic() - self.last_woken < BUSY_WINDOW_S:
                    n = self.worker.run_once(BUSY_BATCH_SIZE, log_pace=BUSY_LOG_PACE)
                else:  # no request for a while: catch up in longer transactions
                    n = self.worker.run_once(log_pace=IDLE_LOG_PACE)
            except Exception:
                log.exception("worker round failed")
                n = 0
                self.stop.wait(1.0)
            if n == 0:
                self.wake.wait(idle_s)
            elif self.wake.is_set() and share < 1.0:
                # requests arrived meanwhile: leave them the CPU (one GIL) for a while; the lag this builds up
                # under a burst is caught up when it ends, and shows in /metrics as doorstep_log_lag_events
                self.stop.wait((time.perf_counter() - started) * (1 / share - 1))

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self.thread.join(timeout=10)
        if self.woken in self.worker_ctx.bus.outbox_listeners:
            self.worker_ctx.bus.outbox_listeners.remove(self.woken)


def settle_heap() -> None:
    """Moves everything allocated so far (modules, tables, the context) out of the garbage collector's sight, in
    a process of its own once it has started (`doorstep worker`, the pipeline process of `doorstep serve`, each
    server process of `doorstep serve`): its full collections then scan only what it made since. Measured in
    the worker and sender processes at 1,000 events/s: a full collection paused each for 86-107 ms about every
    10 s (while it may hold the write lock), after this 5-15 ms (bench/RESULTS_notify.md)."""
    gc.collect()
    gc.freeze()


def run_pipeline(
    ctx: AppContext, stop: threading.Event, *, with_sender: bool = True, with_worker: bool = True
) -> None:
    """The outbox worker and, unless `with_sender` is False, the notification sender (a thread, woken by the
    journey handler's commits in this process), until `stop`: what `doorstep worker` and the pipeline process
    of `doorstep serve` run. Senders in several processes are safe: claims are leased (taken under SQLite's
    write lock, or with SKIP LOCKED on PostgreSQL), so each message is claimed by one sender at a time."""
    from doorstep.notifications.services import Sender

    worker = build_worker(ctx)
    # a sender without a worker beside it is woken by nothing: it polls more often
    sender = Sender(ctx, name=f"sender-{worker.name}", woken=with_worker).start() if with_sender else None
    ctx.services["wake_worker"] = worker.wake.set
    log.info(
        "pipeline %s started (worker: %s, sender: %s)",
        worker.name,
        "yes" if with_worker else "no",
        "yes" if sender else "no",
    )
    try:
        if not with_worker:  # a sender only (`doorstep worker --sender-only`)
            stop.wait()
        elif ctx.settings.broker_url:  # relay and consume through the broker (bus/nats.py)
            importlib.import_module("doorstep.bus.nats").runner(ctx)(worker, stop)
        else:
            worker.run_forever(stop)
    finally:
        if sender is not None:
            sender.close()


def _pipeline_main(settings: Settings, parent_pid: int, stop: Any, wake: Any) -> None:
    """The child process of `PipelineProcess`."""
    from doorstep.logs import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    configure_logging(settings.log_level, json=settings.log_json)
    serve_pipeline(build_context(settings), parent_pid, stop, wake)


def serve_pipeline(ctx: AppContext, parent_pid: int, stop: Any, wake: Any) -> None:
    """`run_pipeline` in the child process, until the parent sets `stop` or dies; `wake` (set by the parent)
    wakes the worker. The benchmark runs it with its own context."""
    settle_heap()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def relay() -> None:  # the API's wake-ups (outbox commits, ingest appends) and its stop, across processes
        while not done.is_set():
            if stop.is_set() or os.getppid() != parent_pid:  # stopped, or the API process died
                done.set()
            elif wake.wait(0.2):
                wake.clear()
                wake_worker()
        wake_worker()

    def wake_worker() -> None:
        if "wake_worker" in ctx.services:  # set by run_pipeline once the worker exists
            ctx.services["wake_worker"]()

    threading.Thread(target=relay, name="doorstep-pipeline-relay", daemon=True).start()
    try:
        run_pipeline(ctx, done)
    finally:
        ctx.services["log_writer"].close()
        ctx.engine.dispose()
        ctx.read_engine.dispose()


class PipelineProcess:
    """`doorstep serve --pipeline-process` (DOORSTEP_PIPELINE_PROCESS=true): the outbox worker and the notification
    sender in a child process of their own instead of threads of the API process, so the pipeline has its own
    interpreter lock and the API keeps the other core. The API's wake-ups reach it through a process-shared
    event; it stops with the API process (and stops by itself if the API process dies)."""

    def __init__(self, ctx: AppContext, *, target: Any = _pipeline_main, extra_args: tuple[Any, ...] = ()):
        mp = multiprocessing.get_context("spawn")
        self.ctx = ctx
        self.stop = mp.Event()
        self.wake = mp.Event()
        self.process = mp.Process(
            target=target,
            args=(ctx.settings, os.getpid(), self.stop, self.wake, *extra_args),
            name="doorstep-pipeline",
            daemon=True,
        )
        ctx.services["pipeline_process"] = self
        ctx.services["wake_worker"] = self.wake.set
        ctx.bus.outbox_listeners.append(self.wake.set)  # an API use case recorded domain events

    def start(self) -> None:
        self.process.start()

    def close(self) -> None:
        self.stop.set()
        self.process.join(timeout=20)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.wake.set in self.ctx.bus.outbox_listeners:
            self.ctx.bus.outbox_listeners.remove(self.wake.set)
        self.ctx.services.pop("pipeline_process", None)


def create_server_app() -> FastAPI:
    """The app as `doorstep serve` runs it (uvicorn's factory, in each server process): as `create_app`, and
    once started, `settle_heap`: without it, every full collection of the server process scanned the whole
    startup heap and paused every request for ~100 ms, a few times in 5 s under ingest load (2026-12-07,
    bench/RESULTS_ingest.md). Not for tests, which start many apps in one process: what a frozen heap holds
    is never collected."""
    return create_app(settle=True)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    start_worker: bool | None = None,
    settle: bool = False,
) -> FastAPI:
    settings = settings or get_settings()
    ctx = build_context(settings, clock=clock)
    run_worker = settings.in_process_worker if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background: list[Any] = []
        if run_worker:
            worker: InProcessWorker | PipelineProcess = (
                PipelineProcess(ctx) if settings.pipeline_process else InProcessWorker(ctx)
            )
            worker.start()
            background.append(worker)
        for domain in DOMAINS:
            for module in _domain_modules(domain, "services"):
                if hasattr(module, "start"):
                    started = module.start(ctx)  # background loops: notification sender, scheduler, demo
                    if started is not None:
                        background.append(started)
        if settle:
            settle_heap()
        try:
            yield
        finally:
            for item in reversed(background):
                item.close()
            ctx.services["log_writer"].close()
            ctx.engine.dispose()
            ctx.read_engine.dispose()

    app = FastAPI(
        title="Doorstep",
        version="0.1.0",
        summary="Customer-experience platform for online retailers",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> Response:
        try:
            with ctx.read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return problem(503, f"database unreachable: {type(exc).__name__}", code="unhealthy")
        return PlainTextResponse("ok")

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics(principal: Any = Depends(require(scope=Scope.ADMIN, roles=(Role.ANALYST,)))) -> Response:
        """Prometheus scrape: give the scraper a secret key with the admin scope as a bearer token."""
        return Response(ctx.services["metrics"].render(), media_type="text/plain; version=0.0.4")

    for domain in DOMAINS:
        for module in _domain_modules(domain, "routes"):
            if hasattr(module, "router"):
                app.include_router(module.router)

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static")
    return app
