"""Provider webhooks: Twilio (SMS/WhatsApp inbound and status callbacks), WhatsApp Cloud and Messenger
(Meta verification handshake, X-Hub-Signature-256), inbound email (raw RFC 822 or inbound-parse JSON/form).

Each verifies the provider's signature in constant time before reading anything else, then records and
answers; no business work in the request beyond that."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from doorstep.context import get_ctx
from doorstep.notifications.errors import BadWebhookSignature, ChannelNotConfigured, NotificationError
from doorstep.notifications.inbound import (
    Bounce,
    InboundMessage,
    Receipt,
    apply_receipts,
    mark_read_until,
    record_bounces,
    record_inbound,
)
from doorstep.security.signatures import constant_time_equals, meta_signature, twilio_signature

router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])

MAX_WEBHOOK_BYTES = (
    1024 * 1024
)  # providers' payloads are small; inbound email with attachments is capped here
TWILIO_STATUS = {
    "accepted": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise NotificationError(
            f"webhook body is {len(body)} bytes; the limit is {MAX_WEBHOOK_BYTES}", status=413
        )
    return body


def _public_url(request: Request) -> str:
    """The URL the provider signed: our public base URL plus the path (and query) it called."""
    settings = get_ctx(request).settings
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


async def _verified_twilio_form(request: Request) -> dict[str, str]:
    settings = get_ctx(request).settings
    if not settings.twilio_auth_token:
        raise ChannelNotConfigured("Twilio is not configured here: set DOORSTEP_TWILIO_AUTH_TOKEN")
    await _body(request)
    form = await request.form()
    params = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    expected = twilio_signature(settings.twilio_auth_token, _public_url(request), params)
    if not constant_time_equals(request.headers.get("x-twilio-signature"), expected):
        raise BadWebhookSignature(
            "X-Twilio-Signature does not match this request: check the auth token and that "
            "DOORSTEP_PUBLIC_BASE_URL is the URL Twilio calls"
        )
    return dict(params)


def _split_twilio_address(value: str) -> tuple[str, str]:
    if value.startswith("whatsapp:"):
        return "whatsapp", value.removeprefix("whatsapp:")
    return "sms", value


@router.post("/twilio", summary="Twilio inbound SMS / WhatsApp message")
async def twilio_inbound(request: Request) -> Response:
    form = await _verified_twilio_form(request)
    ctx = get_ctx(request)
    channel, sender = _split_twilio_address(form.get("From", ""))
    _, to = _split_twilio_address(form.get("To", ""))
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not sid or not sender:
        raise NotificationError("MessageSid and From are required")
    message = InboundMessage(
        channel=channel,
        from_address=sender,
        to_address=to,
        text=form.get("Body", ""),
        provider_message_id=sid,
        sent_at=ctx.clock.now(),
        raw=form,
    )
    await run_in_threadpool(record_inbound, ctx, [message])
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post("/twilio/status", summary="Twilio message status callback")
async def twilio_status(request: Request) -> Response:
    form = await _verified_twilio_form(request)
    ctx = get_ctx(request)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    raw_status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    status = TWILIO_STATUS.get(raw_status)
    if sid and status:
        error = f"Twilio error {form['ErrorCode']}" if form.get("ErrorCode") else None
        receipt = Receipt(sid, status, ctx.clock.now(), error=error, dedupe=f"twilio:{sid}:{raw_status}")
        await run_in_threadpool(apply_receipts, ctx, [receipt])
    return Response(status_code=204)


# ---- Meta: WhatsApp Cloud and Messenger -------------------------------------------------------------------


def _meta_handshake(request: Request) -> Response:
    settings = get_ctx(request).settings
    q = request.query_params
    if not settings.meta_verify_token:
        raise ChannelNotConfigured(
            "set DOORSTEP_META_VERIFY_TOKEN to the token entered in the Meta app dashboard"
        )
    if q.get("hub.mode") == "subscribe" and constant_time_equals(
        q.get("hub.verify_token"), settings.meta_verify_token
    ):
        return PlainTextResponse(q.get("hub.challenge", ""))
    raise BadWebhookSignature("hub.verify_token does not match DOORSTEP_META_VERIFY_TOKEN")


async def _verified_meta_json(request: Request) -> dict[str, Any]:
    settings = get_ctx(request).settings
    if not settings.meta_app_secret:
        raise ChannelNotConfigured("set DOORSTEP_META_APP_SECRET to verify Meta webhooks")
    body = await _body(request)
    if not constant_time_equals(
        request.headers.get("x-hub-signature-256"), meta_signature(settings.meta_app_secret, body)
    ):
        raise BadWebhookSignature(
            "X-Hub-Signature-256 does not match the body: check DOORSTEP_META_APP_SECRET"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NotificationError("body is not JSON") from None
    if not isinstance(data, dict):
        raise NotificationError("body must be a JSON object")
    return data


def _from_unix(value: Any, fallback: datetime) -> datetime:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return fallback
    if seconds > 1e11:  # Messenger uses milliseconds, WhatsApp seconds
        seconds /= 1000
    return datetime.fromtimestamp(seconds, UTC)


def _whatsapp_text(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "text":
        return str((message.get("text") or {}).get("body", ""))
    if kind == "button":
        return str((message.get("button") or {}).get("text", ""))
    if kind == "interactive":
        inter = message.get("interactive") or {}
        reply = inter.get("button_reply") or inter.get("list_reply") or {}
        return str(reply.get("title", ""))
    media = message.get(kind or "") if kind else None
    caption = media.get("caption") if isinstance(media, dict) else None
    return str(caption or f"[{kind}]")


@router.get("/whatsapp", summary="WhatsApp Cloud webhook verification")
async def whatsapp_verify(request: Request) -> Response:
    return _meta_handshake(request)


@router.post("/whatsapp", summary="WhatsApp Cloud inbound messages and statuses")
async def whatsapp_events(request: Request) -> Response:
    data = await _verified_meta_json(request)
    ctx = get_ctx(request)
    now = ctx.clock.now()
    inbound: list[InboundMessage] = []
    receipts: list[Receipt] = []
    for entry in data.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            business = (value.get("metadata") or {}).get("display_phone_number", "")
            for m in value.get("messages") or []:
                sender = str(m.get("from", ""))
                inbound.append(
                    InboundMessage(
                        channel="whatsapp",
                        from_address=sender if sender.startswith("+") else f"+{sender}",
                        to_address=str(business),
                        text=_whatsapp_text(m),
                        provider_message_id=str(m.get("id", "")),
                        sent_at=_from_unix(m.get("timestamp"), now),
                        raw=m,
                    )
                )
            for s in value.get("statuses") or []:
                status = s.get("status")
                if status in ("sent", "delivered", "read", "failed"):
                    errors = s.get("errors") or []
                    error = (
                        f"WhatsApp error {errors[0].get('code')}: {errors[0].get('title')}"
                        if errors
                        else None
                    )
                    receipts.append(
                        Receipt(
                            str(s.get("id", "")),
                            status,
                            _from_unix(s.get("timestamp"), now),
                            error=error,
                            dedupe=f"whatsapp:{s.get('id')}:{status}",
                        )
                    )
    if inbound:
        await run_in_threadpool(record_inbound, ctx, [m for m in inbound if m.provider_message_id])
    if receipts:
        await run_in_threadpool(apply_receipts, ctx, receipts)
    return PlainTextResponse("ok")


@router.get("/messenger", summary="Messenger webhook verification")
async def messenger_verify(request: Request) -> Response:
    return _meta_handshake(request)


def _mark_read(ctx: Any, psid: str, watermark: datetime) -> int:
    return mark_read_until(ctx, channel="messenger", to_address=psid, watermark=watermark)


@router.post("/messenger", summary="Messenger inbound messages, deliveries and reads")
async def messenger_events(request: Request) -> Response:
    data = await _verified_meta_json(request)
    ctx = get_ctx(request)
    now = ctx.clock.now()
    inbound: list[InboundMessage] = []
    receipts: list[Receipt] = []
    reads: list[tuple[str, datetime]] = []
    for entry in data.get("entry") or []:
        for event in entry.get("messaging") or []:
            sender = str((event.get("sender") or {}).get("id", ""))
            page = str((event.get("recipient") or {}).get("id", ""))
            message = event.get("message")
            if isinstance(message, dict) and not message.get("is_echo") and message.get("mid"):
                text = message.get("text") or ("[attachment]" if message.get("attachments") else "")
                inbound.append(
                    InboundMessage(
                        channel="messenger",
                        from_address=sender,
                        to_address=page,
                        text=str(text),
                        provider_message_id=str(message["mid"]),
                        sent_at=_from_unix(event.get("timestamp"), now),
                        raw=event,
                    )
                )
            delivery = event.get("delivery")
            if isinstance(delivery, dict):
                for mid in delivery.get("mids") or []:
                    receipts.append(
                        Receipt(
                            str(mid),
                            "delivered",
                            _from_unix(delivery.get("watermark"), now),
                            dedupe=f"messenger:{mid}:delivered",
                        )
                    )
            read = event.get("read")
            if isinstance(read, dict) and sender:
                reads.append((sender, _from_unix(read.get("watermark"), now)))
    if inbound:
        # the log is idempotent by "messenger:<mid>", so Meta's redeliveries append nothing twice
        await run_in_threadpool(record_inbound, ctx, inbound)
    if receipts:
        await run_in_threadpool(apply_receipts, ctx, receipts)
    for psid, watermark in reads:
        await run_in_threadpool(_mark_read, ctx, psid, watermark)
    return PlainTextResponse("EVENT_RECEIVED")


# ---- inbound email ----------------------------------------------------------------------------------------


def _email_secret_ok(request: Request, secret: str) -> bool:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return constant_time_equals(auth[7:].strip(), secret)
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return constant_time_equals(decoded.split(":", 1)[-1], secret)
    return constant_time_equals(request.query_params.get("secret"), secret)


def _strip_quoted(text: str) -> str:
    """The customer's new words only: drop the quoted reply below "On ... wrote:" or "> " lines."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">") or (
            stripped.startswith(("On ", "Am ")) and stripped.endswith(("wrote:", "schrieb:"))
        ):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def _parse_rfc822(raw: bytes, now: datetime) -> InboundMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain", "html")) if hasattr(msg, "get_body") else None
    text = part.get_content() if part is not None else ""
    if part is not None and part.get_content_type() == "text/html":
        import re

        text = re.sub(r"<[^>]+>", " ", text)
    try:
        sent_at = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else now
        sent_at = sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        sent_at = now
    message_id = str(msg["Message-ID"] or "").strip().strip("<>")
    return InboundMessage(
        channel="email",
        from_address=parseaddr(str(msg["From"] or ""))[1].lower(),
        to_address=parseaddr(str(msg["To"] or ""))[1].lower(),
        text=_strip_quoted(str(text)),
        provider_message_id=message_id,
        sent_at=sent_at.astimezone(UTC),
        subject=str(msg["Subject"] or ""),
        raw={
            "message_id": message_id,
            "in_reply_to": str(msg["In-Reply-To"] or ""),
            "subject": str(msg["Subject"] or ""),
        },
    )


def _delivery_report(raw: bytes, now: datetime) -> list[Bounce] | None:
    """The recipients of a delivery status notification (RFC 3464: multipart/report with a
    message/delivery-status part), or None when the message is not one (an ordinary reply)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    original_id = ""
    recipients: list[Any] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = part.get_payload()
            # the first block is about the message (Reporting-MTA ...), each later one about a recipient
            recipients.extend(blocks[1:] if isinstance(blocks, list) else [])
        elif kind == "message/rfc822" and not original_id:
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            original_id = str(getattr(inner, "get", lambda _: "")("Message-ID") or "")
        elif kind == "text/rfc822-headers" and not original_id:
            headers = email.message_from_string(str(part.get_content()), policy=email.policy.default)
            original_id = str(headers["Message-ID"] or "")
    bounces = []
    for block in recipients:
        recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        bounces.append(
            Bounce(
                address=parseaddr(recipient.split(";", 1)[-1].strip())[1].lower(),
                original_message_id=original_id.strip().strip("<>"),
                action=str(block.get("Action") or "").strip().lower(),
                status=str(block.get("Status") or "").strip(),
                diagnostic=" ".join(str(block.get("Diagnostic-Code") or "").split()),
                at=now,
            )
        )
    return bounces


def _raw_field(fields: dict[str, Any]) -> bytes | None:
    raw_message = fields.get("email") or fields.get("RawEmail") or fields.get("raw")
    return raw_message.encode() if isinstance(raw_message, str) and "\n" in raw_message else None


def _parse_fields(fields: dict[str, Any], now: datetime) -> InboundMessage:
    """Inbound-parse JSON or form shapes: Postmark (From/To/Subject/TextBody/MessageID), SendGrid
    (from/to/subject/text, or `email` with the raw message), Mailgun (sender/recipient/body-plain/Message-Id)."""
    raw_message = fields.get("email") or fields.get("RawEmail") or fields.get("raw")
    if isinstance(raw_message, str) and "\n" in raw_message:
        return _parse_rfc822(raw_message.encode(), now)

    def pick(*names: str) -> str:
        for name in names:
            value = fields.get(name)
            if value:
                return str(value)
        return ""

    sender = parseaddr(pick("From", "from", "sender", "Sender"))[1].lower()
    to = parseaddr(pick("To", "to", "recipient", "Recipient"))[1].lower()
    message_id = pick("MessageID", "Message-Id", "message_id", "Message-ID").strip("<>")
    text = pick("StrippedTextReply", "stripped-text", "TextBody", "text", "body-plain", "plain")
    if not sender or not message_id:
        raise NotificationError(
            "inbound email needs a sender (From/from/sender) and a message id (MessageID/Message-Id)"
        )
    return InboundMessage(
        channel="email",
        from_address=sender,
        to_address=to,
        text=_strip_quoted(text),
        provider_message_id=message_id,
        sent_at=now,
        subject=pick("Subject", "subject"),
        raw={k: v for k, v in fields.items() if isinstance(v, str) and len(v) < 10_000},
    )


@router.post("/email", summary="Inbound email (raw RFC 822, or an inbound-parse JSON/form body)")
async def inbound_email(request: Request) -> Response:
    ctx = get_ctx(request)
    secret = ctx.settings.inbound_email_secret
    if not secret:
        raise ChannelNotConfigured(
            "set DOORSTEP_INBOUND_EMAIL_SECRET and give it to your inbound-parse service"
        )
    if not _email_secret_ok(request, secret):
        raise BadWebhookSignature("the inbound email secret is missing or wrong", status=401)
    body = await _body(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    now = ctx.clock.now()
    fields: Any = None
    if content_type == "application/json":
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise NotificationError("body is not JSON") from None
        fields = fields if isinstance(fields, dict) else {}
    elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    raw = body if fields is None else _raw_field(fields)
    bounces = _delivery_report(raw, now) if raw else None
    if bounces is not None:  # a bounce of a message we sent, not a customer writing
        known = await run_in_threadpool(record_bounces, ctx, bounces)
        return Response(
            orjson.dumps({"accepted": True, "bounces": len(bounces), "known": known}),
            media_type="application/json",
        )
    message = _parse_rfc822(body, now) if fields is None else _parse_fields(fields, now)
    if not message.from_address or not message.provider_message_id:
        raise NotificationError("the message has no From address or no Message-ID")
    new = await run_in_threadpool(record_inbound, ctx, [message])
    return Response(orjson.dumps({"accepted": True, "duplicate": new == 0}), media_type="application/json")
