"""The dashboard through HTTP: who may open it, what it shows, drill-downs and CSV export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import secret_key, staff_user
from tests.helpers import running_app
from tests.support_dashboard import NOW, known_world

from doorstep.clock import FixedClock
from doorstep.db.engine import create_db_engine
from doorstep.orders.tables import orders
from doorstep.security.sessions import SESSION_COOKIE


def _app(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    engine = create_db_engine(url)
    ids = known_world(engine)
    engine.dispose()
    return running_app(make_settings(tmp_path, url), FixedClock(NOW)), ids


def test_dashboard_needs_an_analyst_or_admin(tmp_path: Path, sqlite_url: str) -> None:
    cm, _ = _app(tmp_path, sqlite_url)
    with cm as app:
        anonymous = app.client.get("/dashboard?period=7", follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
        assert app.client.get("/dashboard/data.json").status_code == 401
        assert app.client.get("/dashboard/drill.csv?set=late").status_code == 401

        agent = staff_user(app.ctx.engine, now=NOW, role="agent")
        app.client.cookies.set(SESSION_COOKIE, agent["session"])
        assert app.client.get("/dashboard?period=7").status_code == 403
        assert app.client.get("/dashboard/data.json?period=7").status_code == 403
        assert app.client.get("/dashboard/stream?period=7").status_code == 403
        assert app.client.get("/dashboard/drill?set=late&period=7").status_code == 403

        for role in ("analyst", "admin"):
            user = staff_user(app.ctx.engine, now=NOW, role=role)
            app.client.cookies.set(SESSION_COOKIE, user["session"])
            assert app.client.get("/dashboard?period=7").status_code == 200


def test_page_shows_the_journey_in_order_with_definitions(tmp_path: Path, sqlite_url: str) -> None:
    cm, _ = _app(tmp_path, sqlite_url)
    with cm as app:
        app.client.cookies.set(SESSION_COOKIE, staff_user(app.ctx.engine, now=NOW, role="analyst")["session"])
        page = app.client.get("/dashboard?period=7").text

        order = [
            page.index(f'id="stage-{s}"')
            for s in (
                "awareness",
                "consideration",
                "purchase",
                "fulfilment",
                "delivery",
                "after_purchase",
                "loyalty",
            )
        ]
        assert order == sorted(order)
        assert 'data-metric="orders"' in page and 'aria-describedby="def-orders"' in page
        assert "Orders placed in the period" in page  # the definition, for the tooltip
        assert "/dashboard/drill?set=late&amp;period=7" in page
        assert "Delivered late / past promise" in page  # the top contact driver
        assert 'class="stair"' in page and "Mean review / CSAT score by days late" in page


def test_json_and_api_key_with_analytics_scope(tmp_path: Path, sqlite_url: str) -> None:
    cm, _ = _app(tmp_path, sqlite_url)
    with cm as app:
        key = secret_key(app.ctx.engine, now=NOW, scopes=["analytics:read"])
        response = app.client.get(
            "/dashboard/data.json?period=7&carrier=dhl", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
        assert response.json()["values"]["orders"] == 5
        other = secret_key(app.ctx.engine, now=NOW, scopes=["orders:read"])
        assert (
            app.client.get("/dashboard/data.json", headers={"Authorization": f"Bearer {other}"}).status_code
            == 403
        )
        bad = app.client.get("/dashboard/data.json?period=12", headers={"Authorization": f"Bearer {key}"})
        assert bad.status_code == 400 and "period" in bad.json()["detail"]


def test_drill_down_page_and_csv_export(tmp_path: Path, sqlite_url: str) -> None:
    cm, ids = _app(tmp_path, sqlite_url)
    with cm as app:
        app.client.cookies.set(SESSION_COOKIE, staff_user(app.ctx.engine, now=NOW, role="analyst")["session"])
        with app.ctx.engine.connect() as conn:
            o2_number = conn.execute(
                select(orders.c.external_id).where(orders.c.id == ids["o2"])
            ).scalar_one()
        page = app.client.get("/dashboard/drill?set=cause:late&period=7")
        assert page.status_code == 200 and f"<td>{o2_number}</td>" in page.text
        assert page.text.count("<tr><td>#") == 1
        response = app.client.get("/dashboard/drill.csv?set=returned&period=7")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["id"] for r in rows] == [ids["o5"]]
        assert app.client.get("/dashboard/drill?set=nonsense&period=7").status_code == 404
