"""Someone no profile holds writes in on a messaging channel: the assistant's and the agents' replies go back to
the number they wrote from, over the provider's real protocol; STOP from such a number is kept by address and
honoured (also once a profile later holds the number) until START; purging the stranger's conversation erases
the replies too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_notify import (
    ProviderServer,
    add_customer,
    add_order,
    messages,
    order_placed,
    post_meta_signed,
    publish,
    twilio_ok,
    whatsapp_inbound_body,
    whatsapp_ok,
)

from doorstep.clock import FixedClock
from doorstep.conversations.handlers import purge_unlinked
from doorstep.conversations.tables import conversations
from doorstep.notifications.services import send_due
from doorstep.notifications.tables import address_optouts, delivery_attempts, notifications
from doorstep.security.signatures import twilio_signature

BASE = "https://track.example"
STRANGER = "+447700900555"
TWILIO = {
    "twilio_account_sid": "AC0123456789abcdef",
    "twilio_auth_token": "twilio-token-123",
    "twilio_from_number": "+15005550006",
}


def _whatsapp_inbound(app: Any, clock: FixedClock, *, wamid: str, text: str) -> None:
    body = whatsapp_inbound_body(wa_id=STRANGER[1:], wamid=wamid, text=text, at=clock.now(), name="Sam")
    assert post_meta_signed(app.client, "/webhooks/whatsapp", body).status_code == 200


def _sms_inbound(app: Any, *, sid: str, text: str) -> None:
    params = {
        "MessageSid": sid,
        "AccountSid": TWILIO["twilio_account_sid"],
        "From": STRANGER,
        "To": "+15005550006",
    }
    params["Body"] = text
    signature = twilio_signature(TWILIO["twilio_auth_token"], f"{BASE}/webhooks/twilio", params.items())
    response = app.client.post("/webhooks/twilio", data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200


def test_a_reply_to_a_stranger_goes_back_to_their_number_and_leaves_with_their_conversation(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with ProviderServer(whatsapp_ok) as meta:
        settings = make_settings(
            tmp_path,
            database_url,
            public_base_url=BASE,
            whatsapp_base_url=meta.url,
            whatsapp_phone_number_id="106540352242922",
            whatsapp_access_token="EAAG-test-token",
            meta_app_secret="meta-app-secret",
            meta_verify_token="verify-me",
        )
        with running_app(settings, clock) as app:
            _whatsapp_inbound(app, clock, wamid="wamid.S1", text="where is my parcel?")
            app.drain()
            clock.advance(minutes=1)
            send_due(app.ctx, clock.now())

            with app.ctx.engine.connect() as conn:
                conv = conn.execute(select(conversations)).one()
            assert conv.customer_id is None and conv.channel_address == STRANGER
            replies = messages(app.ctx.engine, trigger="conversation_reply")
            assert replies, "the assistant answered"
            assert {(r.customer_id, r.conversation_id, r.status) for r in replies} == {
                (None, conv.id, "sent")
            }
            # the WhatsApp Cloud API got the replies as free text, to the number that wrote
            assert len(meta.requests) == len(replies)
            for request, reply in zip(meta.requests, replies, strict=True):
                assert request.path == "/106540352242922/messages"
                body = request.json
                assert (body["messaging_product"], body["to"], body["type"]) == (
                    "whatsapp",
                    STRANGER[1:],
                    "text",
                )
                assert body["text"]["body"] == reply.body_text

            clock.advance(days=29)
            with app.ctx.uow() as uow:
                assert purge_unlinked(uow, older_than=dt.timedelta(days=30), now=clock.now()) == 0
                uow.commit()
            # purged after 30 idle days: the stranger's replies (and their delivery attempts) go with it
            clock.advance(days=2)
            with app.ctx.uow() as uow:
                assert purge_unlinked(uow, older_than=dt.timedelta(days=30), now=clock.now()) == 1
                uow.commit()
            with app.ctx.engine.connect() as conn:
                assert conn.execute(select(notifications)).all() == []
                assert conn.execute(select(delivery_attempts)).all() == []


def test_stop_from_a_stranger_is_kept_by_number_until_start(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with ProviderServer(twilio_ok) as twilio:
        settings = make_settings(
            tmp_path, database_url, public_base_url=BASE, twilio_base_url=twilio.url, **TWILIO
        )
        with running_app(settings, clock) as app:
            _sms_inbound(app, sid="SM1", text="STOP")
            app.drain()
            _sms_inbound(app, sid="SM2", text="where is my order?")
            app.drain()
            send_due(app.ctx, clock.now())

            assert twilio.requests == []  # nothing goes to a number that texted STOP
            replies = messages(app.ctx.engine, trigger="conversation_reply")
            assert replies and {(r.status, r.suppression_reason) for r in replies} == {
                ("suppressed", "opted_out")
            }
            with app.ctx.engine.connect() as conn:
                assert [(o.channel, o.address, o.keyword) for o in conn.execute(select(address_optouts))] == [
                    ("sms", STRANGER, "STOP")
                ]

            # the number later turns up on a profile: its journeys do not text it either
            customer_id = add_customer(app.ctx.engine, phone=STRANGER, channels=["sms"])
            order_id = add_order(app.ctx.engine, customer_id, external_id="#77")
            publish(
                app.ctx, order_placed(order_id, customer_id, at=clock.now(), external_id="#77", total="5.00")
            )
            app.drain()
            send_due(app.ctx, clock.now())
            assert twilio.requests == []
            [confirmation] = messages(app.ctx.engine, trigger="order_confirmed")
            assert confirmation.status == "suppressed"

            # START gives the number back, to the journeys and to the replies
            _sms_inbound(app, sid="SM3", text="START")
            app.drain()
            with app.ctx.engine.connect() as conn:
                assert conn.execute(select(address_optouts)).all() == []
            order_2 = add_order(app.ctx.engine, customer_id, external_id="#78")
            publish(
                app.ctx, order_placed(order_2, customer_id, at=clock.now(), external_id="#78", total="6.00")
            )
            app.drain()
            send_due(app.ctx, clock.now())
            sent_to = {r.form["To"] for r in twilio.requests}
            bodies = [r.form["Body"] for r in twilio.requests]
            assert sent_to == {STRANGER}
            assert any("#78" in b for b in bodies), bodies
