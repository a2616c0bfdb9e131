"""Email bounces: a delivery status notification (RFC 3464) posted to the inbound email webhook marks the
bounced message failed with the reason, falls back to the next channel, and stops further email to the
address. Against a local SMTP server (aiosmtpd) and a local Twilio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_notify import (
    ProviderServer,
    add_customer,
    add_order,
    messages,
    order_placed,
    publish,
    smtp_server,
    twilio_ok,
)

from doorstep.clock import FixedClock
from doorstep.ingest.tables import event_log
from doorstep.notifications.services import send_due
from doorstep.notifications.tables import email_suppressions

TWILIO = {
    "twilio_account_sid": "AC0123456789abcdef",
    "twilio_auth_token": "twilio-token-123",
    "twilio_from_number": "+15005550006",
}
MAIL = {"Content-Type": "message/rfc822", "Authorization": "Bearer mail-secret"}


def _dsn(message_id: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """What a mail server sends back (RFC 3464): the human part, the delivery status, the original headers."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: shop@doorstep.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Mon, 23 Nov 2026 09:00:05 +0000\r\n"
        "Message-ID: <dsn-" + action + "-20261123@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "Your message could not be delivered to one or more recipients.\r\n"
        "--b1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Arrival-Date: Mon, 23 Nov 2026 09:00:01 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; Maya@Example.com\r\n"
        "Original-Recipient: rfc822;maya@example.com\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mail.example.com\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <maya@example.com>:\r\n"
        "    Recipient address rejected: User unknown\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "From: Shop <shop@doorstep.test>\r\n"
        "To: maya@example.com\r\n"
        "Subject: Order #1042 confirmed\r\n"
        f"Message-ID: {message_id}\r\n"
        "\r\n"
        "--b1--\r\n"
    ).encode()


def _placed(app: Any, customer_id: str, clock: FixedClock, external_id: str) -> None:
    order_id = add_order(app.ctx.engine, customer_id, external_id=external_id)
    publish(app.ctx, order_placed(order_id, customer_id, at=clock.now(), external_id=external_id))
    app.drain()


def test_a_bounce_fails_the_message_falls_back_and_stops_email_to_the_address(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with ProviderServer(twilio_ok) as twilio, smtp_server(tmp_path) as (port, received, client_tls):
        settings = make_settings(
            tmp_path,
            sqlite_url,
            twilio_base_url=twilio.url,
            smtp_host="127.0.0.1",
            smtp_port=port,
            inbound_email_secret="mail-secret",
            **TWILIO,
        )
        with running_app(settings, clock) as app:
            app.ctx.services["notification_channels"]["email"].ssl_context = client_tls
            maya = add_customer(app.ctx.engine, channels=["email", "sms"])
            _placed(app, maya, clock, "#1042")
            send_due(app.ctx, clock.now())
            [mail] = received
            [sent] = messages(app.ctx.engine)
            assert (sent.channel, sent.status) == ("email", "sent")

            delayed = app.client.post(
                "/webhooks/email",
                content=_dsn(mail.message["Message-ID"], action="delayed", status="4.4.1"),
                headers=MAIL,
            )
            assert delayed.json() == {"accepted": True, "bounces": 1, "known": 0}
            assert messages(app.ctx.engine)[0].status == "sent"  # the server is still trying

            bounced = app.client.post(
                "/webhooks/email", content=_dsn(mail.message["Message-ID"]), headers=MAIL
            )
            again = app.client.post("/webhooks/email", content=_dsn(mail.message["Message-ID"]), headers=MAIL)

            assert bounced.json() == {"accepted": True, "bounces": 1, "known": 1}
            assert again.status_code == 200
            email, sms = messages(app.ctx.engine)
            assert (email.id, email.status) == (sent.id, "failed")
            assert email.last_error == (
                "bounced: 5.1.1 smtp; 550 5.1.1 <maya@example.com>: Recipient address rejected: User unknown"
            )
            assert (sms.channel, sms.status, sms.fallback_of) == ("sms", "queued", email.id)  # once
            with app.ctx.engine.connect() as conn:
                [suppressed] = conn.execute(select(email_suppressions)).all()
                logged = conn.execute(select(func.count()).select_from(event_log)).scalar_one()
            assert (suppressed.address, suppressed.customer_id, suppressed.notification_id) == (
                "maya@example.com",
                maya,
                sent.id,
            )
            assert logged == 0  # a bounce is not a customer writing to the inbox

            send_due(app.ctx, clock.now())  # the fallback goes out by SMS
            _placed(app, maya, clock, "#1043")
            send_due(app.ctx, clock.now())

            assert len(received) == 1  # nothing more was mailed to the address
            assert len(twilio.requests) == 2
            latest = messages(app.ctx.engine)[-1]
            assert (latest.dedupe_key.split(":")[0], latest.channel, latest.status) == (
                "order_confirmed",
                "sms",
                "sent",
            )


def test_a_bounce_for_an_address_nobody_has_changes_nothing(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, sqlite_url, inbound_email_secret="mail-secret")
    with running_app(settings, clock) as app:
        response = app.client.post("/webhooks/email", content=_dsn("<unknown@doorstep.test>"), headers=MAIL)

        assert response.json() == {"accepted": True, "bounces": 1, "known": 0}
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(email_suppressions)).scalar_one() == 0
