"""The dashboard in real headless Chromium: renders the journey, and a new order shows up live (SSE)."""

from __future__ import annotations

import itertools
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from tests.conftest import make_settings
from tests.factories import staff_user
from tests.support_dashboard import NOW, WorldBuilder, known_world

from doorstep.app import create_app
from doorstep.clock import FixedClock
from doorstep.db.engine import create_db_engine
from doorstep.security.sessions import SESSION_COOKIE

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, str, str]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/system-deps.sh installs it)")
    engine = create_db_engine(sqlite_url)
    known_world(engine)
    session = staff_user(engine, now=NOW, role="analyst")["session"]
    engine.dispose()
    port = _free_port()
    settings = make_settings(tmp_path, sqlite_url, port=port)
    app = create_app(settings, clock=FixedClock(NOW), start_worker=False)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", session, sqlite_url
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _browser(playwright):  # type: ignore[no-untyped-def]
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


def test_dashboard_renders_and_updates_live(server: tuple[str, str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, session, url = server
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 2400})
            context.add_cookies([{"name": SESSION_COOKIE, "value": session, "url": base}])
            page = context.new_page()
            page.goto(f"{base}/dashboard?period=7")

            # the journey in order, every stage and the key sections present
            stages = page.locator("li.stage h2").all_inner_texts()
            assert [s.lstrip("0123456789").strip() for s in stages] == [
                "Awareness",
                "Consideration",
                "Purchase",
                "Fulfilment",
                "Delivery",
                "After purchase",
                "Loyalty",
            ]
            orders = page.locator('.tile[data-metric="orders"] .value')
            assert orders.inner_text() == "8"
            assert page.locator("svg.stair").is_visible()
            assert page.locator("table.drivers tbody tr").first.inner_text().startswith("1\tDelivered late")
            assert page.locator("figure.chart").count() == 3
            # definitions on hover
            page.locator('.tile[data-metric="orders"]').hover()
            assert page.locator("#def-orders").is_visible()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, ARTIFACTS / "dashboard.png")
            assert shot.stat().st_size > 20_000

            # live: a new order lands in the store; the tile changes without a reload
            page.wait_for_function("document.getElementById('live-status') !== null")
            page.evaluate("window.__noReload = true")
            time.sleep(1.0)  # the stream is open (hello received) before the change
            engine = create_db_engine(url)
            # written now: updated_at is the writer's clock, which the replica's sync reads changes by
            b = WorldBuilder(engine, NOW, seq=itertools.count(10_000), written_at=NOW)
            customer = b.customer(first_seen=NOW - timedelta(days=30))
            b.order(customer, placed=NOW - timedelta(hours=2), deliver_h=None, dispatch_h=None)
            started = time.monotonic()
            b.flush()
            engine.dispose()
            page.wait_for_function(
                "document.querySelector('.tile[data-metric=\"orders\"] .value').textContent.trim() === '9'",
                timeout=10_000,
            )
            seen_after_s = time.monotonic() - started
            assert page.evaluate("window.__noReload") is True
            assert "updated" in page.locator("#live-status").inner_text()
            assert seen_after_s < 5.0, seen_after_s
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"))
        finally:
            browser.close()


def test_drill_down_from_a_number_in_the_browser(server: tuple[str, str, str]) -> None:
    from playwright.sync_api import sync_playwright

    base, session, _ = server
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": SESSION_COOKIE, "value": session, "url": base}])
            page = context.new_page()
            page.goto(f"{base}/dashboard?period=7")
            page.locator('.tile[data-metric="delivered_on_promise"] a.value').click()
            page.wait_for_url("**/dashboard/drill?set=late*")
            assert page.locator("h1").inner_text() == "Orders delivered late"
            assert page.locator("#drill-table tbody tr").count() == 1
            with page.expect_download() as download:
                page.locator("a", has_text="Export CSV").click()
            assert download.value.suggested_filename == "orders-late.csv"
        finally:
            browser.close()
