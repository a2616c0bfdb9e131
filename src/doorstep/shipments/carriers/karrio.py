"""Karrio-compatible tracker webhooks.

Body: {"event" | "type": "tracker.updated" | "tracker_updated" | "tracker.created", "data": <tracker>,
"id"?, "created_at"?}. The tracker has `tracking_number`, `carrier_name`, `status`, `estimated_delivery`,
`info` (with `order_id`) and `events` [{`date`, `time`, `code`, `description`, `location`, `latitude`,
`longitude`, `status`?, `timestamp`?}]. Karrio signs with `X-Karrio-Signature`: hex HMAC-SHA256 of the raw body
with the webhook secret; older servers send the shared secret itself in `X-Event-Id`, which we also accept
(compared in constant time).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from doorstep.security.signatures import constant_time_equals, hmac_sha256_hex
from doorstep.shipments.carriers.codes import CodeTables
from doorstep.shipments.carriers.common import (
    ParsedTracking,
    invalid,
    optional_float,
    optional_str,
    parse_optional_time,
    parse_time,
    require_str,
)
from doorstep.shipments.errors import BadSignature
from doorstep.shipments.model import Status, TrackingEvent

SIGNATURE_HEADER = "x-karrio-signature"
LEGACY_SECRET_HEADER = "x-event-id"
TRACKER_EVENTS = frozenset({"tracker.updated", "tracker_updated", "tracker.created", "tracker_created"})
MAX_AGE = timedelta(hours=24)


def verify(secret: str, body: bytes, signature: str | None, legacy_secret: str | None) -> None:
    if signature:
        sent = signature.strip()
        if sent.startswith("sha256="):
            sent = sent[7:]
        if constant_time_equals(hmac_sha256_hex(secret, body), sent.lower()):
            return
        raise BadSignature(f"{SIGNATURE_HEADER} does not match the body signed with the webhook secret")
    if legacy_secret and constant_time_equals(secret, legacy_secret.strip()):
        return
    raise BadSignature(f"missing or wrong {SIGNATURE_HEADER} header")


def check_envelope(body: Any, raw: bytes, *, now: datetime) -> tuple[str, str, datetime]:
    """(event type, message id, sent at). The id is Karrio's event id, or a digest of the body."""
    if not isinstance(body, dict):
        raise invalid("body", "expected a JSON object")
    event = body.get("event") or body.get("type")
    if not isinstance(event, str) or not event:
        raise invalid("event", "required event type, e.g. tracker.updated")
    created = parse_optional_time(body.get("created_at"), "created_at") if body.get("created_at") else None
    if created is not None and now - created > MAX_AGE:
        raise BadSignature(
            f"created_at: delivery is stale ({created:%Y-%m-%d %H:%M} UTC, older than 24 hours)"
        )
    if event in TRACKER_EVENTS and not isinstance(body.get("data"), dict):
        raise invalid("data", "required tracker object")
    event_id = body.get("id")
    message_id = (
        str(event_id)
        if isinstance(event_id, str | int) and event_id
        else ("sha256:" + hashlib.sha256(raw).hexdigest())
    )
    return event, message_id, created or now


def parse_tracker(tracker: dict[str, Any], tables: CodeTables, *, source: str = "karrio") -> ParsedTracking:
    number = require_str(tracker, "tracking_number", "data.")
    carrier = tables.carrier_slug(require_str(tracker, "carrier_name", "data."))
    tracker_status = optional_str(tracker, "status", "data.")
    events = tracker.get("events") or []
    if not isinstance(events, list):
        raise invalid("data.events", "must be an array")
    parsed: list[tuple[datetime, dict[str, Any], str]] = []
    for index, event in enumerate(events):
        path = f"data.events[{index}]."
        if not isinstance(event, dict):
            raise invalid(path[:-1], "must be an object")
        parsed.append((_event_time(event, path), event, path))
    newest = max((at for at, _, _ in parsed), default=None)
    scans = [
        _scan(
            event,
            path,
            at,
            carrier=carrier,
            number=number,
            tables=tables,
            fallback=tracker_status if at == newest else None,
            source=source,
        )
        for at, event, path in parsed
    ]
    info: dict[str, Any] = tracker["info"] if isinstance(tracker.get("info"), dict) else {}
    metadata: dict[str, Any] = tracker["metadata"] if isinstance(tracker.get("metadata"), dict) else {}
    order_ref = optional_str(info, "order_id", "data.info.", max_len=100) or optional_str(
        metadata, "order_id", "data.metadata.", max_len=100
    )
    return ParsedTracking(
        carrier=carrier,
        tracking_number=number,
        scans=scans,
        order_ref=order_ref,
        service=optional_str(info, "shipment_service", "data.info.", max_len=50),
        destination_region=optional_str(info, "shipment_destination_country", "data.info.", max_len=100),
        origin_region=optional_str(info, "shipment_origin_country", "data.info.", max_len=100),
        destination_postcode=optional_str(info, "shipment_destination_postal_code", "data.info.", max_len=20),
        carrier_estimate=parse_optional_time(tracker.get("estimated_delivery"), "data.estimated_delivery"),
    )


def _event_time(event: dict[str, Any], path: str) -> datetime:
    if event.get("timestamp"):
        return parse_time(event["timestamp"], f"{path}timestamp")
    date = event.get("date")
    if not isinstance(date, str) or not date:
        raise invalid(f"{path}date", "required (YYYY-MM-DD)")
    clock = event.get("time") or "00:00"
    if not isinstance(clock, str):
        raise invalid(f"{path}time", "must be HH:MM")
    clock = clock.strip()
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %I:%M %p"):
        try:
            return datetime.strptime(f"{date.strip()} {clock}", fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise invalid(f"{path}time", f"{date} {clock!r} is not a date and time (YYYY-MM-DD HH:MM)")


def _scan(
    event: dict[str, Any],
    path: str,
    at: datetime,
    *,
    carrier: str,
    number: str,
    tables: CodeTables,
    fallback: str | None,
    source: str,
) -> TrackingEvent:
    code = optional_str(event, "code", path, max_len=100)
    mapping = tables.lookup(carrier, code)
    if mapping is None and event.get("status"):
        mapping = tables.lookup("karrio", str(event["status"]))
        if mapping is None:
            raise invalid(f"{path}status", f"unknown Karrio status {event['status']!r}")
    if mapping is None and fallback:
        mapping = tables.lookup("karrio", fallback)
    status, subtag = (mapping.status, mapping.subtag) if mapping else (Status.IN_TRANSIT, None)
    return TrackingEvent(
        carrier=carrier,
        tracking_number=number,
        occurred_at=at,
        status=status,
        subtag=subtag,
        raw_code=code,
        message=optional_str(event, "description", path, max_len=2000),
        city=optional_str(event, "location", path, max_len=100),
        latitude=optional_float(event.get("latitude"), f"{path}latitude"),
        longitude=optional_float(event.get("longitude"), f"{path}longitude"),
        source=source,
    )
