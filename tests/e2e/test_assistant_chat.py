"""The public web chat API: sessions, signed tokens, messages answered by the worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_assistant import seed_order

from doorstep.conversations.tables import conversations, messages
from doorstep.notifications.tables import notifications
from doorstep.security.links import sign


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str, clock):  # type: ignore[no-untyped-def]
    with running_app(make_settings(tmp_path, sqlite_url), clock) as running:
        yield running


def test_chat_opened_from_a_tracking_link_is_verified_for_that_order(app, clock) -> None:  # type: ignore[no-untyped-def]
    seed_order(app.ctx.engine, now=clock.now())
    token = sign(app.ctx.settings.secret_key, "track", "order-DS-10293")
    created = app.client.post("/chat/sessions", json={"tracking_token": token})
    assert created.status_code == 201
    session = created.json()
    assert session["messages"][0]["body"].endswith("I can see order DS-10293. How can I help?")
    headers = {"X-Chat-Token": session["token"]}
    sent = app.client.post(
        f"/chat/sessions/{session['id']}/messages",
        json={"text": "when will it arrive?", "client_id": "m1"},
        headers=headers,
    )
    assert sent.status_code == 202
    again = app.client.post(
        f"/chat/sessions/{session['id']}/messages",
        json={"text": "when will it arrive?", "client_id": "m1"},
        headers=headers,
    )
    assert again.status_code == 202  # a resend is accepted but not stored twice
    app.drain()
    page = app.client.get(f"/chat/sessions/{session['id']}/messages", headers=headers).json()
    assert [m["author"] for m in page["messages"]] == ["bot", "customer", "bot"]
    assert page["messages"][2]["body"].startswith("Order DS-10293 is on its way with DHL")
    newer = app.client.get(
        f"/chat/sessions/{session['id']}/messages",
        params={"after": page["messages"][1]["id"]},
        headers=headers,
    ).json()
    assert [m["author"] for m in newer["messages"]] == ["bot"]
    with app.ctx.engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
        assert conv.is_verified and conv.customer_id == "cust-1" and conv.channel == "chat"
        # Web chat replies are shown in the widget, not sent through a provider.
        assert conn.execute(select(func.count()).select_from(notifications)).scalar() == 0


def test_chat_without_a_link_must_verify(app, clock) -> None:  # type: ignore[no-untyped-def]
    seed_order(app.ctx.engine, now=clock.now())
    session = app.client.post("/chat/sessions", json={}).json()
    headers = {"X-Chat-Token": session["token"]}
    app.client.post(
        f"/chat/sessions/{session['id']}/messages", json={"text": "where is order DS-10293"}, headers=headers
    )
    app.drain()
    page = app.client.get(f"/chat/sessions/{session['id']}/messages", headers=headers).json()
    assert "email address or the delivery postcode" in page["messages"][-1]["body"]
    assert not any("DHL" in m["body"] for m in page["messages"])


def test_chat_tokens_are_checked(app, clock) -> None:  # type: ignore[no-untyped-def]
    first = app.client.post("/chat/sessions", json={}).json()
    second = app.client.post("/chat/sessions", json={}).json()
    url = f"/chat/sessions/{first['id']}/messages"
    assert app.client.get(url).status_code == 403
    assert app.client.get(url, headers={"X-Chat-Token": second["token"]}).status_code == 403
    assert app.client.get(url, headers={"X-Chat-Token": "forged"}).status_code == 403
    posted = app.client.post(url, json={"text": "hi"}, headers={"X-Chat-Token": second["token"]})
    assert posted.status_code == 403
    with app.ctx.engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(messages)).scalar() == 2
        )  # the two greetings only
    bad_link = app.client.post("/chat/sessions", json={"tracking_token": "not-a-token"})
    assert bad_link.status_code == 201 and "I can see order" not in bad_link.json()["messages"][0]["body"]


def test_widget_is_served(app) -> None:  # type: ignore[no-untyped-def]
    js = app.client.get("/static/chat-widget.js")
    assert js.status_code == 200 and "/chat/sessions" in js.text
