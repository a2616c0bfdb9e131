"""The Segment HTTP Tracking API spec: validation, clock-skew correction and normalisation of one call.

Pure functions: the route passes the receive time in, and gets back rows to append to the log or the
reasons a call is rejected (each naming the field).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from doorstep.clock import ensure_utc

MAX_EVENT_BYTES = 32 * 1024  # Segment's per-call limit
MAX_BATCH_BYTES = 500 * 1024  # Segment's per-batch limit
MAX_ID_CHARS = (
    200  # userId / anonymousId / messageId: they key the log (partition_key, message_id are 255 wide)
)
MAX_NAME_CHARS = 255  # event and page names (event_log.name)
TYPES = ("identify", "track", "page", "screen", "group", "alias")
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
# Fields that differ between two deliveries of the same call (retries), so a replay is compared without them.
VOLATILE_FIELDS = frozenset({"sentAt", "receivedAt", "timestamp", "writeKey"})


@dataclass(frozen=True)
class Accepted:
    message_id: str
    type: str
    name: str | None
    partition_key: str
    occurred_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    index: int
    message_id: str | None
    errors: list[dict[str, str]]

    @property
    def detail(self) -> str:
        return "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)


def parse_time(value: Any, field: str, errors: list[dict[str, str]]) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append({"field": field, "message": f"must be an ISO 8601 string, got {type(value).__name__}"})
        return None
    try:
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        return ensure_utc(datetime.fromisoformat(text))
    except ValueError:
        errors.append({"field": field, "message": f"{value!r} is not an ISO 8601 timestamp"})
        return None


def corrected_timestamp(
    *, timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's skew correction: timestamp = receivedAt - (sentAt - originalTimestamp).

    The device's clock may be wrong, but the gap between when it recorded and when it sent the event is right.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


def validate_event(
    event: Any,
    *,
    index: int,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    forced_type: str | None = None,
    max_future_skew: timedelta,
    size_bytes: int | None = None,
) -> Accepted | Rejected:
    errors: list[dict[str, str]] = []
    if not isinstance(event, dict):
        return Rejected(index, None, [{"field": "", "message": "each event must be a JSON object"}])
    message_id = event.get("messageId")
    if message_id is not None and (isinstance(message_id, bool) or not isinstance(message_id, str | int)):
        errors.append({"field": "messageId", "message": f"must be a string, got {type(message_id).__name__}"})
        message_id = None
    elif isinstance(message_id, str):
        message_id = message_id.strip() or None  # an empty messageId is treated as absent: one is assigned
        if message_id is not None and len(message_id) > MAX_ID_CHARS:
            errors.append(
                {"field": "messageId", "message": f"is {len(message_id)} characters; at most {MAX_ID_CHARS}"}
            )
            message_id = None
    if size_bytes is not None and size_bytes > MAX_EVENT_BYTES:
        errors.append({"field": "", "message": f"event is {size_bytes} bytes; the limit is 32 KB per event"})

    event_type = forced_type or event.get("type")
    if forced_type and event.get("type") not in (None, forced_type):
        errors.append({"field": "type", "message": f"must be {forced_type!r} on this endpoint"})
    if event_type not in TYPES:
        errors.append({"field": "type", "message": f"must be one of {', '.join(TYPES)}, got {event_type!r}"})

    user_id = _identifier(event, "userId", errors)
    anonymous_id = _identifier(event, "anonymousId", errors)
    if (
        user_id is None
        and anonymous_id is None
        and not any(e["field"] in ("userId", "anonymousId") for e in errors)
    ):
        errors.append({"field": "userId", "message": "userId or anonymousId is required"})

    for key in OBJECT_FIELDS:
        if key in event and event[key] is not None and not isinstance(event[key], dict):
            errors.append({"field": key, "message": f"must be an object, got {type(event[key]).__name__}"})
    context = event.get("context")
    if isinstance(context, dict):
        for key in ("traits", "campaign", "page", "location"):
            value = context.get(key)
            if value is not None and not isinstance(value, dict):
                errors.append(
                    {"field": f"context.{key}", "message": f"must be an object, got {type(value).__name__}"}
                )

    name: str | None = None
    if event_type == "track":
        name = event.get("event")
        if not isinstance(name, str) or not name.strip():
            errors.append(
                {"field": "event", "message": "track calls need the event name, e.g. 'Order Completed'"}
            )
        elif len(name.strip()) > MAX_NAME_CHARS:
            errors.append(
                {"field": "event", "message": f"is {len(name.strip())} characters; at most {MAX_NAME_CHARS}"}
            )
    elif event_type in ("page", "screen"):
        value = event.get("name")
        if value is not None and not isinstance(value, str):
            errors.append({"field": "name", "message": f"must be a string, got {type(value).__name__}"})
        elif isinstance(value, str) and len(value.strip()) > MAX_NAME_CHARS:
            errors.append(
                {"field": "name", "message": f"is {len(value.strip())} characters; at most {MAX_NAME_CHARS}"}
            )
        name = value if isinstance(value, str) and value.strip() else None
    elif event_type == "group":
        _required_id(event, "groupId", "group calls need a groupId", errors)
    elif event_type == "alias":
        _required_id(event, "previousId", "alias calls need the previousId", errors)
        if user_id is None and "userId" not in {e["field"] for e in errors}:
            errors.append({"field": "userId", "message": "alias calls need the new userId"})

    timestamp = parse_time(event.get("timestamp") or event.get("originalTimestamp"), "timestamp", errors)
    sent_at = parse_time(event.get("sentAt"), "sentAt", errors) or batch_sent_at
    if errors:
        return Rejected(index, str(message_id) if message_id is not None else None, errors)

    occurred_at = corrected_timestamp(timestamp=timestamp, sent_at=sent_at, received_at=received_at)
    if occurred_at - received_at > max_future_skew:
        hours = max_future_skew.total_seconds() / 3600
        return Rejected(
            index,
            str(message_id) if message_id is not None else None,
            [
                {
                    "field": "timestamp",
                    "message": f"{occurred_at.isoformat()} is more than {hours:g} h in the future",
                }
            ],
        )
    payload = dict(event)  # unknown fields are kept
    payload["type"] = event_type
    if user_id is not None:
        payload["userId"] = user_id
    if anonymous_id is not None:
        payload["anonymousId"] = anonymous_id
    payload["receivedAt"] = received_at.isoformat()
    if timestamp is not None:
        payload["originalTimestamp"] = timestamp.isoformat()
    payload["timestamp"] = occurred_at.isoformat()
    payload.pop("writeKey", None)
    message_id = str(message_id) if message_id is not None else f"ds-{uuid.uuid4()}"
    payload["messageId"] = message_id
    return Accepted(
        message_id=message_id,
        type=str(event_type),
        name=name.strip() if isinstance(name, str) else None,
        partition_key=f"{'user' if user_id is not None else 'anon'}:{user_id or anonymous_id}",
        occurred_at=occurred_at,
        payload=payload,
    )


def _identifier(event: dict[str, Any], field: str, errors: list[dict[str, str]]) -> str | None:
    value = event.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        errors.append({"field": field, "message": f"must be a string, got {type(value).__name__}"})
        return None
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        errors.append({"field": field, "message": f"is {len(text)} characters; at most {MAX_ID_CHARS}"})
        return None
    return text or None


def _required_id(event: dict[str, Any], field: str, missing: str, errors: list[dict[str, str]]) -> None:
    value = event.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors.append({"field": field, "message": missing})
    elif isinstance(value, bool) or not isinstance(value, str | int):
        errors.append({"field": field, "message": f"must be a string, got {type(value).__name__}"})


def replay_fingerprint(payload: dict[str, Any]) -> dict[str, Any]:
    """What must match for a second call with the same messageId to be the same call (a retry), not a
    different call reusing the id. Times set at sending or receiving differ between retries; all else may not."""
    return {k: v for k, v in payload.items() if k not in VOLATILE_FIELDS}
