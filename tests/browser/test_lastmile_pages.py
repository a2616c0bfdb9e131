"""The tracking page and the driver page in real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import staff_user
from tests.support_lastmile import LiveServer, order_with_shipment, slot

from doorstep.clock import FixedClock
from doorstep.security.sessions import SESSION_COOKIE
from doorstep.shipments.handlers_lastmile import assign_stops
from doorstep.shipments.routes_tracking_page import tracking_link
from doorstep.shipments.tables import delivery_slots, proofs_of_delivery, shipments

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian chromium is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _door_png() -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 48), "#c8d6e5")
    ImageDraw.Draw(image).rectangle((20, 18, 44, 40), fill="#8b5a2b")  # a parcel on the doorstep
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


PNG_DOOR = _door_png()
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 1,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[LiveServer]:
    clock = FixedClock(at=datetime.now(UTC).replace(microsecond=0))
    settings = make_settings(tmp_path, sqlite_url, in_process_worker=True, brand_name="Northwind Outfitters")
    with LiveServer(settings, clock) as live:
        yield live


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    return path


def test_tracking_page_states(browser: Any, server: LiveServer, tmp_path: Path) -> None:
    ctx, now = server.ctx, server.ctx.clock.now()
    in_transit = order_with_shipment(
        ctx.engine,
        now=now,
        status="InTransit",
        promised_from=now + timedelta(days=1),
        promised_to=now + timedelta(days=1, hours=8),
        predicted_from=now + timedelta(days=1, hours=1),
        predicted_to=now + timedelta(days=1, hours=5),
        predicted_confidence=0.82,
    )
    late = order_with_shipment(
        ctx.engine,
        now=now,
        status="InTransit",
        promised_to=now - timedelta(hours=3),
        predicted_from=now + timedelta(days=1, hours=1),
        predicted_to=now + timedelta(days=1, hours=5),
        predicted_confidence=0.7,
        delay_reason="Missed connection at the Midlands hub",
    )
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(server.url + tracking_link(ctx.settings.secret_key, in_transit["order_id"]))
    assert page.locator("h1").inner_text() == "Your parcel is on its way"
    assert "82% likely" in page.get_by_test_id("predicted").inner_text()
    _shot(page, tmp_path, "in_transit")

    page.goto(server.url + tracking_link(ctx.settings.secret_key, late["order_id"]))
    assert page.locator("h1").inner_text() == "Your parcel is running late"
    assert "Midlands hub" in page.get_by_test_id("delay-reason").inner_text()
    assert page.get_by_text("New expected window").is_visible()
    _shot(page, tmp_path, "late")

    # every form control on the page has an accessible name
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.name)"""
    )
    assert unnamed == []
    assert _low_contrast(page) == []
    assert errors == []  # the chat widget is missing here: the page must not break without it
    context.close()


def test_slot_change_by_keyboard_end_to_end(browser: Any, server: LiveServer, tmp_path: Path) -> None:
    ctx, now = server.ctx, server.ctx.clock.now()
    s = order_with_shipment(ctx.engine, now=now, status="InTransit", predicted_to=now + timedelta(days=1))
    wanted = slot(
        ctx.engine, starts_at=(now + timedelta(days=2)).replace(hour=9, minute=0, second=0), capacity=2
    )
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(server.url + tracking_link(ctx.settings.secret_key, s["order_id"]))

    summary = page.get_by_text("Choose a day and time")
    for _ in range(
        40
    ):  # Tab from the top until the slot section has focus: everything on the way is reachable
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Choose a day and time":
            break
    else:
        pytest.fail("the slot picker cannot be reached with the keyboard")
    page.keyboard.press("Enter")
    assert summary.locator("xpath=..").get_attribute("open") is not None
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    assert page.locator("input[name=slot_id]").first.is_checked()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Book this slot"
    page.keyboard.press("Enter")
    page.wait_for_selector("#done")
    assert "carrier told" in page.locator("#done").inner_text()
    assert "Delivery slot" in page.locator(".changes").inner_text()
    assert "09:00–11:00" in page.get_by_test_id("booked-slot").inner_text()
    _shot(page, tmp_path, "slot_changed")
    with ctx.engine.connect() as conn:
        assert (
            conn.execute(select(delivery_slots.c.booked).where(delivery_slots.c.id == wanted)).scalar_one()
            == 1
        )
    context.close()


def test_driver_records_proof_with_a_drawn_signature(
    browser: Any, server: LiveServer, tmp_path: Path
) -> None:
    ctx, now = server.ctx, server.ctx.clock.now()
    driver = staff_user(ctx.engine, now=now, role="driver")
    s = order_with_shipment(
        ctx.engine, now=now, status="OutForDelivery", promised_to=now + timedelta(hours=6)
    )
    assign_stops(ctx, driver_id=driver["id"], route_date=now.date(), shipment_ids=[s["shipment_id"]])
    context = browser.new_context(
        **PHONE, geolocation={"latitude": 51.5034, "longitude": -0.1276}, permissions=["geolocation"]
    )
    context.add_cookies([{"name": SESSION_COOKIE, "value": driver["session"], "url": server.url}])
    page = context.new_page()
    page.goto(server.url + "/driver")
    assert "Maya Jones" in page.inner_text("article")
    page.get_by_role("button", name="Departed depot (1 stop)").click()
    page.wait_for_selector("text=ETA")
    page.get_by_text("Delivered: record proof").click()
    canvas = page.locator("canvas.sigpad")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 100)
    page.mouse.down()
    for i in range(1, 25):
        page.mouse.move(box["x"] + 20 + i * 12, box["y"] + 100 - (i % 6) * 12, steps=2)
    page.mouse.up()
    photo = tmp_path / "door.png"
    photo.write_bytes(PNG_DOOR)
    page.get_by_label("Photo").set_input_files(str(photo))
    page.get_by_label("Recipient name").fill("Maya Jones")
    page.wait_for_function("document.querySelector('.gps').textContent.length > 0")
    _shot(page, tmp_path, "driver_before_save")
    page.get_by_role("button", name="Save proof of delivery").click()
    page.wait_for_selector("text=Delivered", state="visible")
    page.wait_for_selector(".badge.ok")
    with ctx.engine.connect() as conn:
        proof = conn.execute(select(proofs_of_delivery)).one()
    assert proof.recipient_name == "Maya Jones" and (proof.latitude, proof.longitude) == (51.5034, -0.1276)
    assert (
        Path(proof.signature_path).read_bytes().startswith(b"\x89PNG")
        and Path(proof.signature_path).stat().st_size > 1000
    )

    # the customer sees the proof on the tracking page once the worker has run the chain
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with ctx.engine.connect() as conn:
            if (
                conn.execute(
                    select(shipments.c.status).where(shipments.c.id == s["shipment_id"])
                ).scalar_one()
                == "Delivered"
            ):
                break
        time.sleep(0.1)
    customer = context.new_page()
    customer.goto(server.url + tracking_link(ctx.settings.secret_key, s["order_id"]))
    assert customer.locator("h1").inner_text() == "Delivered"
    assert customer.get_by_test_id("recipient").inner_text() == "Maya Jones"
    assert _low_contrast(customer) == []
    assert customer.get_by_alt_text("Photo of the parcel at the door").evaluate(
        "img => img.complete && img.naturalWidth == 64"
    )
    sig = customer.get_by_alt_text("Signature of Maya Jones")
    assert sig.evaluate("img => img.complete && img.naturalWidth > 0")
    assert _invoice_ready(ctx, s, customer, server), "the invoice was not issued after the proof"
    assert customer.get_by_text("Download your invoice").is_visible()
    _shot(customer, tmp_path, "delivered_with_proof")
    context.close()


CONTRAST_JS = """() => {
  const lum = (rgb) => { const c = rgb.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
                         return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]; };
  const parse = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const bg = (el) => { for (; el; el = el.parentElement) { const p = parse(getComputedStyle(el).backgroundColor);
                                                         if (p.length === 3 || (p.length === 4 && p[3] > 0.5)) return p.slice(0, 3); }
                       return [255, 255, 255]; };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text || el.offsetParent === null) continue;
    const st = getComputedStyle(el), fg = parse(st.color).slice(0, 3), b = bg(el);
    const l1 = lum(fg), l2 = lum(b), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize), large = size >= 24 || (size >= 18.66 && parseInt(st.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(text.slice(0, 40) + ' ' + ratio.toFixed(2));
  }
  return bad;
}"""


def _low_contrast(page: Any) -> list[str]:
    """Every visible text against its effective background, by the WCAG 2.1 formula (AA: 4.5, large 3)."""
    return page.evaluate(CONTRAST_JS)


def _invoice_ready(ctx: Any, s: dict[str, Any], page: Any, server: LiveServer) -> bool:
    """Waits for the in-process worker to issue the invoice, then reloads the page."""
    from doorstep.orders.tables import invoices

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with ctx.engine.connect() as conn:
            if conn.execute(select(invoices.c.id).where(invoices.c.order_id == s["order_id"])).first():
                page.reload()
                return True
        time.sleep(0.1)
    return False


def test_customer_starts_an_exchange_and_gets_the_label(
    browser: Any, server: LiveServer, tmp_path: Path
) -> None:
    ctx, now = server.ctx, server.ctx.clock.now()
    s = order_with_shipment(ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=2))
    context = browser.new_context(**PHONE, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url + tracking_link(ctx.settings.secret_key, s["order_id"]))
    page.get_by_text("Start a return or exchange").click()
    page.get_by_label("Trail running shoes × 1").check()
    page.get_by_label("Reason").select_option("fit.too_small")
    page.get_by_role("radio", name="Exchange").check()
    page.get_by_label("For an exchange: size or variant you want").fill("EU 43")
    page.get_by_role("button", name="Start return").click()
    page.wait_for_selector("#done")
    assert page.get_by_test_id("return-label_issued").is_visible()
    _shot(page, tmp_path, "return_started")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download return label (PDF)").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
    context.close()
