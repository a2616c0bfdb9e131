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


# Each chart canvas: its spec's type, the labels and data Chart.js holds, and how many pixels it painted.
CHARTS_JS = """() => Array.from(document.querySelectorAll('canvas[data-chart]')).map(c => {
  const chart = Chart.getChart(c);
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < px.length; i += 4) { if (px[i] > 0) { painted++; } }
  return {type: JSON.parse(c.getAttribute('data-chart')).type, labels: chart ? chart.data.labels : null,
          data: chart ? chart.data.datasets.map(d => d.data) : null, painted: painted};
})"""


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
            # charts drawn by the vendored Chart.js from the numbers in the page; the SVG fallback hidden
            charts = page.evaluate(CHARTS_JS)
            assert [c["type"] for c in charts] == ["stair", "columns", "columns", "columns"]
            stair = charts[0]
            kept, lost, perfect = stair["data"]
            cohort = int(page.locator("#section-perfect .lead").inner_text().split(" of ")[1].split(" ")[0])
            assert kept[0] + lost[0] == cohort  # every order of the cohort starts the stair
            assert all(
                k + f == before for k, f, before in zip(kept[1:-1], lost[1:-1], kept[:-2], strict=True)
            )
            assert perfect[-1] == kept[-2] and stair["labels"][-1] == "Perfect journey"
            assert all(c["painted"] > 500 for c in charts), charts  # pixels on every canvas
            assert not page.locator("svg.stair").is_visible()
            assert page.locator("table.drivers tbody tr").first.inner_text().startswith("1\tDelivered late")
            assert page.locator("figure.chart").count() == 4  # the stair and the three downstream charts
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
            # the swapped-in sections' charts are drawn again
            assert [c["type"] for c in page.evaluate(CHARTS_JS)] == ["stair", "columns", "columns", "columns"]
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
