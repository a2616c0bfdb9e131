"""The SDKs retailers already run work by changing only their host: the real segment-analytics-python and
rudder-sdk-python clients against a real server (uvicorn on a free loopback port, temp SQLite database)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import write_key
from tests.support_ingest import order_completed

from doorstep.app import build_worker, create_app
from doorstep.context import AppContext
from doorstep.customers.tables import customers, identities
from doorstep.ingest.tables import event_log
from doorstep.orders.tables import order_lines, order_steps, orders


@dataclass
class LiveServer:
    base_url: str
    ctx: AppContext
    key: str

    def drain(self) -> None:
        build_worker(self.ctx, name="sdk-test").drain()


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[LiveServer]:
    app = create_app(make_settings(tmp_path, sqlite_url), start_worker=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    ctx: AppContext = app.state.ctx
    key = write_key(ctx.engine, now=ctx.clock.now())
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", ctx, key)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def drive(analytics: Any, *, user: str, order_id: str, errors: list[Any]) -> None:
    """What a shop's backend sends: anonymous browsing, sign-up, an order."""
    analytics.page(anonymous_id=f"{user}-browser", name="Home", properties={"url": "https://shop.example/?utm_source=sdk"})
    analytics.track(anonymous_id=f"{user}-browser", event="Product Viewed",
                    properties={"product_id": "shoe-1", "name": "Runner", "price": 95})
    analytics.identify(user_id=user, anonymous_id=f"{user}-browser",
                       traits={"email": f"{user}@shop.io", "name": user.title(), "phone": "+447911123456"})
    analytics.track(user_id=user, event="Order Completed", properties=order_completed(order_id))
    analytics.flush()
    assert errors == [], errors


def assert_profile_and_order(server: LiveServer, *, user: str, order_id: str) -> None:
    server.drain()
    with server.ctx.engine.connect() as conn:
        assert conn.execute(select(event_log.c.id)).all(), "nothing reached the log"
        customer_id = conn.execute(
            select(identities.c.customer_id).where(identities.c.kind == "user_id", identities.c.value == user)
        ).scalar_one()
        kinds = sorted(conn.execute(
            select(identities.c.kind).where(identities.c.customer_id == customer_id)
        ).scalars())
        profile = conn.execute(select(customers).where(customers.c.id == customer_id)).one()
        order = conn.execute(select(orders).where(orders.c.external_id == order_id)).one()
        lines = conn.execute(select(order_lines.c.product_id).where(order_lines.c.order_id == order.id)).scalars().all()
        steps = conn.execute(select(order_steps.c.step).where(order_steps.c.order_id == order.id)).scalars().all()
    assert kinds == ["anonymous_id", "email", "phone", "user_id"]
    assert (profile.email, profile.phone, profile.merged_into) == (f"{user}@shop.io", "+447911123456", None)
    assert (order.customer_id, order.total_minor, order.currency) == (customer_id, 9950, "EUR")
    assert lines == ["shoe-1"] and steps == ["placed"]


def test_segment_analytics_python_client(server: LiveServer) -> None:
    import segment.analytics as analytics

    errors: list[Any] = []
    analytics.write_key = server.key
    analytics.host = server.base_url
    analytics.on_error = lambda error, batch: errors.append(error)
    analytics.max_retries = 1
    analytics.default_client = None
    try:
        drive(analytics, user="maya", order_id="S-1", errors=errors)
    finally:
        analytics.shutdown()
        analytics.default_client = None

    assert_profile_and_order(server, user="maya", order_id="S-1")


def test_rudder_sdk_python_client_with_gzip(server: LiveServer) -> None:
    import rudderstack.analytics as rudder_analytics

    errors: list[Any] = []
    rudder_analytics.write_key = server.key
    rudder_analytics.dataPlaneUrl = server.base_url  # its documented setting; gzip is on by default
    rudder_analytics.on_error = lambda error, batch: errors.append(error)
    rudder_analytics.max_retries = 1
    rudder_analytics.default_client = None
    try:
        drive(rudder_analytics, user="lee", order_id="R-1", errors=errors)
    finally:
        rudder_analytics.shutdown()
        rudder_analytics.default_client = None

    assert_profile_and_order(server, user="lee", order_id="R-1")


def test_a_bad_write_key_is_reported_to_the_sdk(server: LiveServer) -> None:
    import segment.analytics as analytics

    errors: list[Any] = []
    analytics.write_key = "wk_wrong"
    analytics.host = server.base_url
    analytics.on_error = lambda error, batch: errors.append(error)
    analytics.max_retries = 0
    analytics.default_client = None
    try:
        analytics.track(user_id="x", event="Product Viewed")
        analytics.flush()
    finally:
        analytics.shutdown()
        analytics.default_client = None

    assert [getattr(e, "status", None) for e in errors] == [401]
    with server.ctx.engine.connect() as conn:
        assert conn.execute(select(event_log.c.id)).all() == []
