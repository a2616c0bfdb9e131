"""The last mile on top of the tracking core: carrier scans move the order chain, the return parcel's own
scans move the return, and the tracking page shows the carrier's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_tracking import (
    add_order,
    aftership_body,
    aftership_headers,
    aftership_tracking,
    checkpoint,
    tracking_settings,
)

from doorstep.clock import FixedClock
from doorstep.orders.tables import order_lines, order_steps
from doorstep.returns.handlers import LineRequest, request_return
from doorstep.returns.tables import returns
from doorstep.shipments.routes_tracking_page import tracking_link

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _post(app, number: str, cps: list, order_number: str | None = None) -> None:
    body = aftership_body(aftership_tracking(number, cps, order_number=order_number), ts=app.ctx.clock.now())
    r = app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body))
    assert r.status_code < 300, r.text
    app.drain()


def test_carrier_scans_drive_the_chain_and_the_return(tmp_path: Path, sqlite_url: str) -> None:
    clock = FixedClock(NOW)
    with running_app(make_settings(tmp_path, sqlite_url, **tracking_settings()), clock) as app:
        order_id, _ = add_order(
            app.ctx.engine, external_id="SHOP-77", now=NOW, promised_to=NOW + timedelta(days=2)
        )
        with app.ctx.engine.begin() as conn:
            conn.execute(
                order_lines.insert().values(
                    order_id=order_id,
                    line_no=1,
                    product_id="jacket",
                    name="Rain jacket",
                    category="outerwear",
                    quantity=1,
                    unit_price_minor=4999,
                )
            )
        scans = [
            checkpoint(NOW - timedelta(hours=5), "InfoReceived"),
            checkpoint(NOW - timedelta(hours=4), "InTransit", message="Parcel left the depot"),
        ]
        _post(app, "JD0001", scans, order_number="SHOP-77")
        scans.append(checkpoint(NOW - timedelta(hours=1), "OutForDelivery", message="With the driver"))
        _post(app, "JD0001", scans, order_number="SHOP-77")
        scans.append(
            checkpoint(NOW - timedelta(minutes=10), "Delivered", message="Delivered to the front door")
        )
        _post(app, "JD0001", scans, order_number="SHOP-77")

        with app.ctx.engine.connect() as conn:
            steps = {
                r.step: r.occurred_at
                for r in conn.execute(select(order_steps).where(order_steps.c.order_id == order_id))
            }
        assert {"dispatched", "out_for_delivery", "delivered"} <= set(steps)
        assert steps["delivered"] == NOW - timedelta(minutes=10)
        assert "invoiced" not in steps  # a carrier scan is not a proof of delivery

        page = app.client.get(tracking_link(app.ctx.settings.secret_key, order_id))
        assert "Delivered to the front door" in page.text and "Parcel left the depot" in page.text
        assert page.text.index("Delivered to the front door") < page.text.index(
            "Parcel left the depot"
        )  # newest first

        # the customer returns the jacket; the return parcel's scans move the return
        clock.advance(days=1)
        with app.ctx.engine.connect() as conn:
            line_id = conn.execute(
                select(order_lines.c.id).where(order_lines.c.order_id == order_id)
            ).scalar_one()
        r = request_return(
            app.ctx,
            order_id=order_id,
            lines=[LineRequest(line_id, 1, "as_new")],
            reason_code="fit.too_large",
            resolution="refund",
            method="drop_off",
        )
        number = r["label_tracking_number"]
        _post(app, number, [checkpoint(clock.now(), "InTransit")])
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(returns.c.status)).scalar_one() == "in_transit"
        _post(
            app,
            number,
            [
                checkpoint(clock.now(), "InTransit"),
                checkpoint(clock.now() + timedelta(hours=20), "Delivered"),
            ],
        )
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(returns.c.status)).scalar_one() == "received"
