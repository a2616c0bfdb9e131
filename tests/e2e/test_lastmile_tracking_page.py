from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_lastmile import order_with_shipment, slot

from doorstep.clock import FixedClock
from doorstep.db.migrate import check, upgrade
from doorstep.ingest.tables import event_log
from doorstep.orders.tables import order_lines
from doorstep.returns.tables import returns
from doorstep.security import links
from doorstep.shipments.routes_tracking_page import tracking_link
from doorstep.shipments.tables import delivery_changes, delivery_slots, shipments


def _page_token(html: str) -> str:
    match = re.search(r'name="page_token" value="([^"]+)"', html)
    assert match, "the page has no action forms"
    return match.group(1)


def test_lookup_answers_wrong_email_and_unknown_order_identically(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(
            app.ctx.engine, now=clock.now(), email="maya@example.com", postcode="SW1A 1AA"
        )
        client = app.client

        wrong_email = client.post(
            "/track", data={"order_number": s["order_number"], "contact": "eve@example.com"}
        )
        no_order = client.post("/track", data={"order_number": "DS-999999", "contact": "maya@example.com"})

        assert wrong_email.status_code == no_order.status_code == 404
        assert wrong_email.text.replace(s["order_number"], "X") == no_order.text.replace("DS-999999", "X")
        by_email = client.post(
            "/track",
            data={"order_number": s["order_number"], "contact": " Maya@Example.com "},
            follow_redirects=False,
        )
        by_postcode = client.post(
            "/track", data={"order_number": s["order_number"], "contact": "sw1a1aa"}, follow_redirects=False
        )
        assert by_email.status_code == by_postcode.status_code == 303
        assert (
            links.verify(
                app.ctx.settings.secret_key, "track", by_email.headers["location"].removeprefix("/t/")
            )
            == s["order_id"]
        )


def test_lookups_are_rate_limited_per_order_and_per_ip(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(app.ctx.engine, now=clock.now())
        client = app.client
        codes = [
            client.post(
                "/track", data={"order_number": s["order_number"], "contact": f"x{i}@e.com"}
            ).status_code
            for i in range(6)
        ]
        assert codes == [404] * 5 + [429]
        # even the right answer is refused while the order is locked: guessing cannot continue
        right = client.post(
            "/track", data={"order_number": s["order_number"], "contact": s["email"]}, follow_redirects=False
        )
        assert right.status_code == 429
        # other orders from the same IP: the IP budget (10) runs out too
        more = [
            client.post("/track", data={"order_number": f"DS-{i}", "contact": "a@b.c"}).status_code
            for i in range(4)
        ]
        assert more == [404, 404, 404, 429]
        clock.advance(minutes=15)
        assert (
            client.post(
                "/track",
                data={"order_number": s["order_number"], "contact": s["email"]},
                follow_redirects=False,
            ).status_code
            == 303
        )


def test_signed_link_shows_the_late_state_and_changes_the_slot(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(
            app.ctx.engine,
            now=now,
            status="InTransit",
            promised_to=now - timedelta(hours=2),
            predicted_from=now + timedelta(days=1),
            predicted_to=now + timedelta(days=1, hours=4),
            delay_reason="missed connection at the Midlands hub",
        )
        wanted = slot(app.ctx.engine, starts_at=now + timedelta(days=2), capacity=2)
        slot(app.ctx.engine, starts_at=now + timedelta(days=3), capacity=1, booked=1)  # full: not offered
        client = app.client
        link = tracking_link(app.ctx.settings.secret_key, s["order_id"])

        page = client.get(link)
        assert page.status_code == 200
        assert (
            "Your parcel is running late" in page.text
            and "missed connection at the Midlands hub" in page.text
        )
        assert 'src="/static/chat-widget.js"' in page.text
        assert page.text.count('name="slot_id"') == 1 and wanted in page.text
        assert client.get("/t/not-a-token").status_code == 403

        token = _page_token(page.text)
        # without the per-page token, or with another browser's cookie, nothing changes
        forged = client.post(
            f"{link}/delivery",
            data={"kind": "slot", "slot_id": wanted, "page_token": "x"},
            follow_redirects=False,
        )
        assert forged.status_code == 403
        done = client.post(
            f"{link}/delivery",
            data={"kind": "slot", "slot_id": wanted, "page_token": token},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        with app.ctx.engine.connect() as conn:
            assert (
                conn.execute(
                    select(delivery_slots.c.booked).where(delivery_slots.c.id == wanted)
                ).scalar_one()
                == 1
            )
            assert conn.execute(select(func.count()).select_from(delivery_changes)).scalar_one() == 1
        after = client.get(link)
        assert "Delivery slot" in after.text

        # a malformed change names the field and is not applied
        bad = client.post(
            f"{link}/delivery", data={"kind": "neighbour", "name": "Mr Patel", "page_token": token}
        )
        assert bad.status_code == 422 and "house is required" in bad.text
        client.cookies.clear()
        stale = client.post(
            f"{link}/delivery",
            data={"kind": "instructions", "text": "hi", "page_token": token},
            follow_redirects=False,
        )
        assert stale.status_code == 403
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(delivery_changes)).scalar_one() == 1


def test_delivered_page_starts_a_return_and_reports_a_problem(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(
            app.ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=3)
        )
        client = app.client
        link = tracking_link(app.ctx.settings.secret_key, s["order_id"])
        page = client.get(link)
        assert "Change your delivery" not in page.text and "Start a return or exchange" in page.text
        line_id = re.search(r'name="line" value="(\d+)"', page.text).group(1)
        token = _page_token(page.text)

        r = client.post(
            f"{link}/return",
            data={
                "page_token": token,
                "line": line_id,
                f"condition_{line_id}": "as_new",
                "reason_code": "fit.too_small",
                "resolution": "exchange",
                "method": "drop_off",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        page = client.get(link)
        assert "Return label ready" in page.text and "/label.pdf?token=" in page.text
        label = client.get(re.search(r'href="(/returns/[^"]+)"', page.text).group(1).replace("&amp;", "&"))
        assert label.status_code == 200 and label.content.startswith(b"%PDF")

        p = client.post(
            f"{link}/problem",
            data={"page_token": token, "topic": "damaged", "text": "Box crushed"},
            follow_redirects=False,
        )
        assert p.status_code == 303
        with app.ctx.engine.connect() as conn:
            row = conn.execute(select(event_log)).one()
            assert (row.source, row.type, row.payload["channel"]) == ("inbound_message", "message", "chat")
            assert row.payload["text"] == "[It arrived damaged] Box crushed"
            ret = conn.execute(select(returns)).one()
            assert (ret.status, ret.method, ret.resolution) == ("label_issued", "drop_off", "exchange")


def test_returns_scan_in_creates_the_exchange(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    from doorstep.returns.handlers import LineRequest, move_return, request_return

    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(
            app.ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=1)
        )
        with app.ctx.engine.connect() as conn:
            line_id = conn.execute(
                select(order_lines.c.id).where(order_lines.c.order_id == s["order_id"])
            ).scalar_one()
        r = request_return(
            app.ctx,
            order_id=s["order_id"],
            lines=[LineRequest(line_id, 1, "as_new")],
            reason_code="fit.too_small",
            resolution="exchange",
            method=None,
            exchange_sku="shoe-1-size-43",
        )
        assert r["status"] == "label_issued" and r["exchange_order_id"] is None
        moved = move_return(app.ctx, return_id=r["id"], step="received")
        assert moved["status"] == "received" and moved["exchange_order_id"]
        again = move_return(app.ctx, return_id=r["id"], step="received")  # a second scan changes nothing
        assert again["exchange_order_id"] == moved["exchange_order_id"]
        final = move_return(app.ctx, return_id=r["id"], step="inspected")
        assert final["status"] == "exchanged"
        assert [st["step"] for st in final["steps"]] == [
            "requested",
            "approved",
            "label_issued",
            "received",
            "inspected",
            "exchanged",
        ]
        with app.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(shipments.c.tracking_number, shipments.c.is_return, shipments.c.order_id)
            ).all()
            assert sum(1 for x in rows if x.is_return) == 1
            assert sum(1 for x in rows if x.order_id == moved["exchange_order_id"]) == 1


def test_keep_item_return_is_refunded_at_once(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    from doorstep.returns.handlers import LineRequest, request_return

    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        cheap = [
            {
                "product_id": "socks",
                "name": "Socks",
                "category": "accessories",
                "quantity": 1,
                "unit_price_minor": 399,
            }
        ]
        s = order_with_shipment(
            app.ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=1), lines=cheap
        )
        with app.ctx.engine.connect() as conn:
            line_id = conn.execute(
                select(order_lines.c.id).where(order_lines.c.order_id == s["order_id"])
            ).scalar_one()
        r = request_return(
            app.ctx,
            order_id=s["order_id"],
            lines=[LineRequest(line_id, 1, "as_new")],
            reason_code="changed_mind",
            resolution="refund",
            method="drop_off",
        )
        assert (r["status"], r["method"], r["refund_amount"], r["label_tracking_number"]) == (
            "refunded",
            "keep_item",
            "3.99",
            None,
        )
        with app.ctx.engine.connect() as conn:
            assert (
                conn.execute(
                    select(func.count()).select_from(shipments).where(shipments.c.is_return.is_(True))
                ).scalar_one()
                == 0
            )


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    check(url)


def test_page_actions_are_rate_limited_per_order(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(app.ctx.engine, now=clock.now())
        link = tracking_link(app.ctx.settings.secret_key, s["order_id"])
        token = _page_token(app.client.get(link).text)
        codes = [
            app.client.post(
                f"{link}/delivery",
                data={"kind": "instructions", "text": f"note {i}", "page_token": token},
                follow_redirects=False,
            ).status_code
            for i in range(21)
        ]
        assert codes == [303] * 20 + [429]
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(delivery_changes)).scalar_one() == 20
