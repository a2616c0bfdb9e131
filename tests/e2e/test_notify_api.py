"""Notifications through the HTTP API: inbound webhooks (Twilio STOP/START, inbound email), journeys GET/PUT
with validation, template preview (sandboxed), staff pages, the unsubscribe page."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import secret_key, staff_user
from tests.helpers import running_app
from tests.support_notify import add_customer, add_order, messages, order_placed, publish

from doorstep.bus.tables import outbox
from doorstep.clock import FixedClock
from doorstep.customers.tables import consents
from doorstep.ingest.tables import event_log
from doorstep.notifications.services import send_due
from doorstep.notifications.templates import unsubscribe_url
from doorstep.security.signatures import twilio_signature

BASE = "https://track.example"
TWILIO = {
    "twilio_account_sid": "AC0123456789abcdef",
    "twilio_auth_token": "twilio-token-123",
    "twilio_from_number": "+15005550006",
    "twilio_base_url": "http://127.0.0.1:9",
}


def _twilio_post(app, path: str, params: dict[str, str], *, token: str = "twilio-token-123"):  # type: ignore[no-untyped-def]
    signature = twilio_signature(token, f"{BASE}{path}", params.items())
    return app.client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def test_twilio_inbound_stop_withdraws_consent_then_logs_the_message(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, database_url, public_base_url=BASE, **TWILIO), clock) as app:
        customer_id = add_customer(app.ctx.engine, channels=["sms"])
        app.ctx.bus.subscribe("ConsentChanged", "test.consent_listener", lambda envelope, ctx: None)
        params = {
            "MessageSid": "SM11111111111111111111111111111111",
            "AccountSid": "AC0123456789abcdef",
            "From": "+4915112345678",
            "To": "+15005550006",
            "Body": "STOP",
            "NumMedia": "0",
        }

        forged = app.client.post("/webhooks/twilio", data=params, headers={"X-Twilio-Signature": "forged"})
        assert forged.status_code == 403
        assert forged.headers["content-type"] == "application/problem+json"
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(event_log)).all() == []
            assert conn.execute(select(consents)).all() == []

        response = _twilio_post(app, "/webhooks/twilio", params)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        with app.ctx.engine.connect() as conn:
            granted = {(c.channel, c.topic): c.is_granted for c in conn.execute(select(consents))}
            [entry] = conn.execute(select(event_log)).all()
            events = [r.event_type for r in conn.execute(select(outbox.c.event_type))]
        assert granted == {("sms", "service"): False, ("sms", "marketing"): False}
        assert (
            events.count("ConsentChanged") == 2
        )  # one per topic, for whoever listens (the customers domain)
        assert (entry.source, entry.type, entry.message_id) == (
            "inbound_message",
            "message",
            "sms:SM11111111111111111111111111111111",
        )
        assert entry.partition_key == "sms:+4915112345678"
        payload = entry.payload
        assert {k: payload[k] for k in ("channel", "from", "to", "text", "provider_message_id")} == {
            "channel": "sms",
            "from": "+4915112345678",
            "to": "+15005550006",
            "text": "STOP",
            "provider_message_id": "SM11111111111111111111111111111111",
        }
        assert payload["raw"]["NumMedia"] == "0"

        # opted out: the next journey message is suppressed, not sent
        order_id = add_order(app.ctx.engine, customer_id)
        publish(
            app.ctx,
            order_placed(order_id, customer_id, at=clock.now(), external_id="#1", total="1.00"),
        )
        app.drain()
        send_due(app.ctx, clock.now())
        assert [
            (m.status, m.suppression_reason) for m in messages(app.ctx.engine, trigger="order_confirmed")
        ] == [("suppressed", "opted_out")]
        # nor does a conversational reply to the STOP go out on SMS (whatever the assistant queued)
        replies = messages(app.ctx.engine, trigger="conversation_reply")
        assert all((m.status, m.suppression_reason) == ("suppressed", "opted_out") for m in replies)

        # START gives it back
        _twilio_post(app, "/webhooks/twilio", {**params, "MessageSid": "SM2", "Body": "start"})
        with app.ctx.engine.connect() as conn:
            assert {c.is_granted for c in conn.execute(select(consents))} == {True}


def test_whatsapp_via_twilio_is_recognised_by_prefix(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url, public_base_url=BASE, **TWILIO), clock) as app:
        params = {
            "MessageSid": "SM3",
            "From": "whatsapp:+4915199999999",
            "To": "whatsapp:+15005550006",
            "Body": "hello",
        }
        assert _twilio_post(app, "/webhooks/twilio", params).status_code == 200
        with app.ctx.engine.connect() as conn:
            [entry] = conn.execute(select(event_log)).all()
        assert entry.message_id == "whatsapp:SM3"
        assert entry.payload["from"] == "+4915199999999" and entry.payload["channel"] == "whatsapp"


RAW_EMAIL = b"""From: Maya Schmidt <Maya@Example.com>
To: support@shop.example
Subject: Re: Order #1042 confirmed
Message-ID: <CAF123@mail.example.com>
Date: Mon, 23 Nov 2026 08:30:00 +0000
Content-Type: text/plain; charset=utf-8

Can I change the address?

On Mon, 23 Nov 2026 Shop wrote:
> Order #1042 is confirmed
"""


def test_inbound_email_raw_and_json_with_secret(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    settings = make_settings(tmp_path, sqlite_url, inbound_email_secret="mail-secret")
    with running_app(settings, clock) as app:
        refused = app.client.post(
            "/webhooks/email", content=RAW_EMAIL, headers={"Content-Type": "message/rfc822"}
        )
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"

        ok = app.client.post(
            "/webhooks/email",
            content=RAW_EMAIL,
            headers={"Content-Type": "message/rfc822", "Authorization": "Bearer mail-secret"},
        )
        assert ok.status_code == 200 and ok.json() == {"accepted": True, "duplicate": False}

        postmark = {
            "From": "lee@example.com",
            "To": "support@shop.example",
            "Subject": "Hello",
            "TextBody": "Is my refund done?",
            "MessageID": "pm-73e6d360",
        }
        ok = app.client.post(
            "/webhooks/email?secret=mail-secret",
            content=orjson.dumps(postmark),
            headers={"Content-Type": "application/json"},
        )
        assert ok.status_code == 200
        with app.ctx.engine.connect() as conn:
            rows = conn.execute(select(event_log).order_by(event_log.c.id)).all()
        assert [r.message_id for r in rows] == ["email:CAF123@mail.example.com", "email:pm-73e6d360"]
        first = rows[0].payload
        assert (first["from"], first["subject"], first["text"]) == (
            "maya@example.com",
            "Re: Order #1042 confirmed",
            "Can I change the address?",
        )
        assert rows[0].partition_key == "email:maya@example.com"
        assert rows[1].payload["text"] == "Is my refund done?"


def test_journeys_api_validates_and_changes_behaviour(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        admin = {"Authorization": f"Bearer {secret_key(app.ctx.engine, now=clock.now(), scopes=['admin'])}"}
        reader = {
            "Authorization": f"Bearer {secret_key(app.ctx.engine, now=clock.now(), scopes=['orders:read'])}"
        }

        assert app.client.get("/api/v1/journeys").status_code == 401
        assert app.client.get("/api/v1/journeys", headers=reader).status_code == 403
        current = app.client.get("/api/v1/journeys", headers=admin)
        assert current.status_code == 200
        body = current.json()
        assert body["version"] == 0
        triggers = [r["trigger"] for r in body["definition"]["rules"]]
        assert {
            "order_confirmed",
            "predicted_late",
            "failed_attempt",
            "pickup_reminder",
            "survey",
            "delivery_changed",
        } <= set(triggers)

        bad = {
            "definition": {
                "rules": [
                    {"trigger": "late", "on": "ShipmentPredictedLate", "when": {"delay_minutes": {"gt": 4}}}
                ]
            }
        }
        response = app.client.put("/api/v1/journeys", json=bad, headers=admin)
        assert response.status_code == 422
        assert response.json()["field"] == "rules[0].when.delay_minutes"
        assert "ShipmentPredictedLate has no field 'delay_minutes'" in response.json()["detail"]

        bad_yaml = "rules:\n  - trigger: x\n    on: OrderPlaced\n    delay: {weeks: 1}\n"
        response = app.client.put(
            "/api/v1/journeys", content=bad_yaml, headers={**admin, "Content-Type": "application/yaml"}
        )
        assert response.status_code == 422 and response.json()["field"] == "rules[0].delay"

        source = body["source"].replace(
            "  - trigger: order_confirmed\n    on: OrderPlaced\n",
            "  - trigger: order_confirmed\n    on: OrderPlaced\n    enabled: false\n",
        )
        saved = app.client.put("/api/v1/journeys", json={"source": source}, headers=admin)
        assert saved.status_code == 200 and saved.json()["version"] == 1

        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id)
        publish(
            app.ctx,
            order_placed(order_id, customer_id, at=clock.now(), external_id="#9", total="1.00"),
        )
        app.drain()
        assert messages(app.ctx.engine) == []  # the rule is off now


def test_template_preview_in_german_and_the_sandbox(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url, public_base_url=BASE), clock) as app:
        headers = {
            "Authorization": f"Bearer {secret_key(app.ctx.engine, now=clock.now(), scopes=['notifications:manage'])}"
        }
        response = app.client.post(
            "/api/v1/templates/preview",
            json={"trigger": "predicted_late", "channel": "email", "locale": "de-DE"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        preview = response.json()
        assert preview["locale"] == "de"
        assert preview["subject"] == "Bestellung #1042 verspätet sich: jetzt Fr. 27.11., 09:00–13:00"
        assert "Neues Zeitfenster" in preview["text"] and f"{BASE}/t/" in preview["text"]
        assert preview["html"].startswith("<!doctype html>") and "Abmelden" in preview["html"]

        sms = app.client.post(
            "/api/v1/templates/preview", json={"trigger": "failed_attempt", "channel": "sms"}, headers=headers
        ).json()
        assert sms["html"] is None and "?action=rebook" in sms["text"]

        escaped = app.client.post(
            "/api/v1/templates/preview",
            headers=headers,
            json={
                "trigger": "x",
                "channel": "email",
                "template": {"subject": "s", "text": "t", "html": "<p>{{ customer.name }}{{ '<b>' }}</p>"},
            },
        ).json()
        assert "&lt;b&gt;" in escaped["html"]

        attack = app.client.post(
            "/api/v1/templates/preview",
            headers=headers,
            json={
                "trigger": "x",
                "channel": "sms",
                "template": {"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
            },
        )
        assert attack.status_code == 422
        assert attack.headers["content-type"] == "application/problem+json"


def test_staff_pages_and_unsubscribe_page(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    settings = make_settings(tmp_path, sqlite_url, public_base_url=BASE)
    with running_app(settings, clock) as app:
        assert app.client.get("/messages", follow_redirects=False).status_code == 303
        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id, external_id="#7777")
        publish(
            app.ctx,
            order_placed(order_id, customer_id, at=clock.now(), external_id="#7777", total="1.00"),
        )
        app.drain()
        send_due(app.ctx, clock.now())

        user = staff_user(app.ctx.engine, now=clock.now(), role="agent")
        app.client.cookies.set("doorstep_session", user["session"])
        from doorstep.security.sessions import SESSION_COOKIE

        app.client.cookies.clear()
        app.client.cookies.set(SESSION_COOKIE, user["session"])
        page = app.client.get("/messages")
        assert page.status_code == 200
        assert "order_confirmed" in page.text and "#7777" in page.text and "outbox" in page.text
        journeys = app.client.get("/journeys")
        assert journeys.status_code == 200 and "predicted_late" in journeys.text
        assert "Save journey" not in journeys.text  # agents see, admins edit
        app.client.cookies.clear()

        url = unsubscribe_url(settings, customer_id=customer_id, channel="email", topic="marketing")
        path = url.removeprefix(BASE)
        page = app.client.get(path)
        assert page.status_code == 200 and "news and offers" in page.text
        assert app.client.get(path[:-3] + "xyz").status_code == 403
        assert app.client.post(path).status_code == 200
        with app.ctx.engine.connect() as conn:
            [consent] = conn.execute(select(consents)).all()
        assert (consent.channel, consent.topic, consent.is_granted) == ("email", "marketing", False)
