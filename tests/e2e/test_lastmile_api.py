from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.factories import secret_key, staff_user
from tests.helpers import running_app
from tests.support_lastmile import order_with_shipment

from doorstep.clock import FixedClock
from doorstep.orders.tables import order_lines
from doorstep.returns.tables import returns
from doorstep.shipments.routes_tracking_page import tracking_link
from doorstep.shipments.tables import delivery_changes, delivery_slots


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_delivery_change_api_validates_and_needs_the_scope(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        ctx, client = app.ctx, app.client
        s = order_with_shipment(ctx.engine, now=clock.now())
        reader = secret_key(ctx.engine, now=clock.now(), scopes=["shipments:read"])
        writer = secret_key(ctx.engine, now=clock.now(), scopes=["shipments:write"])
        url = f"/api/shipments/{s['shipment_id']}/delivery-changes"

        assert client.post(url, json={"kind": "instructions", "detail": {"text": "x"}}).status_code == 401
        assert (
            client.post(
                url, json={"kind": "instructions", "detail": {"text": "x"}}, headers=_bearer(reader)
            ).status_code
            == 403
        )
        missing = client.post(url, json={"kind": "instructions"}, headers=_bearer(writer))
        assert missing.status_code == 422 and missing.json()["detail"].startswith("detail:")
        wrong_kind = client.post(url, json={"kind": "teleport", "detail": {}}, headers=_bearer(writer))
        assert wrong_kind.status_code == 422 and wrong_kind.json()["detail"].startswith("kind:")
        bad = client.post(url, json={"kind": "neighbour", "detail": {"name": "Ann"}}, headers=_bearer(writer))
        assert bad.status_code == 422 and bad.json()["field"] == "detail.house"
        assert bad.headers["content-type"] == "application/problem+json"
        unknown = client.post(
            "/api/shipments/nope/delivery-changes",
            json={"kind": "instructions", "detail": {"text": "x"}},
            headers=_bearer(writer),
        )
        assert unknown.status_code == 404
        with ctx.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(delivery_changes)).scalar_one() == 0
        ok = client.post(
            url,
            json={"kind": "instructions", "detail": {"text": "Side gate"}, "requested_by": "assistant"},
            headers=_bearer(writer),
        )
        assert ok.status_code == 201 and ok.json()["carrier_status"] == "pending"


def test_drivers_cannot_assign_rounds_or_change_deliveries(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        ctx, client = app.ctx, app.client
        driver = staff_user(ctx.engine, now=clock.now(), role="driver")
        s = order_with_shipment(ctx.engine, now=clock.now())
        client.cookies.set("doorstep_session", driver["session"])
        headers = {"X-CSRF-Token": driver["csrf"]}
        r = client.post(
            "/api/driver-rounds",
            json={"driver_id": driver["id"], "route_date": "2026-11-23", "shipment_ids": [s["shipment_id"]]},
            headers=headers,
        )
        assert r.status_code == 403
        c = client.post(
            f"/api/shipments/{s['shipment_id']}/delivery-changes",
            json={"kind": "instructions", "detail": {"text": "x"}},
            headers=headers,
        )
        assert c.status_code == 403
        client.cookies.clear()
        assert client.get("/driver", follow_redirects=False).status_code == 303  # anonymous: sign in first


def test_rounds_refuse_non_drivers_and_slots_api(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        ctx, client = app.ctx, app.client
        admin = secret_key(ctx.engine, now=clock.now(), scopes=["admin"])
        agent = staff_user(ctx.engine, now=clock.now(), role="agent")
        s = order_with_shipment(ctx.engine, now=clock.now())
        r = client.post(
            "/api/driver-rounds",
            json={"driver_id": agent["id"], "route_date": "2026-11-23", "shipment_ids": [s["shipment_id"]]},
            headers=_bearer(admin),
        )
        assert r.status_code == 422 and r.json()["field"] == "driver_id"
        start = (clock.now() + timedelta(days=1)).isoformat()
        end = (clock.now() + timedelta(days=1, hours=2)).isoformat()
        naive = client.post(
            "/api/slots",
            json={
                "carrier": "UPS",
                "region": "London",
                "windows": [{"starts_at": "2026-11-24T09:00:00", "ends_at": end, "capacity": 2}],
            },
            headers=_bearer(admin),
        )
        assert naive.status_code == 422 and naive.json()["field"] == "windows.0.starts_at"
        created = client.post(
            "/api/slots",
            json={
                "carrier": "UPS",
                "region": "London",
                "windows": [{"starts_at": start, "ends_at": end, "capacity": 2}],
            },
            headers=_bearer(admin),
        )
        assert created.json() == {"created": 1, "updated": 0}
        listed = client.get(f"/api/shipments/{s['shipment_id']}/slots", headers=_bearer(admin)).json()
        assert [x["remaining"] for x in listed] == [2]
        with ctx.engine.connect() as conn:
            assert conn.execute(select(delivery_slots.c.carrier)).scalar_one() == "ups"


def test_returns_api_flow_and_bad_input(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        ctx, client = app.ctx, app.client
        key = secret_key(ctx.engine, now=now, scopes=["orders:write", "orders:read"])
        s = order_with_shipment(ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=2))
        with ctx.engine.connect() as conn:
            line_id = conn.execute(
                select(order_lines.c.id).where(order_lines.c.order_id == s["order_id"])
            ).scalar_one()
        base = {
            "order_id": s["order_id"],
            "lines": [{"order_line_id": line_id, "quantity": 1}],
            "resolution": "refund",
        }

        bad_reason = client.post(
            "/api/returns", json=base | {"reason_code": "fit.too_tight"}, headers=_bearer(key)
        )
        assert bad_reason.status_code == 422 and bad_reason.json()["field"] == "reason_code"
        bad_line = client.post(
            "/api/returns",
            json=base | {"reason_code": "changed_mind", "lines": [{"order_line_id": 999999}]},
            headers=_bearer(key),
        )
        assert bad_line.status_code == 422 and bad_line.json()["field"] == "lines.0.order_line_id"
        with ctx.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(returns)).scalar_one() == 0

        created = client.post(
            "/api/returns",
            json=base | {"reason_code": "quality.defective", "method": "courier_pickup"},
            headers=_bearer(key),
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["status"], body["method"], body["refund_amount"]) == (
            "label_issued",
            "courier_pickup",
            "89.00",
        )
        assert client.get(body["label_url"]).content.startswith(b"%PDF")
        rid = body["id"]
        skip = client.post(f"/api/returns/{rid}/steps", json={"step": "inspected"}, headers=_bearer(key))
        assert skip.status_code == 409 and skip.json()["field"] == "step"
        for step in ("in_transit", "received", "inspected"):
            assert (
                client.post(
                    f"/api/returns/{rid}/steps", json={"step": step}, headers=_bearer(key)
                ).status_code
                == 200
            )
        final = client.get(f"/api/returns/{rid}", headers=_bearer(key)).json()
        assert final["status"] == "refunded" and final["exchange_order_id"] is None
        page = client.get(tracking_link(ctx.settings.secret_key, s["order_id"]))
        assert "Refund issued" in page.text and "89.00 GBP" in page.text


@pytest.mark.parametrize(
    "status",
    [
        "Pending",
        "InfoReceived",
        "InTransit",
        "OutForDelivery",
        "AttemptFail",
        "AvailableForPickup",
        "Exception",
        "Expired",
        "Delivered",
    ],
)
def test_every_state_renders_with_its_answers(
    tmp_path: Path, sqlite_url: str, clock: FixedClock, status: str
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(
            app.ctx.engine,
            now=clock.now(),
            status=status,
            last_location="Post Office, High St",
            delivered_at=clock.now() if status == "Delivered" else None,
        )
        page = app.client.get(tracking_link(app.ctx.settings.secret_key, s["order_id"]))
        assert page.status_code == 200
        has_actions = "Change your delivery" in page.text
        assert has_actions == (status not in ("Delivered", "Expired", "AvailableForPickup"))
        if status not in ("Expired",):
            assert "Your questions" in page.text
        if status == "AvailableForPickup":
            assert "Post Office, High St" in page.text


def test_expensive_returns_wait_for_a_person(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        ctx, client = app.ctx, app.client
        key = secret_key(ctx.engine, now=now, scopes=["orders:write", "orders:read"])
        pricey = [
            {
                "product_id": "tent",
                "name": "Tent",
                "category": "outdoor",
                "quantity": 2,
                "unit_price_minor": 19900,
            }
        ]
        s = order_with_shipment(
            ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=2), lines=pricey
        )
        with ctx.engine.connect() as conn:
            line_id = conn.execute(
                select(order_lines.c.id).where(order_lines.c.order_id == s["order_id"])
            ).scalar_one()
        body = {
            "order_id": s["order_id"],
            "lines": [{"order_line_id": line_id, "quantity": 2}],
            "reason_code": "changed_mind",
            "resolution": "refund",
        }

        first = client.post("/api/returns", json=body, headers=_bearer(key)).json()
        assert (first["status"], first["label_tracking_number"]) == ("requested", None)  # 398.00 > 250.00
        approved = client.post(
            f"/api/returns/{first['id']}/steps", json={"step": "approved"}, headers=_bearer(key)
        ).json()
        assert approved["status"] == "label_issued" and approved["label_tracking_number"]

        one = {**body, "lines": [{"order_line_id": line_id, "quantity": 1}]}
        over = client.post(
            "/api/returns", json=one, headers=_bearer(key)
        )  # both tents are already being returned
        assert over.status_code == 422 and over.json()["field"] == "lines.0.quantity"
        again = client.post(
            f"/api/returns/{first['id']}/steps", json={"step": "approved"}, headers=_bearer(key)
        )
        assert again.status_code == 409
        no_reason = client.post(
            f"/api/returns/{first['id']}/steps", json={"step": "rejected"}, headers=_bearer(key)
        )
        assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
