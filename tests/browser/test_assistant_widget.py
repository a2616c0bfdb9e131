"""The chat widget on a page, in headless Chromium against a real server with its in-process worker."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.responses import HTMLResponse
from tests.conftest import make_settings
from tests.support_assistant import seed_order

from doorstep.app import create_app
from doorstep.security.links import sign

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Your order</title>
<meta name="doorstep-tracking-token" content="{token}"></head>
<body><h1>Your order</h1><script src="/static/chat-widget.js" defer></script></body></html>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    import uvicorn

    settings = make_settings(tmp_path, sqlite_url, in_process_worker=True)
    app = create_app(settings)
    seed_order(app.state.ctx.engine, now=app.state.ctx.clock.now())
    token = sign(settings.secret_key, "track", "order-DS-10293")
    app.add_api_route("/test-page", lambda: HTMLResponse(PAGE.format(token=token)), methods=["GET"])
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_customer_chats_from_the_tracking_page(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{server}/test-page")
            page.get_by_role("button", name="Chat with us").click()
            log = page.locator(".dsc-log")
            expect(log.locator("li").first).to_contain_text("I can see order DS-10293", timeout=10_000)
            page.get_by_label("Your message").fill("where is my parcel?")
            page.get_by_role("button", name="Send").click()
            expect(log.locator('li[data-author="customer"]')).to_have_text(
                ["where is my parcel?"], timeout=10_000
            )
            expect(log.locator('li[data-author="bot"]').last).to_contain_text(
                "Order DS-10293 is on its way with DHL", timeout=10_000
            )
            # Escape closes the panel and returns focus to the launcher.
            page.keyboard.press("Escape")
            expect(page.locator("#doorstep-chat")).to_be_hidden()
            expect(page.get_by_role("button", name="Chat with us")).to_be_focused()
        finally:
            browser.close()
