"""The carrier sender: delivers queued delivery-change webhooks outside any request, signed with
HMAC-SHA256 over "{timestamp}.{body}", with attempts recorded and exponential backoff.

Headers sent: `X-Doorstep-Timestamp` (unix seconds), `X-Doorstep-Signature: v1=<hex>`,
`X-Doorstep-Delivery` (the delivery id: carriers dedupe on it), `Content-Type: application/json`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from doorstep.bus.backoff import backoff_s
from doorstep.context import AppContext
from doorstep.security.signatures import timestamped_signature
from doorstep.shipments.tables import carrier_webhook_deliveries, delivery_changes

log = logging.getLogger("doorstep.shipments.outbound")

SEND_BATCH = 20
CLAIM_LEASE = timedelta(minutes=2)  # a crashed sender's claim expires, another sends again (carrier dedupes)
RETRYABLE_STATUSES = {408, 409, 425, 429}


def send_due(ctx: AppContext, *, transport: httpx.BaseTransport | None = None) -> int:
    """Sends every due delivery; returns how many were attempted."""
    settings = ctx.settings
    if not settings.carrier_webhook_url:
        return 0
    now = ctx.clock.now()
    with ctx.engine.begin() as conn:  # claim: push next_attempt_at ahead so no other sender takes them
        query = (
            select(carrier_webhook_deliveries)
            .where(
                carrier_webhook_deliveries.c.status == "pending",
                carrier_webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(carrier_webhook_deliveries.c.next_attempt_at)
            .limit(SEND_BATCH)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        for row in rows:
            conn.execute(
                update(carrier_webhook_deliveries)
                .where(carrier_webhook_deliveries.c.id == row.id)
                .values(next_attempt_at=now + CLAIM_LEASE)
            )
    if not rows:
        return 0
    shared: httpx.Client | None = ctx.services.get("carrier_http_client")
    own_client = shared is None
    client = shared or httpx.Client(timeout=settings.outbound_timeout_s, transport=transport)
    try:
        for row in rows:
            _send_one(ctx, client, row)
    finally:
        if own_client:
            client.close()
    return len(rows)


def _send_one(ctx: AppContext, client: Any, row: Any) -> None:
    settings = ctx.settings
    body = row.body.encode()
    timestamp = int(ctx.clock.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "X-Doorstep-Timestamp": str(timestamp),
        "X-Doorstep-Signature": "v1="
        + timestamped_signature(settings.carrier_webhook_secret, timestamp, body),
        "X-Doorstep-Delivery": row.id,
    }
    status_code: int | None = None
    error: str | None = None
    try:
        response = client.post(settings.carrier_webhook_url, content=body, headers=headers)
        status_code = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    attempts = row.attempts + 1
    now = ctx.clock.now()
    if status_code is not None and 200 <= status_code < 300:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
        change_status = "sent"
    else:
        permanent = (
            status_code is not None and 400 <= status_code < 500 and status_code not in RETRYABLE_STATUSES
        )
        error = error or f"HTTP {status_code}"
        if permanent or attempts >= settings.max_attempts:
            values = {"status": "dead", "last_error": error}
            change_status = "failed"
        else:
            delay = backoff_s(attempts, base_s=max(settings.retry_base_s, 0.0), max_s=settings.retry_max_s)
            values = {
                "status": "pending",
                "last_error": error,
                "next_attempt_at": now + timedelta(seconds=delay),
            }
            change_status = "pending"
        log.warning("carrier webhook %s attempt %d failed: %s", row.id, attempts, error)
    with ctx.engine.begin() as conn:
        conn.execute(
            update(carrier_webhook_deliveries)
            .where(carrier_webhook_deliveries.c.id == row.id)
            .values(attempts=attempts, response_status=status_code, **values)
        )
        conn.execute(
            update(delivery_changes)
            .where(delivery_changes.c.id == row.change_id)
            .values(carrier_status=change_status)
        )
