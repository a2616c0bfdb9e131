from __future__ import annotations

import base64
import io
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.factories import secret_key, staff_user
from tests.helpers import running_app
from tests.support_lastmile import order_with_shipment

from doorstep.bus.tables import timers
from doorstep.bus.timers import fire_due
from doorstep.clock import FixedClock
from doorstep.customers.events import CustomerErased
from doorstep.orders.tables import invoices, order_steps, orders
from doorstep.security.sessions import SESSION_COOKIE
from doorstep.shipments.tables import driver_assignments, proofs_of_delivery, shipments

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _steps(conn, order_id: str) -> dict:
    return {
        r.step: r.occurred_at
        for r in conn.execute(select(order_steps).where(order_steps.c.order_id == order_id))
    }


def _login(client, user) -> dict[str, str]:
    client.cookies.set(SESSION_COOKIE, user["session"])
    return {"X-CSRF-Token": user["csrf"]}


def test_round_depart_proof_invoice_follow_up(tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    with running_app(make_settings(tmp_path, database_url), clock) as app:
        ctx, client = app.ctx, app.client
        admin_key = secret_key(ctx.engine, now=clock.now(), scopes=["admin"])
        writer_key = secret_key(ctx.engine, now=clock.now(), scopes=["orders:write"])
        driver = staff_user(ctx.engine, now=clock.now(), role="driver")
        other = staff_user(ctx.engine, now=clock.now(), role="driver")
        a = order_with_shipment(ctx.engine, now=clock.now(), status="OutForDelivery")
        b = order_with_shipment(ctx.engine, now=clock.now(), status="OutForDelivery")
        today = clock.now().date().isoformat()

        # staff record the manual steps; a step out of order is refused and changes nothing
        auth = {"Authorization": f"Bearer {writer_key}"}
        refused = client.post(f"/api/orders/{a['order_number']}/steps", json={"step": "packed"}, headers=auth)
        assert refused.status_code == 422 and refused.json()["field"] == "step"
        for step in ("paid", "picked", "packed"):
            assert (
                client.post(
                    f"/api/orders/{a['order_id']}/steps", json={"step": step}, headers=auth
                ).status_code
                == 200
            )
        again = client.post(f"/api/orders/{a['order_id']}/steps", json={"step": "paid"}, headers=auth)
        assert again.json()["recorded"] is False
        bad = client.post(f"/api/orders/{a['order_id']}/steps", json={"step": "delivered"}, headers=auth)
        assert bad.status_code == 422 and "step" in bad.json()["detail"]

        # the admin assigns the round; another driver cannot see or touch it
        r = client.post(
            "/api/driver-rounds",
            json={
                "driver_id": driver["id"],
                "route_date": today,
                "shipment_ids": [a["shipment_id"], b["shipment_id"]],
            },
            headers={"Authorization": f"Bearer {admin_key}"},
        )
        assert r.status_code == 201, r.text
        stop_a, stop_b = r.json()["assignment_ids"]
        headers_other = _login(client, other)
        page = client.get("/driver")
        assert page.status_code == 200 and a["tracking_number"] not in page.text
        stolen = client.post(
            f"/driver/stops/{stop_a}/proof",
            data={
                "recipient_name": "X",
                "signature": "data:image/png;base64," + base64.b64encode(PNG_1PX).decode(),
            },
            headers=headers_other,
        )
        assert stolen.status_code == 404
        client.cookies.clear()

        headers = _login(client, driver)
        page = client.get("/driver")
        assert a["tracking_number"] in page.text and b["tracking_number"] in page.text
        assert "+44 ••••••• 123" in page.text and "7700900123" not in page.text
        assert (
            client.post(
                "/driver/depart", data={"date": today}, headers=headers, follow_redirects=False
            ).status_code
            == 303
        )
        with ctx.engine.connect() as conn:
            etas = conn.execute(
                select(driver_assignments.c.eta_from, driver_assignments.c.eta_to).order_by(
                    driver_assignments.c.sequence
                )
            ).all()
        assert etas[0].eta_from == clock.now() + timedelta(minutes=5) and etas[
            1
        ].eta_from == clock.now() + timedelta(minutes=15)

        # a proof with neither photo nor signature is refused, naming the field, and nothing is stored
        empty = client.post(f"/driver/stops/{stop_a}/proof", data={"recipient_name": "Maya"}, headers=headers)
        assert empty.status_code == 422 and empty.json()["field"] == "photo"
        clock.advance(minutes=7)
        ok = client.post(
            f"/driver/stops/{stop_a}/proof",
            data={
                "recipient_name": "Maya Jones",
                "latitude": "51.5034",
                "longitude": "-0.1276",
                "signature": "data:image/png;base64," + base64.b64encode(PNG_1PX).decode(),
            },
            files={"photo": ("door.png", io.BytesIO(PNG_1PX), "image/png")},
            headers=headers,
        )
        assert ok.status_code == 200, ok.text
        failed = client.post(
            f"/driver/stops/{stop_b}/failure",
            data={"reason": "not_home"},
            headers=headers,
            follow_redirects=False,
        )
        assert failed.status_code == 303
        app.drain()

        with ctx.engine.connect() as conn:
            proof = conn.execute(select(proofs_of_delivery)).one()
            assert Path(proof.photo_path).read_bytes() == PNG_1PX and Path(proof.signature_path).is_file()
            assert (proof.latitude, proof.longitude, proof.recipient_name) == (51.5034, -0.1276, "Maya Jones")
            statuses = dict(conn.execute(select(shipments.c.id, shipments.c.status)).all())
            assert statuses == {a["shipment_id"]: "Delivered", b["shipment_id"]: "AttemptFail"}
            steps = _steps(conn, a["order_id"])
            assert set(steps) == {"placed", "paid", "picked", "packed", "delivered", "invoiced"}
            assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 1
            invoice = conn.execute(select(invoices)).one()
            assert Path(invoice.path).read_bytes().startswith(b"%PDF")
            timer = conn.execute(select(timers)).one()
            assert timer.due_at == clock.now() + timedelta(days=2) and timer.fired_at is None
            assert _steps(conn, b["order_id"]) == {}  # a failed attempt starts nothing
            assert (
                conn.execute(select(orders.c.status).where(orders.c.id == a["order_id"])).scalar_one()
                == "invoiced"
            )

        # the follow-up fires only when due, once
        assert fire_due(ctx) == 0
        clock.advance(days=2)
        assert fire_due(ctx) == 1 and fire_due(ctx) == 0
        app.drain()
        with ctx.engine.connect() as conn:
            assert "follow_up_sent" in _steps(conn, a["order_id"])

        # the invoice is served only behind its signed link
        from doorstep.orders.routes_chain import invoice_link

        client.cookies.clear()
        assert client.get(f"/orders/{a['order_id']}/invoice.pdf?token=nope").status_code == 403
        pdf = client.get(invoice_link(ctx.settings.secret_key, a["order_id"]))
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

        # erasure reaches the files: proof photo and signature, invoice
        with ctx.uow() as uow:
            uow.publish(CustomerErased(occurred_at=clock.now(), customer_id=a["customer_id"]))
            uow.commit()
        app.drain()
        assert not Path(proof.photo_path).exists() and not Path(proof.signature_path).exists()
        assert not Path(invoice.path).exists()
