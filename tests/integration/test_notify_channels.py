"""Channels against local servers that speak the providers' protocols: SMTP with STARTTLS (aiosmtpd), Twilio
Messages API, WhatsApp Cloud API, Messenger Send API, signed outbound webhooks; retries, Retry-After,
fallback, and signed callbacks back into the app."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import insert, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_notify import (
    ProviderServer,
    add_customer,
    add_order,
    add_shipment,
    attempts,
    messages,
    messenger_ok,
    order_placed,
    post_meta_signed,
    publish,
    smtp_server,
    twilio_ok,
    whatsapp_inbound_body,
    whatsapp_ok,
    whatsapp_webhook_body,
)

from doorstep.clock import FixedClock
from doorstep.customers.tables import consents, identities
from doorstep.ingest.tables import event_log
from doorstep.notifications.channels import webhook_secret
from doorstep.notifications.services import send_due
from doorstep.notifications.tables import channel_identities
from doorstep.security.signatures import timestamped_signature, twilio_signature
from doorstep.shipments.events import DriverDeparted

BASE = "https://track.example"
TWILIO = {
    "twilio_account_sid": "AC0123456789abcdef",
    "twilio_auth_token": "twilio-token-123",
    "twilio_from_number": "+15005550006",
}


def _placed(app: Any, customer_id: str, clock: FixedClock, external_id: str = "#1042") -> str:
    order_id = add_order(app.ctx.engine, customer_id, external_id=external_id)
    publish(
        app.ctx,
        order_placed(order_id, customer_id, at=clock.now(), external_id=external_id, total="89.90"),
    )
    app.drain()
    return order_id


def test_email_over_starttls_has_both_parts_and_one_click_unsubscribe(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with smtp_server(tmp_path) as (port, received, client_tls):
        settings = make_settings(
            tmp_path,
            sqlite_url,
            public_base_url=BASE,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="starttls",
            email_from="Shop <shop@doorstep.test>",
        )
        with running_app(settings, clock) as app:
            app.ctx.services["notification_channels"]["email"].ssl_context = client_tls
            customer_id = add_customer(app.ctx.engine, channels=["email"])
            _placed(app, customer_id, clock)
            send_due(app.ctx, clock.now())

            [mail] = received
            assert mail.was_tls
            assert mail.rcpt_tos == ["maya@example.com"]
            msg = mail.message
            assert msg["Subject"] == "Order #1042 confirmed"
            assert msg["From"] == "Shop <shop@doorstep.test>"
            plain = msg.get_body(preferencelist=("plain",))
            html = msg.get_body(preferencelist=("html",))
            assert plain is not None and "Order #1042 is confirmed" in plain.get_content()
            assert html is not None and '<a href="https://track.example/t/' in html.get_content()
            unsubscribe = msg["List-Unsubscribe"]
            assert unsubscribe.startswith("<https://track.example/u/") and unsubscribe.endswith(">")
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            [row] = messages(app.ctx.engine)
            assert (row.channel, row.status, row.provider_message_id) == ("email", "sent", msg["Message-ID"])

            # RFC 8058 one-click: a POST with that body, no cookies
            path = urlsplit(unsubscribe.strip("<>")).path
            response = app.client.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 200
            with app.ctx.engine.connect() as conn:
                consent = conn.execute(select(consents).where(consents.c.customer_id == customer_id)).one()
            assert (consent.channel, consent.topic, consent.is_granted) == ("email", "service", False)

            _placed(app, customer_id, clock, external_id="#1043")
            send_due(app.ctx, clock.now())
            assert len(received) == 1  # nothing more was mailed
            assert messages(app.ctx.engine)[-1].suppression_reason == "opted_out"


def test_twilio_sms_has_the_exact_shape_and_signed_callbacks_move_the_status(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with ProviderServer(twilio_ok) as twilio:
        settings = make_settings(
            tmp_path, sqlite_url, public_base_url=BASE, twilio_base_url=twilio.url, **TWILIO
        )
        with running_app(settings, clock) as app:
            customer_id = add_customer(app.ctx.engine, channels=["sms"])
            _placed(app, customer_id, clock)
            send_due(app.ctx, clock.now())

            [request] = twilio.requests
            assert request.method == "POST"
            assert request.path == "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            assert (
                request.headers["authorization"]
                == "Basic " + base64.b64encode(b"AC0123456789abcdef:twilio-token-123").decode()
            )
            form = request.form
            assert set(form) == {"To", "From", "Body", "StatusCallback"}
            assert form["To"] == "+4915112345678" and form["From"] == "+15005550006"
            assert form["StatusCallback"] == f"{BASE}/webhooks/twilio/status"
            assert form["Body"].startswith("Doorstep Demo Shop: thanks Maya! Order #1042 is confirmed.")
            [row] = messages(app.ctx.engine)
            sid = row.provider_message_id
            assert row.status == "sent" and sid.startswith("SM")

            # what Twilio sends back, signed over the public URL and the sorted parameters
            params = {
                "MessageSid": sid,
                "MessageStatus": "delivered",
                "AccountSid": TWILIO["twilio_account_sid"],
                "To": form["To"],
                "From": form["From"],
            }
            forged = app.client.post(
                "/webhooks/twilio/status", data=params, headers={"X-Twilio-Signature": "bm9wZQ=="}
            )
            assert forged.status_code == 403
            assert forged.headers["content-type"] == "application/problem+json"
            assert messages(app.ctx.engine)[0].status == "sent"

            signature = twilio_signature(
                TWILIO["twilio_auth_token"], f"{BASE}/webhooks/twilio/status", params.items()
            )
            ok = app.client.post(
                "/webhooks/twilio/status", data=params, headers={"X-Twilio-Signature": signature}
            )
            assert ok.status_code == 204
            [row] = messages(app.ctx.engine)
            assert row.status == "delivered" and row.delivered_at == clock.now()

            # a late "sent" callback does not move it back
            late = {**params, "MessageStatus": "sent"}
            app.client.post(
                "/webhooks/twilio/status",
                data=late,
                headers={
                    "X-Twilio-Signature": twilio_signature(
                        TWILIO["twilio_auth_token"], f"{BASE}/webhooks/twilio/status", late.items()
                    )
                },
            )
            assert messages(app.ctx.engine, trigger="order_confirmed")[0].status == "delivered"


def test_provider_failing_mid_send_is_retried_then_delivered(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with ProviderServer(twilio_ok) as twilio:
        twilio.then(500, {"code": 20500, "message": "Internal Server Error"})
        settings = make_settings(tmp_path, sqlite_url, twilio_base_url=twilio.url, **TWILIO)
        with running_app(settings, clock) as app:
            customer_id = add_customer(app.ctx.engine, channels=["sms"])
            _placed(app, customer_id, clock)
            send_due(app.ctx, clock.now())

            assert len(twilio.requests) == 2
            assert twilio.requests[0].form == twilio.requests[1].form  # the same message, sent again
            [row] = messages(app.ctx.engine)
            assert (row.status, row.attempts) == ("sent", 2)
            assert [(a.outcome, a.http_status) for a in attempts(app.ctx.engine, row.id)] == [
                ("transient", 500),
                ("sent", 201),
            ]


def test_429_retry_after_is_honoured(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    with ProviderServer(twilio_ok) as twilio:
        twilio.then(429, {"code": 20429, "message": "Too Many Requests"}, **{"Retry-After": "30"})
        settings = make_settings(tmp_path, sqlite_url, twilio_base_url=twilio.url, **TWILIO)
        with running_app(settings, clock) as app:
            customer_id = add_customer(app.ctx.engine, channels=["sms"])
            _placed(app, customer_id, clock)
            start = clock.now()
            send_due(app.ctx, start)
            [row] = messages(app.ctx.engine)
            assert row.status == "queued"
            assert row.scheduled_for == start + dt.timedelta(seconds=30)
            assert attempts(app.ctx.engine, row.id)[0].retry_after_s == 30

            send_due(app.ctx, start + dt.timedelta(seconds=29))
            assert len(twilio.requests) == 1  # not before the provider said

            send_due(app.ctx, start + dt.timedelta(seconds=30))
            assert len(twilio.requests) == 2
            assert messages(app.ctx.engine)[0].status == "sent"


def test_permanent_failure_is_not_retried_and_falls_back_to_the_next_channel(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with ProviderServer(twilio_ok) as twilio, smtp_server(tmp_path) as (port, received, client_tls):
        twilio.then(
            400,
            {
                "code": 21211,
                "message": "The 'To' number +4915112345678 is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
        )
        settings = make_settings(
            tmp_path, sqlite_url, twilio_base_url=twilio.url, smtp_host="127.0.0.1", smtp_port=port, **TWILIO
        )
        with running_app(settings, clock) as app:
            app.ctx.services["notification_channels"]["email"].ssl_context = client_tls
            customer_id = add_customer(app.ctx.engine, channels=["sms", "email"])
            _placed(app, customer_id, clock)
            send_due(app.ctx, clock.now())

            assert len(twilio.requests) == 1  # a permanent error is not retried
            sms, email = messages(app.ctx.engine)
            assert (sms.channel, sms.status, sms.attempts) == ("sms", "failed", 1)
            assert "21211" in sms.last_error
            assert (email.channel, email.status, email.fallback_of) == ("email", "sent", sms.id)
            assert [m.rcpt_tos for m in received] == [["maya@example.com"]]


def _whatsapp_settings(tmp_path: Path, url: str, base: str, db: str) -> Any:
    return make_settings(
        tmp_path,
        db,
        public_base_url=base,
        whatsapp_base_url=url,
        whatsapp_phone_number_id="106540352242922",
        whatsapp_access_token="EAAG-test-token",
        meta_app_secret="meta-app-secret",
        meta_verify_token="verify-me",
    )


def test_whatsapp_cloud_uses_a_template_outside_24h_and_text_inside(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with (
        ProviderServer(whatsapp_ok) as meta,
        running_app(_whatsapp_settings(tmp_path, meta.url, BASE, sqlite_url), clock) as app,
    ):
        customer_id = add_customer(app.ctx.engine, channels=["whatsapp"])
        order_id = _placed(app, customer_id, clock)
        send_due(app.ctx, clock.now())

        [first] = meta.requests
        assert first.path == "/106540352242922/messages"
        assert first.headers["authorization"] == "Bearer EAAG-test-token"
        assert first.headers["content-type"] == "application/json"
        body = first.json
        assert body["messaging_product"] == "whatsapp" and body["to"] == "4915112345678"
        assert body["type"] == "template"
        assert body["template"]["name"] == "order_confirmed"
        assert body["template"]["language"] == {"code": "en"}
        params = body["template"]["components"][0]["parameters"]
        assert [p["text"] for p in params[:2]] == ["Maya", "#1042"]

        # the customer writes: the 24-hour window opens
        inbound = whatsapp_inbound_body(
            wa_id="4915112345678", wamid="wamid.IN1", text="where is my parcel?", at=clock.now()
        )
        raw = orjson.dumps(inbound)
        forged = app.client.post(
            "/webhooks/whatsapp", content=raw, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64}
        )
        assert forged.status_code == 403
        ok = post_meta_signed(app.client, "/webhooks/whatsapp", inbound)
        assert ok.status_code == 200
        with app.ctx.engine.connect() as conn:
            [entry] = conn.execute(select(event_log).where(event_log.c.source == "inbound_message")).all()
        assert entry.message_id == "whatsapp:wamid.IN1"
        assert entry.partition_key == "whatsapp:+4915112345678"
        assert entry.payload["from"] == "+4915112345678" and entry.payload["text"] == "where is my parcel?"

        shipment_id = add_shipment(app.ctx.engine, order_id, status="OutForDelivery")
        publish(
            app.ctx,
            DriverDeparted(
                occurred_at=clock.now(),
                shipment_id=shipment_id,
                order_id=order_id,
                customer_id=customer_id,
                eta_from=clock.now() + dt.timedelta(minutes=30),
                eta_to=clock.now() + dt.timedelta(hours=1),
            ),
        )
        app.drain()
        send_due(app.ctx, clock.now())
        later = [r.json for r in meta.requests[1:]]  # the driver message, and any reply the assistant queued
        assert later and all(body["type"] == "text" for body in later)  # inside the 24-hour window
        assert [b["text"]["body"][:45] for b in later if "driver is on the way" in b["text"]["body"]] == [
            "Doorstep Demo Shop: your driver is on the way"
        ]

        # statuses come back signed; read implies delivered
        wamid = messages(app.ctx.engine, trigger="order_confirmed")[0].provider_message_id
        statuses = whatsapp_webhook_body(
            {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1"},
                "statuses": [
                    {
                        "id": wamid,
                        "status": "delivered",
                        "timestamp": "1795424400",
                        "recipient_id": "4915112345678",
                    },
                    {
                        "id": wamid,
                        "status": "read",
                        "timestamp": "1795424460",
                        "recipient_id": "4915112345678",
                    },
                ],
            }
        )
        post_meta_signed(app.client, "/webhooks/whatsapp", statuses)
        row = messages(app.ctx.engine, trigger="order_confirmed")[0]
        assert row.status == "read" and row.read_at is not None


def test_whatsapp_verification_handshake(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    with running_app(_whatsapp_settings(tmp_path, "http://127.0.0.1:9", BASE, sqlite_url), clock) as app:
        ok = app.client.get(
            "/webhooks/whatsapp",
            params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"},
        )
        assert (ok.status_code, ok.text) == (200, "1158201444")
        wrong = app.client.get(
            "/webhooks/messenger",
            params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
        )
        assert wrong.status_code == 403
        assert wrong.headers["content-type"] == "application/problem+json"


def test_messenger_send_api_shape_and_inbound_dedupe_on_mid(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with ProviderServer(messenger_ok) as meta:
        settings = make_settings(
            tmp_path,
            sqlite_url,
            messenger_base_url=meta.url,
            messenger_page_access_token="PAGE-TOKEN",
            meta_app_secret="meta-app-secret",
        )
        with running_app(settings, clock) as app:
            customer_id = add_customer(app.ctx.engine, channels=["messenger"])
            with app.ctx.engine.begin() as conn:
                conn.execute(
                    insert(identities).values(
                        customer_id=customer_id,
                        kind="messenger",
                        value="6587329014",
                        first_seen_at=clock.now(),
                    )
                )
            event = {
                "object": "page",
                "entry": [
                    {
                        "id": "PAGE1",
                        "time": 1795424400000,
                        "messaging": [
                            {
                                "sender": {"id": "6587329014"},
                                "recipient": {"id": "PAGE1"},
                                "timestamp": int(clock.now().timestamp() * 1000),
                                "message": {"mid": "m_AbC123", "text": "hi, any news?"},
                            }
                        ],
                    }
                ],
            }
            for _ in range(2):  # Meta redelivers
                assert post_meta_signed(app.client, "/webhooks/messenger", event).status_code == 200
            with app.ctx.engine.connect() as conn:
                entries = conn.execute(select(event_log).where(event_log.c.source == "inbound_message")).all()
                [ident] = conn.execute(select(channel_identities)).all()
            assert [e.message_id for e in entries] == ["messenger:m_AbC123"]
            assert (ident.channel, ident.address, ident.last_inbound_at) == (
                "messenger",
                "6587329014",
                clock.now(),
            )

            _placed(app, customer_id, clock)
            send_due(app.ctx, clock.now())
            [confirmed] = messages(app.ctx.engine, trigger="order_confirmed")
            [request] = [r for r in meta.requests if r.json["message"]["text"] == confirmed.body_text]
            assert request.path == "/me/messages"
            assert request.query == {"access_token": ["PAGE-TOKEN"]}
            body = request.json
            assert body["recipient"] == {"id": "6587329014"}
            assert body["messaging_type"] == "UPDATE"  # inside the 24-hour window
            assert "tag" not in body
            assert body["message"]["text"].startswith("Doorstep Demo Shop: thanks Maya!")

            mid = confirmed.provider_message_id
            delivery = {
                "object": "page",
                "entry": [
                    {
                        "id": "PAGE1",
                        "time": 1,
                        "messaging": [
                            {
                                "sender": {"id": "6587329014"},
                                "recipient": {"id": "PAGE1"},
                                "delivery": {"mids": [mid], "watermark": 1795424400000},
                            }
                        ],
                    }
                ],
            }
            post_meta_signed(app.client, "/webhooks/messenger", delivery)
            assert messages(app.ctx.engine, trigger="order_confirmed")[0].status == "delivered"


def test_outbound_webhook_is_signed_over_timestamp_and_body_and_retried(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with ProviderServer(
        lambda rec: __import__("tests.support_notify", fromlist=["Reply"]).Reply(200, {"ok": True})
    ) as hook:
        hook.then(503, {"error": "busy"})
        settings = make_settings(tmp_path, sqlite_url, **TWILIO, twilio_base_url="http://127.0.0.1:9")
        with running_app(settings, clock) as app:
            customer_id = add_customer(app.ctx.engine, channels=["webhook"])
            with app.ctx.engine.begin() as conn:
                conn.execute(
                    insert(channel_identities).values(
                        customer_id=customer_id,
                        channel="webhook",
                        address=f"{hook.url}/doorstep",
                        created_at=clock.now(),
                        updated_at=clock.now(),
                    )
                )
            _placed(app, customer_id, clock)
            send_due(app.ctx, clock.now())

            assert len(hook.requests) == 2
            request = hook.requests[-1]
            assert request.path == "/doorstep"
            parts = dict(p.split("=", 1) for p in request.headers["doorstep-signature"].split(","))
            assert parts["t"] == str(int(clock.now().timestamp()))
            assert parts["v1"] == timestamped_signature(
                webhook_secret(settings), int(parts["t"]), request.body
            )
            assert request.json["trigger"] == "order_confirmed" and request.json["customer_id"] == customer_id
            assert messages(app.ctx.engine)[0].status == "sent"
