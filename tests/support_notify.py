"""Test support for the notifications domain: rows for customers/orders/shipments, domain events through the
real outbox, and local servers that speak the providers' protocols (HTTP for Twilio, WhatsApp Cloud,
Messenger and webhooks; SMTP with STARTTLS through aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import json
import queue
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, insert, select

from doorstep.bus.messages import DomainEvent
from doorstep.context import AppContext
from doorstep.customers.tables import customers
from doorstep.ids import new_id
from doorstep.notifications.tables import delivery_attempts, notifications
from doorstep.orders.tables import orders
from doorstep.shipments.tables import shipments

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def add_customer(
    engine: Engine,
    *,
    now: dt.datetime = NOW,
    email: str | None = "maya@example.com",
    phone: str | None = "+4915112345678",
    channels: list[str] | None = None,
    locale: str = "en",
    timezone: str = "Europe/Berlin",
    name: str = "Maya Schmidt",
) -> str:
    customer_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(customers).values(
                id=customer_id,
                email=email,
                phone=phone,
                name=name,
                locale=locale,
                timezone=timezone,
                preferred_channels=channels if channels is not None else ["email"],
                traits={},
                first_seen_at=now,
                last_seen_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    return customer_id


def add_order(
    engine: Engine,
    customer_id: str,
    *,
    now: dt.datetime = NOW,
    external_id: str | None = None,
    status: str = "placed",
) -> str:
    order_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(orders).values(
                id=order_id,
                external_id=external_id or f"#{order_id[-6:]}",
                customer_id=customer_id,
                status=status,
                currency="EUR",
                total_minor=8990,
                placed_at=now,
                properties={},
                created_at=now,
                updated_at=now,
            )
        )
    return order_id


def add_shipment(engine: Engine, order_id: str, *, now: dt.datetime = NOW, status: str = "InTransit") -> str:
    shipment_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(shipments).values(
                id=shipment_id,
                order_id=order_id,
                carrier="dhl",
                tracking_number=f"TN{shipment_id[-10:]}",
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
    return shipment_id


def set_shipment_status(engine: Engine, shipment_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(shipments.update().where(shipments.c.id == shipment_id).values(status=status))


def publish(ctx: AppContext, *events: DomainEvent) -> None:
    """Records domain events through the outbox, as a domain handler would."""
    with ctx.uow() as uow:
        for event in events:
            uow.publish(event)
        uow.commit()


def messages(engine: Engine, **where: Any) -> list[Any]:
    query = select(notifications).order_by(notifications.c.created_at, notifications.c.id)
    for key, value in where.items():
        query = query.where(getattr(notifications.c, key) == value)
    with engine.connect() as conn:
        return list(conn.execute(query))


def attempts(engine: Engine, notification_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(delivery_attempts)
                .where(delivery_attempts.c.notification_id == notification_id)
                .order_by(delivery_attempts.c.id)
            )
        )


# ---- a local HTTP provider --------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ProviderServer:
    """A threaded HTTP server on a free port: records every request and answers from a script (then from
    `default`, a function of the request)."""

    def __init__(self, default: Any):
        self.requests: list[Recorded] = []
        self.script: queue.Queue[Reply] = queue.Queue()
        self.default = default
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                rec = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                server.requests.append(rec)
                try:
                    reply = server.script.get_nowait()
                except queue.Empty:
                    reply = server.default(rec)
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _handle
            do_GET = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def then(self, status: int, body: Any, **headers: str) -> ProviderServer:
        self.script.put(Reply(status, body, headers))
        return self

    def __enter__(self) -> ProviderServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def twilio_ok(rec: Recorded) -> Reply:
    form = rec.form
    return Reply(
        201,
        {
            "sid": f"SM{len(form.get('Body', '')):032d}"[:34],
            "status": "queued",
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "error_code": None,
        },
    )


def whatsapp_ok(rec: Recorded) -> Reply:
    to = rec.json.get("to")
    return Reply(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.{new_id()}"}],
        },
    )


def messenger_ok(rec: Recorded) -> Reply:
    return Reply(200, {"recipient_id": rec.json["recipient"]["id"], "message_id": f"m_{new_id()}"})


# ---- a local SMTP server with STARTTLS --------------------------------------------------------------------


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    was_tls: bool


@contextmanager
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, list[ReceivedMail], ssl.SSLContext]]:
    """An aiosmtpd server on a free port that requires STARTTLS; yields (port, received, client TLS context)."""
    import socket

    from aiosmtpd.controller import Controller

    cert, key = self_signed_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    received: list[ReceivedMail] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = message_from_bytes(envelope.content, policy=default_policy)
            received.append(
                ReceivedMail(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    msg,  # type: ignore[arg-type]
                    session.ssl is not None,
                )
            )
            return "250 Message accepted for delivery"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        server_hostname="localhost",
        ready_timeout=5,
    )
    controller.start()
    try:
        yield port, received, client_ctx
    finally:
        controller.stop()


def order_placed(
    order_id: str, customer_id: str, *, at: dt.datetime, external_id: str = "#1042", total: str = "89.90"
) -> DomainEvent:
    """The OrderPlaced event the shop's Order Completed call would produce (EUR)."""
    from doorstep.orders.events import OrderPlaced

    return OrderPlaced(
        occurred_at=at,
        order_id=order_id,
        customer_id=customer_id,
        external_id=external_id,
        total=total,
        currency="EUR",
    )


META_APP_SECRET = "meta-app-secret"  # the tests' WhatsApp Cloud and Messenger app secret


def post_meta_signed(client: Any, path: str, body: dict[str, Any]) -> Any:
    """POSTs `body` as JSON to a Meta webhook (`/webhooks/whatsapp`, `/webhooks/messenger`), signed as Meta
    signs it (X-Hub-Signature-256 over the raw bytes with the app secret); returns the response."""
    import orjson

    from doorstep.security.signatures import meta_signature

    raw = orjson.dumps(body)
    return client.post(
        path,
        content=raw,
        headers={
            "X-Hub-Signature-256": meta_signature(META_APP_SECRET, raw),
            "Content-Type": "application/json",
        },
    )


def whatsapp_webhook_body(value: dict[str, Any]) -> dict[str, Any]:
    """A WhatsApp Cloud API webhook body: one `messages` change carrying `value` (its messages or statuses)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
    }


def whatsapp_inbound_body(
    *, wa_id: str, wamid: str, text: str, at: dt.datetime, name: str = "Maya"
) -> dict[str, Any]:
    """A WhatsApp Cloud API webhook body carrying one text message from `wa_id` (digits, no +)."""
    return whatsapp_webhook_body(
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(int(at.timestamp())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
    )
