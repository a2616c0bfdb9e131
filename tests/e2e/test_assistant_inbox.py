"""The agent inbox through HTTP: queue, visibility, take, reply on the customer's channel, resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import staff_user
from tests.helpers import running_app
from tests.support_assistant import PHONE, drain, inbound, seed_order

from doorstep.bus.tables import outbox
from doorstep.conversations.events import ConversationResolved
from doorstep.conversations.tables import conversations, messages
from doorstep.notifications.tables import notifications
from doorstep.security.sessions import SESSION_COOKIE


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str, clock):  # type: ignore[no-untyped-def]
    with running_app(make_settings(tmp_path, sqlite_url), clock) as running:
        yield running


def login(app, user) -> None:  # type: ignore[no-untyped-def]
    app.client.cookies.clear()
    app.client.cookies.set(SESSION_COOKIE, user["session"])


def handed_off(app, clock) -> str:  # type: ignore[no-untyped-def]
    seed_order(app.ctx.engine, now=clock.now())
    inbound(
        app.ctx.engine, now=clock.now(), text="the parcel arrived and the glass is smashed", provider_id="w1"
    )
    drain(app)
    with app.ctx.engine.connect() as conn:
        return str(conn.execute(select(conversations.c.id)).scalar_one())


def test_staff_page_needs_an_agent(app, clock) -> None:  # type: ignore[no-untyped-def]
    anonymous = app.client.get("/inbox", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/inbox"
    login(app, staff_user(app.ctx.engine, now=clock.now(), role="driver"))
    assert app.client.get("/inbox").status_code == 403


def test_queue_take_reply_resolve(app, clock) -> None:  # type: ignore[no-untyped-def]
    app.ctx.bus.subscribe(ConversationResolved, "test.resolved", lambda envelope, ctx: None)
    conv_id = handed_off(app, clock)
    priya = staff_user(app.ctx.engine, now=clock.now(), role="agent")
    other = staff_user(app.ctx.engine, now=clock.now(), role="agent")
    admin = staff_user(app.ctx.engine, now=clock.now(), role="admin")
    clock.advance(minutes=7)

    login(app, priya)
    page = app.client.get("/inbox")
    assert page.status_code == 200
    assert f'href="/inbox/{conv_id}">7 min' in page.text and "sensitive:damaged" in page.text
    detail = app.client.get(f"/inbox/{conv_id}")
    assert "Handoff: sensitive:damaged." in detail.text
    assert "the glass is smashed" in detail.text  # the bot transcript
    assert "DS-10293" in detail.text and "Leipzig hub" in detail.text  # customer-360 with shipment
    assert "arrived damaged. Could you send a photo" in detail.text  # suggested answer
    assert '<option value="damaged" selected>' in detail.text  # cause pre-filled

    taken = app.client.post(
        f"/inbox/{conv_id}/assign",
        data={"agent_id": "me", "csrf_token": priya["csrf"]},
        follow_redirects=False,
    )
    assert taken.status_code == 303

    login(app, other)
    assert conv_id not in app.client.get("/inbox").text
    assert app.client.get(f"/inbox/{conv_id}").status_code == 404
    refused = app.client.post(f"/inbox/{conv_id}/reply", data={"text": "hi", "csrf_token": other["csrf"]})
    assert refused.status_code == 404

    login(app, admin)
    assert conv_id in app.client.get("/inbox").text

    login(app, priya)
    sent = app.client.post(
        f"/inbox/{conv_id}/reply",
        data={"text": "So sorry! A replacement is on its way.", "csrf_token": priya["csrf"]},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    with app.ctx.engine.connect() as conn:
        queued = conn.execute(
            select(notifications).order_by(notifications.c.created_at, notifications.c.id)
        ).all()
        conv = conn.execute(select(conversations)).one()
    assert [n.body_text for n in queued][-1] == "So sorry! A replacement is on its way."
    assert queued[-1].channel == "whatsapp" and queued[-1].to_address == PHONE
    assert conv.status == "assigned" and conv.assigned_to == priya["id"]

    no_csrf = app.client.post(f"/inbox/{conv_id}/resolve", data={"cause": "damaged"})
    assert no_csrf.status_code == 403
    done = app.client.post(
        f"/inbox/{conv_id}/resolve",
        data={
            "contact_reason": "report_problem",
            "cause": "damaged",
            "owner": "carrier",
            "csrf_token": priya["csrf"],
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    with app.ctx.engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
        events = conn.execute(
            select(outbox.c.event_type, outbox.c.payload).where(outbox.c.event_type == "ConversationResolved")
        ).all()
        last = conn.execute(
            select(messages).order_by(messages.c.created_at.desc(), messages.c.id.desc())
        ).first()
    assert (conv.status, conv.contact_reason, conv.cause, conv.cause_owner) == (
        "resolved",
        "report_problem",
        "damaged",
        "carrier",
    )
    assert conv.is_contained is False and conv.resolved_at == clock.now()
    assert conv.first_reply_at is not None and conv.handed_off_at is not None
    assert len(events) == 1
    assert events[0].payload["cause"] == "damaged"
    assert "from 1 (not at all) to 5 (very)" in last.body  # one satisfaction question at the end

    week = app.client.get("/inbox").text
    assert "<li>damaged (carrier): 1</li>" in week and "<li>report problem: 1</li>" in week
    assert "contained 0%" in week

    # The customer's rating lands on the resolved conversation; no new conversation opens.
    inbound(app.ctx.engine, now=clock.now(), text="5", provider_id="w-rate")
    drain(app)
    with app.ctx.engine.connect() as conn:
        rows = conn.execute(select(conversations)).all()
    assert len(rows) == 1 and rows[0].satisfaction == 5


def test_unknown_cause_is_refused(app, clock) -> None:  # type: ignore[no-untyped-def]
    conv_id = handed_off(app, clock)
    admin = staff_user(app.ctx.engine, now=clock.now(), role="admin")
    login(app, admin)
    bad = app.client.post(
        f"/inbox/{conv_id}/resolve", data={"cause": "gremlins", "csrf_token": admin["csrf"]}
    )
    assert bad.status_code == 400 and "unknown cause 'gremlins'" in bad.json()["detail"]
    with app.ctx.engine.connect() as conn:
        assert conn.execute(select(conversations.c.status)).scalar_one() == "waiting"


def test_an_agent_reply_to_an_unlinked_sender_goes_back_to_their_number(app, clock) -> None:  # type: ignore[no-untyped-def]
    seed_order(app.ctx.engine, now=clock.now())
    inbound(
        app.ctx.engine,
        now=clock.now(),
        text="I want to speak to a person",
        provider_id="x1",
        sender="+447700900444",
    )
    drain(app)
    with app.ctx.engine.connect() as conn:
        conv_id = conn.execute(select(conversations.c.id)).scalar_one()
    agent = staff_user(app.ctx.engine, now=clock.now(), role="agent")
    login(app, agent)
    page = app.client.get(f"/inbox/{conv_id}").text
    assert 'id="unlinked"' in page and "+447700900444" in page
    app.client.post(f"/inbox/{conv_id}/reply", data={"text": "Hello!", "csrf_token": agent["csrf"]})
    with app.ctx.engine.connect() as conn:
        last = conn.execute(select(messages).where(messages.c.author == "agent")).one()
        queued = conn.execute(
            select(notifications).where(notifications.c.id == last.meta["notification_id"])
        ).one()
    assert (queued.customer_id, queued.conversation_id, queued.to_address) == (None, conv_id, "+447700900444")
    assert (queued.channel, queued.body_text, queued.status) == ("whatsapp", "Hello!", "queued")
