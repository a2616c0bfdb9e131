"""What arrives from customers and providers: inbound messages (appended to the event log as
source "inbound_message" for the conversations domain, after STOP/START keywords updated consent) and
delivery receipts (status callbacks that move a message to delivered, read or failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from doorstep.context import AppContext
from doorstep.customers.events import ConsentChanged
from doorstep.ingest.log import LogEntry, append
from doorstep.notifications.model import STATUS_RANK, TOPICS, keyword_consent
from doorstep.notifications.repository import NotificationRepository
from doorstep.notifications.services import queue_fallback
from doorstep.notifications.tables import notifications

INBOUND_SOURCE = "inbound_message"


@dataclass
class InboundMessage:
    channel: str  # sms | whatsapp | messenger | email | chat
    from_address: str
    to_address: str
    text: str
    provider_message_id: str
    sent_at: datetime
    subject: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def record_inbound(ctx: AppContext, messages: list[InboundMessage]) -> int:
    """Consent keywords first, then the log append (idempotent by channel and provider id); one transaction.
    Returns how many messages were new."""
    if not messages:
        return 0
    now = ctx.clock.now()
    with ctx.uow() as uow:
        repo = NotificationRepository(uow.conn)
        entries = []
        for m in messages:
            customer_id = repo.customer_by_address(m.channel, m.from_address)
            wanted = keyword_consent(m.text) if m.channel in ("sms", "whatsapp") else None
            if wanted is not None and (customer_id is None or wanted):
                # STOP from an unknown number is kept by address; START clears it whoever sends it
                repo.set_address_optout(
                    m.channel,
                    m.from_address,
                    keyword=m.text.strip().upper()[:20],
                    is_opted_out=not wanted,
                    now=now,
                )
            if customer_id is not None:
                repo.touch_channel_identity(
                    customer_id=customer_id,
                    channel=m.channel,
                    address=m.from_address,
                    inbound_at=m.sent_at,
                    now=now,
                )
                if wanted is not None:
                    for topic in TOPICS:
                        if repo.set_consent(
                            customer_id=customer_id,
                            channel=m.channel,
                            topic=topic,
                            is_granted=wanted,
                            source=f"keyword:{m.text.strip().upper()[:20]}",
                            now=now,
                        ):
                            uow.publish(
                                ConsentChanged(
                                    occurred_at=now,
                                    customer_id=customer_id,
                                    channel=m.channel,
                                    topic=topic,
                                    is_granted=wanted,
                                    source="keyword",
                                )
                            )
            payload: dict[str, Any] = {
                "channel": m.channel,
                "from": m.from_address,
                "to": m.to_address,
                "text": m.text,
                "provider_message_id": m.provider_message_id,
                "sent_at": m.sent_at.isoformat(),
                "raw": m.raw,
            }
            if m.subject is not None:
                payload["subject"] = m.subject
            entries.append(
                LogEntry(
                    INBOUND_SOURCE,
                    f"{m.channel}:{m.provider_message_id}"[:255],
                    "message",
                    None,
                    f"{m.channel}:{m.from_address}",
                    m.sent_at,
                    payload,
                )
            )
        new = append(uow.conn, entries, received_at=now)
        uow.commit()
    wake = ctx.services.get("wake_worker")
    if wake is not None and new:
        wake()
    return new


@dataclass
class Receipt:
    provider_message_id: str
    status: str  # sent | delivered | read | failed
    at: datetime
    error: str | None = None
    dedupe: str = ""


def apply_receipts(ctx: AppContext, receipts: list[Receipt]) -> int:
    """Moves messages forward (queued < sent < delivered < read; failed is terminal and falls back).
    A redelivered or out-of-order callback changes nothing."""
    changed = 0
    now = ctx.clock.now()
    with ctx.engine.begin() as conn:
        repo = NotificationRepository(conn)
        for r in receipts:
            if r.dedupe and not repo.receipt_is_new(r.dedupe, now=now):
                continue
            row = repo.find_by_provider_id(r.provider_message_id)
            if row is None or r.status not in STATUS_RANK:
                continue
            if row.status in ("failed", "suppressed") or STATUS_RANK[r.status] <= STATUS_RANK.get(
                row.status, 0
            ):
                continue
            values: dict[str, Any] = {"status": r.status}
            if r.status == "delivered":
                values["delivered_at"] = r.at
            elif r.status == "read":
                values["read_at"] = r.at
                values["delivered_at"] = row.delivered_at or r.at
            elif r.status == "failed":
                values["failed_at"] = r.at
                values["last_error"] = r.error or "the provider reported the message undelivered"
            repo.update(row.id, **values)
            if r.status == "failed":
                queue_fallback(repo, row.id, now=now)
            changed += 1
    return changed


@dataclass
class Bounce:
    """One recipient of a delivery status notification (RFC 3464) for a message we sent."""

    address: str
    original_message_id: str  # the bounced message's Message-ID, without angle brackets
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # 5.1.1
    diagnostic: str  # smtp; 550 5.1.1 user unknown
    at: datetime

    @property
    def is_permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")

    @property
    def reason(self) -> str:
        return " ".join(x for x in (self.status, self.diagnostic) if x)[:1000] or "bounced"


def record_bounces(ctx: AppContext, bounces: list[Bounce]) -> int:
    """A permanent bounce marks the message failed with the reason (then the next channel is tried, as after any
    provider failure) and stops further email to the address. Delays change nothing: the server retries.
    Returns how many permanent bounces were for messages or customers we know."""
    now = ctx.clock.now()
    receipts: list[Receipt] = []
    known = 0
    with ctx.engine.begin() as conn:
        repo = NotificationRepository(conn)
        for b in bounces:
            if not b.is_permanent or not b.address:
                continue
            row = repo.find_email(b.original_message_id, to_address=b.address)
            customer_id = row.customer_id if row is not None else repo.customer_by_address("email", b.address)
            if customer_id is None:
                continue
            known += 1
            repo.suppress_email(
                b.address,
                customer_id=customer_id,
                reason=b.reason,
                notification_id=row.id if row is not None else None,
                now=now,
            )
            if row is not None:
                receipts.append(
                    Receipt(row.provider_message_id, "failed", b.at, error=f"bounced: {b.reason}")
                )
    apply_receipts(ctx, receipts)
    return known


def mark_read_until(ctx: AppContext, *, channel: str, to_address: str, watermark: datetime) -> int:
    """Messenger reports reads as a watermark: everything sent to that PSID before it was read."""
    with ctx.engine.begin() as conn:
        ids = list(
            conn.execute(
                select(notifications.c.id).where(
                    notifications.c.channel == channel,
                    notifications.c.to_address == to_address,
                    notifications.c.status.in_(("sent", "delivered")),
                    notifications.c.sent_at <= watermark,
                )
            ).scalars()
        )
        if ids:
            conn.execute(
                update(notifications)
                .where(notifications.c.id.in_(ids))
                .values(status="read", read_at=watermark)
            )
    return len(ids)
