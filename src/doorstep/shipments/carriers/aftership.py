"""AfterShip-compatible tracking webhooks.

Body: {"event": "tracking_update" | "edd_revise" | ..., "event_id": "<uuid>", "is_tracking_first_tag": bool,
"msg": <tracking>, "ts": <unix seconds>}. Header `aftership-hmac-sha256`: base64 HMAC-SHA256 of the raw body
with the webhook secret. The tracking carries `slug`, `tracking_number`, `order_id`/`order_number`, `tag`,
`subtag`, the EDD fields and `checkpoints` (`checkpoint_time`, `tag`, `subtag`, `raw_tag`, `message`, `city`,
`state`, `zip`/`postal_code`, `country_iso3`/`country_region`, `location`, `coordinate`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from doorstep.security.signatures import constant_time_equals, hmac_sha256_b64
from doorstep.shipments.carriers.common import (
    ParsedTracking,
    country_code,
    invalid,
    optional_float,
    optional_str,
    parse_optional_time,
    parse_time,
    require_str,
)
from doorstep.shipments.errors import BadSignature
from doorstep.shipments.model import Status, TrackingEvent, normalise_subtag

SIGNATURE_HEADER = "aftership-hmac-sha256"
TRACKING_EVENTS = frozenset({"tracking_update", "edd_revise"})
MAX_AGE = timedelta(hours=24)  # older deliveries are refused as stale or replayed
MAX_FUTURE = timedelta(minutes=5)  # clock skew allowance


def verify(secret: str, body: bytes, signature: str | None) -> None:
    if not signature:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    if not constant_time_equals(hmac_sha256_b64(secret, body), signature.strip()):
        raise BadSignature(f"{SIGNATURE_HEADER} does not match the body signed with the webhook secret")


def check_envelope(body: Any, *, now: datetime) -> tuple[str, str, datetime]:
    """(event, event_id, ts) after checking shape and freshness."""
    if not isinstance(body, dict):
        raise invalid("body", "expected a JSON object")
    event = require_str(body, "event", "")
    event_id = require_str(body, "event_id", "")
    ts = body.get("ts")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise invalid("ts", "required unix timestamp (seconds)")
    sent_at = datetime.fromtimestamp(float(ts), tz=now.tzinfo)
    if now - sent_at > MAX_AGE:
        raise BadSignature(
            f"ts: delivery is stale ({sent_at:%Y-%m-%d %H:%M} UTC, older than 24 hours): refused"
        )
    if sent_at - now > MAX_FUTURE:
        raise BadSignature(f"ts: delivery is dated in the future ({sent_at:%Y-%m-%d %H:%M} UTC): refused")
    if event in TRACKING_EVENTS and not isinstance(body.get("msg"), dict):
        raise invalid("msg", "required tracking object")
    return event, event_id, sent_at


def parse_tracking(msg: dict[str, Any], *, source: str = "aftership") -> ParsedTracking:
    slug = require_str(msg, "slug", "msg.").lower()
    number = require_str(msg, "tracking_number", "msg.")
    order_ref = optional_str(msg, "order_number", "msg.", max_len=100) or optional_str(
        msg, "order_id", "msg.", max_len=100
    )
    checkpoints = msg.get("checkpoints") or []
    if not isinstance(checkpoints, list):
        raise invalid("msg.checkpoints", "must be an array")
    scans: list[TrackingEvent] = []
    for index, checkpoint in enumerate(checkpoints):
        path = f"msg.checkpoints[{index}]."
        if not isinstance(checkpoint, dict):
            raise invalid(path[:-1], "must be an object")
        scans.append(_checkpoint(checkpoint, path, slug=slug, number=number, source=source))
    edd = msg.get("aftership_estimated_delivery_date")
    estimate = None
    if isinstance(edd, dict):
        estimate = parse_optional_time(
            edd.get("estimated_delivery_date"), "msg.aftership_estimated_delivery_date"
        )
    courier_edd = msg.get("courier_estimated_delivery_date")
    if estimate is None and isinstance(courier_edd, dict):
        estimate = parse_optional_time(
            courier_edd.get("estimated_delivery_date"), "msg.courier_estimated_delivery_date"
        )
    if estimate is None:
        estimate = parse_optional_time(msg.get("expected_delivery"), "msg.expected_delivery")
    return ParsedTracking(
        carrier=slug,
        tracking_number=number,
        scans=scans,
        order_ref=order_ref,
        service=optional_str(msg, "shipment_type", "msg.", max_len=50),
        origin_region=_region(msg, "origin"),
        destination_region=_region(msg, "destination"),
        destination_postcode=optional_str(msg, "destination_postal_code", "msg.", max_len=20)
        or optional_str(msg, "tracking_postal_code", "msg.", max_len=20),
        carrier_estimate=estimate,
    )


def _region(msg: dict[str, Any], side: str) -> str | None:
    country = msg.get(f"{side}_country_region") or msg.get(f"{side}_country_iso3")
    state = msg.get(f"{side}_state")
    code = country_code(country) or (country if isinstance(country, str) else None)
    if code and isinstance(state, str) and state:
        return f"{code}-{state}"[:100]
    return code


def _checkpoint(cp: dict[str, Any], path: str, *, slug: str, number: str, source: str) -> TrackingEvent:
    occurred_at = parse_time(cp.get("checkpoint_time"), f"{path}checkpoint_time")
    tag = cp.get("tag")
    if not isinstance(tag, str) or not tag:
        raise invalid(f"{path}tag", "required delivery status tag")
    try:
        status = Status.parse(tag)
    except ValueError as exc:
        raise invalid(f"{path}tag", str(exc)) from None
    try:
        subtag = normalise_subtag(cp.get("subtag") or None, status)
    except ValueError as exc:
        raise invalid(f"{path}subtag", str(exc)) from None
    latitude = longitude = None
    coordinate = cp.get("coordinate")
    if isinstance(coordinate, dict):
        latitude = optional_float(coordinate.get("latitude"), f"{path}coordinate.latitude")
        longitude = optional_float(coordinate.get("longitude"), f"{path}coordinate.longitude")
    elif isinstance(cp.get("coordinates"), list) and len(cp["coordinates"]) == 2:  # the older field
        latitude = optional_float(cp["coordinates"][0], f"{path}coordinates[0]")
        longitude = optional_float(cp["coordinates"][1], f"{path}coordinates[1]")
    city = optional_str(cp, "city", path, max_len=100) or optional_str(cp, "location", path, max_len=100)
    return TrackingEvent(
        carrier=slug,  # the tracking's courier, even when a checkpoint names a last-mile partner
        tracking_number=number,
        occurred_at=occurred_at,
        status=status,
        subtag=subtag,
        raw_code=optional_str(cp, "raw_tag", path, max_len=100),
        message=optional_str(cp, "message", path, max_len=2000),
        city=city,
        region=optional_str(cp, "state", path, max_len=100),
        country=country_code(cp.get("country_region") or cp.get("country_iso3")),
        postcode=optional_str(cp, "zip", path, max_len=20)
        or optional_str(cp, "postal_code", path, max_len=20),
        latitude=latitude,
        longitude=longitude,
        source=source,
    )
