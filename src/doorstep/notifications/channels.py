"""Channel adapters: each speaks its provider's real protocol and reports a SendOutcome; none touches the
database. Base URLs and credentials come from settings, transports and TLS contexts are injectable, so tests
point them at local servers.

- email: SMTP (STARTTLS or implicit TLS) with RFC 8058 one-click unsubscribe headers
- sms, whatsapp (Twilio): POST /2010-04-01/Accounts/{sid}/Messages.json, form-encoded, basic auth
- whatsapp (Cloud API): POST /{phone-number-id}/messages, bearer token, text inside 24 h, templates outside
- messenger: Send API POST /me/messages?access_token=..., recipient.id (PSID) and messaging_type
- webhook: POST JSON to any URL, signed "t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<body>'>"
- outbox: keeps the rendered message in Doorstep (the notifications row) and the /messages page shows it
- chat: conversation replies in the web chat, which shows them itself
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import httpx
import orjson

from doorstep.notifications.model import SendOutcome, classify_http
from doorstep.security.signatures import timestamped_signature
from doorstep.settings import Settings

MESSENGER_TAG = "POST_PURCHASE_UPDATE"  # Meta's tag for order updates outside the 24 h standard window
MESSENGER_MAX_CHARS = 2000  # the Send API's text limit
WHATSAPP_MAX_CHARS = 4096
SESSION_WINDOW_S = 24 * 3600  # WhatsApp and Messenger: free-form only within 24 h of the customer's message


@dataclass
class OutgoingMessage:
    notification_id: str
    channel: str
    to: str
    text: str
    subject: str = ""
    html: str | None = None
    locale: str = "en"
    trigger: str = ""
    topic: str = "service"
    customer_id: str = ""
    order_id: str | None = None
    unsubscribe_url: str | None = None
    whatsapp_template: dict[str, Any] | None = None
    is_in_session: bool = False  # the customer wrote on this channel within the last 24 h
    is_reply: bool = False
    created_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    name: str

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome: ...


def _network_failure(exc: Exception) -> SendOutcome:
    return SendOutcome(is_sent=False, is_transient=True, error=f"{type(exc).__name__}: {exc}")


class HttpChannel:
    """Shared plumbing: one httpx client with the outbound timeout, errors translated once into outcomes."""

    name = "http"

    def __init__(self, settings: Settings, *, base_url: str, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=settings.outbound_timeout_s, transport=transport
        )

    def _post(
        self, url: str, *, now: datetime, **kwargs: Any
    ) -> tuple[httpx.Response | None, SendOutcome | None]:
        try:
            response = self.client.post(url, **kwargs)
        except httpx.TimeoutException as exc:
            return None, _network_failure(exc)
        except httpx.TransportError as exc:
            return None, _network_failure(exc)
        if response.status_code >= 300:
            return response, classify_http(
                response.status_code,
                retry_after=response.headers.get("retry-after"),
                body=response.text,
                now=now,
            )
        return response, None

    def close(self) -> None:
        self.client.close()


class OutboxChannel:
    """Keeps the message in Doorstep only: the notifications row holds the rendered text and the /messages
    page shows it. What `make run` uses when no provider is set up."""

    name = "outbox"
    is_local = True  # no I/O: the sender calls it inline, without the timeout thread

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        return SendOutcome(is_sent=True, provider_message_id=f"outbox:{message.notification_id}")


class ChatChannel(OutboxChannel):
    """Replies in the web chat: the conversation itself shows them (the assistant's widget polls it), so
    handing over is recording."""

    name = "chat"

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        return SendOutcome(is_sent=True, provider_message_id=f"chat:{message.notification_id}")


class SmtpChannel:
    name = "email"

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.ssl_context = ssl_context  # None: the system's trust store

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.settings.email_from
        mail["To"] = message.to
        mail["Subject"] = message.subject or self.settings.brand_name
        mail["Date"] = formatdate(localtime=False)
        domain = self.settings.email_from.rsplit("@", 1)[-1].strip(">") or "doorstep.local"
        mail["Message-ID"] = make_msgid(idstring=message.notification_id.replace("-", ""), domain=domain)
        mail["X-Doorstep-Notification"] = message.notification_id
        if message.unsubscribe_url:
            # RFC 8058: a POST to this URL with body "List-Unsubscribe=One-Click" unsubscribes, no page needed
            mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        s = self.settings
        mail = self.build(message)
        context = self.ssl_context or ssl.create_default_context()
        try:
            if s.smtp_security == "tls":
                server: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=s.outbound_timeout_s, context=context
                )
            else:
                server = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.outbound_timeout_s)
            with server:
                server.ehlo()
                if s.smtp_security == "starttls":
                    server.starttls(context=context)
                    server.ehlo()
                if s.smtp_username:
                    server.login(s.smtp_username, s.smtp_password)
                server.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            is_transient = all(400 <= c < 500 for c in codes)
            return SendOutcome(
                is_sent=False,
                is_transient=is_transient,
                http_status=codes[0] if codes else None,
                error=f"recipient refused: {exc.recipients}",
            )
        except smtplib.SMTPResponseException as exc:
            return SendOutcome(
                is_sent=False,
                is_transient=400 <= exc.smtp_code < 500,
                http_status=exc.smtp_code,
                error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
            )
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            return _network_failure(exc)
        return SendOutcome(is_sent=True, provider_message_id=str(mail["Message-ID"]))


class TwilioChannel(HttpChannel):
    """SMS, or WhatsApp through Twilio (numbers prefixed whatsapp:)."""

    def __init__(
        self, settings: Settings, *, name: str = "sms", transport: httpx.BaseTransport | None = None
    ):
        super().__init__(settings, base_url=settings.twilio_base_url, transport=transport)
        self.name = name

    def form(self, message: OutgoingMessage) -> dict[str, str]:
        s = self.settings
        to = message.to
        data: dict[str, str] = {}
        if self.name == "whatsapp":
            to = to if to.startswith("whatsapp:") else f"whatsapp:{to}"
            sender = s.twilio_whatsapp_from
            data["From"] = sender if sender.startswith("whatsapp:") else f"whatsapp:{sender}"
        elif s.twilio_messaging_service_sid:
            data["MessagingServiceSid"] = s.twilio_messaging_service_sid
        else:
            data["From"] = s.twilio_from_number
        data["To"] = to
        data["Body"] = message.text
        data["StatusCallback"] = f"{s.public_base_url.rstrip('/')}/webhooks/twilio/status"
        return data

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        s = self.settings
        response, failure = self._post(
            f"/2010-04-01/Accounts/{s.twilio_account_sid}/Messages.json",
            data=self.form(message),
            auth=(s.twilio_account_sid, s.twilio_auth_token),
            now=now,
        )
        if failure is not None:
            return failure
        assert response is not None
        body = response.json()
        if body.get("status") == "failed" or body.get("error_code"):
            return SendOutcome(
                is_sent=False,
                http_status=response.status_code,
                error=f"Twilio error {body.get('error_code')}: {body.get('error_message')}",
            )
        return SendOutcome(
            is_sent=True, provider_message_id=body.get("sid"), http_status=response.status_code
        )


class WhatsAppCloudChannel(HttpChannel):
    name = "whatsapp"

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        super().__init__(settings, base_url=settings.whatsapp_base_url, transport=transport)

    def payload(self, message: OutgoingMessage) -> dict[str, Any] | None:
        to = message.to.removeprefix("whatsapp:").lstrip("+")
        if message.is_in_session or message.is_reply:
            return {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"preview_url": True, "body": message.text[:WHATSAPP_MAX_CHARS]},
            }
        template = message.whatsapp_template
        if not template:
            return None
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {
                "name": template["name"],
                "language": {"code": template.get("language", message.locale)},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": p} for p in template.get("params", [])],
                    }
                ],
            },
        }

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        payload = self.payload(message)
        if payload is None:
            return SendOutcome(
                is_sent=False,
                error=f"outside WhatsApp's 24 h window and {message.trigger!r} has no approved template",
            )
        response, failure = self._post(
            f"/{self.settings.whatsapp_phone_number_id}/messages",
            json=payload,
            headers={"Authorization": f"Bearer {self.settings.whatsapp_access_token}"},
            now=now,
        )
        if failure is not None:
            return failure
        assert response is not None
        messages = response.json().get("messages") or [{}]
        return SendOutcome(
            is_sent=True, provider_message_id=messages[0].get("id"), http_status=response.status_code
        )


class MessengerChannel(HttpChannel):
    name = "messenger"

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        super().__init__(settings, base_url=settings.messenger_base_url, transport=transport)

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "recipient": {"id": message.to},
            "message": {"text": message.text[:MESSENGER_MAX_CHARS]},
        }
        if message.is_reply:
            body["messaging_type"] = "RESPONSE"
        elif message.is_in_session:
            body["messaging_type"] = "UPDATE"
        else:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = MESSENGER_TAG
        return body

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        response, failure = self._post(
            "/me/messages",
            params={"access_token": self.settings.messenger_page_access_token},
            json=self.payload(message),
            now=now,
        )
        if failure is not None:
            return failure
        assert response is not None
        return SendOutcome(
            is_sent=True,
            provider_message_id=response.json().get("message_id"),
            http_status=response.status_code,
        )


class WebhookChannel(HttpChannel):
    """Posts the rendered message to a URL the customer's integration gave us (address = URL)."""

    name = "webhook"

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        super().__init__(settings, base_url="", transport=transport)

    @property
    def secret(self) -> str:
        return webhook_secret(self.settings)

    def body(self, message: OutgoingMessage) -> bytes:
        return orjson.dumps(
            {
                "id": message.notification_id,
                "type": "notification",
                "trigger": message.trigger,
                "topic": message.topic,
                "customer_id": message.customer_id,
                "order_id": message.order_id,
                "locale": message.locale,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "created_at": message.created_at.isoformat() if message.created_at else None,
            }
        )

    def send(self, message: OutgoingMessage, *, now: datetime) -> SendOutcome:
        body = self.body(message)
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "Doorstep-Signature": f"t={timestamp},v1={timestamped_signature(self.secret, timestamp, body)}",
            "Doorstep-Delivery": message.notification_id,
        }
        response, failure = self._post(message.to, content=body, headers=headers, now=now)
        if failure is not None:
            return failure
        return SendOutcome(
            is_sent=True,
            provider_message_id=f"webhook:{message.notification_id}",
            http_status=response.status_code if response is not None else None,
        )


def webhook_secret(settings: Settings) -> str:
    """The key receivers verify outbound webhooks with: derived from the service secret, stable across restarts."""
    return hmac.new(
        settings.secret_key.encode(), b"doorstep.notifications.webhook", hashlib.sha256
    ).hexdigest()


def provider_configured(settings: Settings) -> dict[str, bool]:
    twilio = bool(settings.twilio_account_sid and settings.twilio_auth_token)
    return {
        "email": bool(settings.smtp_host),
        "sms": twilio and bool(settings.twilio_from_number or settings.twilio_messaging_service_sid),
        "whatsapp": bool(settings.whatsapp_phone_number_id and settings.whatsapp_access_token)
        or (twilio and bool(settings.twilio_whatsapp_from)),
        "messenger": bool(settings.messenger_page_access_token),
    }


def build_channels(settings: Settings, *, transport: httpx.BaseTransport | None = None) -> dict[str, Channel]:
    """The adapters for what is configured; outbox and webhook are always there."""
    configured = provider_configured(settings)
    channels: dict[str, Channel] = {
        "outbox": OutboxChannel(),
        "chat": ChatChannel(),
        "webhook": WebhookChannel(settings, transport=transport),
    }
    if configured["email"]:
        channels["email"] = SmtpChannel(settings)
    if configured["sms"]:
        channels["sms"] = TwilioChannel(settings, name="sms", transport=transport)
    if configured["whatsapp"]:
        if settings.whatsapp_phone_number_id and settings.whatsapp_access_token:
            channels["whatsapp"] = WhatsAppCloudChannel(settings, transport=transport)
        else:
            channels["whatsapp"] = TwilioChannel(settings, name="whatsapp", transport=transport)
    if configured["messenger"]:
        channels["messenger"] = MessengerChannel(settings, transport=transport)
    return channels
