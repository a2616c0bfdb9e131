from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_lastmile import order_with_shipment, slot

from doorstep.clock import FixedClock
from doorstep.security.signatures import timestamped_signature
from doorstep.shipments.delivery import ChangeRefused, InvalidChange, SlotFull
from doorstep.shipments.handlers_lastmile import change_delivery
from doorstep.shipments.outbound import send_due
from doorstep.shipments.tables import (
    carrier_webhook_deliveries,
    delivery_changes,
    delivery_slots,
    slot_bookings,
)


def _count(conn, table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_slot_booking_takes_capacity_and_releases_the_old_slot(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, database_url), clock) as app:
        ctx = app.ctx
        s = order_with_shipment(ctx.engine, now=clock.now())
        first = slot(ctx.engine, starts_at=clock.now() + timedelta(days=1), capacity=1)
        second = slot(ctx.engine, starts_at=clock.now() + timedelta(days=2), capacity=2)

        change_delivery(
            ctx, shipment_id=s["shipment_id"], kind="slot", detail={"slot_id": first}, requested_by="customer"
        )
        change_delivery(
            ctx,
            shipment_id=s["shipment_id"],
            kind="slot",
            detail={"slot_id": second},
            requested_by="customer",
        )

        with ctx.engine.connect() as conn:
            booked = dict(conn.execute(select(delivery_slots.c.id, delivery_slots.c.booked)).all())
            assert booked == {first: 0, second: 1}
            assert conn.execute(select(slot_bookings.c.slot_id)).scalars().all() == [second]
            assert _count(conn, delivery_changes) == 2
            assert _count(conn, carrier_webhook_deliveries) == 2


def test_full_slot_is_refused_and_nothing_is_half_applied(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, database_url), clock) as app:
        ctx = app.ctx
        a = order_with_shipment(ctx.engine, now=clock.now())
        full = slot(ctx.engine, starts_at=clock.now() + timedelta(days=1), capacity=1, booked=1)

        with pytest.raises(SlotFull):
            change_delivery(
                ctx,
                shipment_id=a["shipment_id"],
                kind="slot",
                detail={"slot_id": full},
                requested_by="customer",
            )

        with ctx.engine.connect() as conn:
            assert _count(conn, delivery_changes) == 0
            assert _count(conn, carrier_webhook_deliveries) == 0
            assert _count(conn, slot_bookings) == 0
            assert conn.execute(select(delivery_slots.c.booked)).scalar_one() == 1


def test_redirect_after_out_for_delivery_depends_on_the_carrier(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        ctx = app.ctx
        ups = order_with_shipment(ctx.engine, now=clock.now(), status="OutForDelivery", carrier="ups")
        dhl = order_with_shipment(ctx.engine, now=clock.now(), status="OutForDelivery", carrier="dhl")
        neighbour = {"name": "Mr Patel", "house": "No. 12"}

        with pytest.raises(ChangeRefused, match="out for delivery"):
            change_delivery(
                ctx,
                shipment_id=ups["shipment_id"],
                kind="neighbour",
                detail=neighbour,
                requested_by="customer",
            )
        change_delivery(
            ctx, shipment_id=dhl["shipment_id"], kind="neighbour", detail=neighbour, requested_by="customer"
        )
        change_delivery(
            ctx,
            shipment_id=ups["shipment_id"],
            kind="instructions",
            detail={"text": "Ring twice"},
            requested_by="customer",
        )

        with ctx.engine.connect() as conn:
            rows = conn.execute(select(delivery_changes.c.shipment_id, delivery_changes.c.kind)).all()
        assert sorted((r.shipment_id == dhl["shipment_id"], r.kind) for r in rows) == [
            (False, "instructions"),
            (True, "neighbour"),
        ]


def test_malformed_detail_names_the_field(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(app.ctx.engine, now=clock.now())
        with pytest.raises(InvalidChange) as info:
            change_delivery(
                app.ctx,
                shipment_id=s["shipment_id"],
                kind="safe_place",
                detail={"place": "roof"},
                requested_by="customer",
            )
        assert info.value.extra["field"] == "detail.place"
        with pytest.raises(InvalidChange) as info:
            change_delivery(
                app.ctx,
                shipment_id=s["shipment_id"],
                kind="instructions",
                detail={"text": "x" * 501},
                requested_by="customer",
            )
        assert info.value.extra["field"] == "detail.text"


def test_sender_signs_and_retries_then_succeeds(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, carrier_webhook_url="http://carrier.test/hook", carrier_webhook_secret="s3cret"
    )
    received: list[httpx.Request] = []
    answers = iter([503, 200])

    def carrier(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(next(answers))

    with running_app(settings, clock) as app:
        ctx = app.ctx
        s = order_with_shipment(ctx.engine, now=clock.now())
        change = change_delivery(
            ctx,
            shipment_id=s["shipment_id"],
            kind="instructions",
            detail={"text": "Side gate"},
            requested_by="customer",
        )

        assert send_due(ctx, transport=httpx.MockTransport(carrier)) == 1
        with ctx.engine.connect() as conn:
            row = conn.execute(select(carrier_webhook_deliveries)).one()
            assert (row.status, row.attempts, row.response_status) == ("pending", 1, 503)
        clock.advance(seconds=1)
        assert send_due(ctx, transport=httpx.MockTransport(carrier)) == 1
        assert send_due(ctx, transport=httpx.MockTransport(carrier)) == 0  # nothing left to send

        with ctx.engine.connect() as conn:
            row = conn.execute(select(carrier_webhook_deliveries)).one()
            assert (row.status, row.attempts, row.response_status) == ("sent", 2, 200)
            assert conn.execute(select(delivery_changes.c.carrier_status)).scalar_one() == "sent"
        request = received[-1]
        ts = int(request.headers["x-doorstep-timestamp"])
        assert request.headers["x-doorstep-signature"] == "v1=" + timestamped_signature(
            "s3cret", ts, request.content
        )
        assert json.loads(request.content)["change_id"] == change["change_id"]
        assert json.loads(request.content)["detail"] == {"text": "Side gate"}


def test_sender_gives_up_on_a_permanent_error(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, carrier_webhook_url="http://carrier.test/hook", carrier_webhook_secret="s"
    )
    with running_app(settings, clock) as app:
        s = order_with_shipment(app.ctx.engine, now=clock.now())
        change_delivery(
            app.ctx,
            shipment_id=s["shipment_id"],
            kind="instructions",
            detail={"text": "x"},
            requested_by="customer",
        )
        send_due(app.ctx, transport=httpx.MockTransport(lambda r: httpx.Response(400)))
        clock.advance(minutes=10)
        assert send_due(app.ctx, transport=httpx.MockTransport(lambda r: httpx.Response(200))) == 0
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(carrier_webhook_deliveries.c.status)).scalar_one() == "dead"
            assert conn.execute(select(delivery_changes.c.carrier_status)).scalar_one() == "failed"
