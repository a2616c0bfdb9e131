"""The rules of proactive messages, as plain Python: journeys (which event becomes which message, when, and
when it no longer should), channel choice with consent and fallback, quiet hours in the customer's own time
zone, the daily cap, and how provider errors are classed. No I/O: `now` and the data come in as arguments.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from doorstep.notifications.errors import JourneyInvalid

CHANNELS = ("email", "sms", "whatsapp", "messenger", "webhook", "outbox", "chat")
TOPICS = ("service", "marketing")
STATUSES = ("queued", "sent", "delivered", "read", "failed", "suppressed")
# Status only moves forward: a late "sent" callback never undoes "delivered".
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4, "suppressed": 4}
SHIPMENT_STATUSES = (
    "Pending",
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "Delivered",
    "AvailableForPickup",
    "Exception",
    "Expired",
)
ORDER_STATUSES = (
    "placed",
    "paid",
    "picked",
    "packed",
    "dispatched",
    "out_for_delivery",
    "delivered",
    "invoiced",
    "follow_up_sent",
    "cancelled",
    "refunded",
)
CONDITION_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists")
DEFAULT_QUIET_START = "21:00"
DEFAULT_QUIET_END = "08:00"
DEFAULT_DAILY_CAP = 6  # journey messages per customer per local day; replies to the customer are not counted
DEFAULT_CHANNELS = ("whatsapp", "sms", "email")
MAX_SEND_ATTEMPTS = 5  # transient failures on one channel before it counts as failed and we fall back
MAX_DELAY_S = 90 * 24 * 3600  # a journey step further out than this is surely a typo
STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_KEYWORDS = frozenset({"START", "UNSTOP", "YES", "OPTIN"})


# ---- journeys ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any

    def holds(self, payload: dict[str, Any]) -> bool:
        actual = payload.get(self.field)
        if self.op == "exists":
            return (actual is not None) == bool(self.value)
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        if self.op == "in":
            return actual in self.value
        if self.op == "not_in":
            return actual not in self.value
        if actual is None:
            return False
        try:
            if self.op == "gt":
                return bool(actual > self.value)
            if self.op == "gte":
                return bool(actual >= self.value)
            if self.op == "lt":
                return bool(actual < self.value)
            if self.op == "lte":
                return bool(actual <= self.value)
        except TypeError:
            return False
        return False


@dataclass(frozen=True)
class Rule:
    """One step of a journey: `event` becomes a `trigger` message after `delay_s`, if `conditions` hold, unless
    by then the shipment or order reached a status in `cancel_if_*` (the reason is gone)."""

    trigger: str
    event: str
    dedupe: str
    topic: str = "service"
    is_urgent: bool = False  # urgent messages ignore quiet hours and the daily cap
    delay_s: int = 0
    conditions: tuple[Condition, ...] = ()
    cancel_if_shipment_status: tuple[str, ...] = ()
    cancel_if_order_status: tuple[str, ...] = ()
    is_enabled: bool = True

    def matches(self, payload: dict[str, Any]) -> bool:
        return self.is_enabled and all(c.holds(payload) for c in self.conditions)

    def dedupe_key(self, event_type: str, payload: dict[str, Any]) -> str:
        return self.dedupe.format_map(format_fields(self.trigger, event_type, payload))[:300]


@dataclass(frozen=True)
class Journey:
    name: str
    rules: tuple[Rule, ...]
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    quiet_start: str = DEFAULT_QUIET_START
    quiet_end: str = DEFAULT_QUIET_END
    daily_cap: int = DEFAULT_DAILY_CAP

    def rules_for(self, event_type: str) -> list[Rule]:
        return [r for r in self.rules if r.event == event_type]


def format_fields(trigger: str, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a dedupe template may name: the event's fields, `trigger`, `occurred_date` (YYYY-MM-DD) and
    `state`, a short hash of the event's content (without its id and time), so a redelivered or re-emitted
    identical fact maps to the same key and a changed one (a new predicted window) to a new key."""
    stable = {k: v for k, v in payload.items() if k not in ("event_id", "occurred_at")}
    state = hashlib.sha1(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:12]
    fields = {k: ("" if v is None else v) for k, v in payload.items()}
    fields.update(
        trigger=trigger, event=event_type, state=state, occurred_date=str(payload.get("occurred_at", ""))[:10]
    )
    return fields


def _duration_s(value: Any, path: str) -> int:
    if value in (None, 0):
        return 0
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, dict):
        units = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
        unknown = set(value) - set(units)
        if unknown:
            raise JourneyInvalid(
                f"{path}: unknown unit {sorted(unknown)[0]!r}; use seconds, minutes, hours or days",
                field=path,
            )
        try:
            seconds = sum(float(value[k]) * units[k] for k in value)
        except (TypeError, ValueError):
            raise JourneyInvalid(f"{path}: each unit needs a number", field=path) from None
    else:
        raise JourneyInvalid(f"{path}: give a number of seconds or a mapping like {{hours: 2}}", field=path)
    if seconds < 0 or seconds > MAX_DELAY_S:
        raise JourneyInvalid(f"{path}: {seconds:g} s is outside 0 to {MAX_DELAY_S} s (90 days)", field=path)
    return int(seconds)


def _hhmm(value: Any, path: str) -> str:
    try:
        parsed = time.fromisoformat(str(value))
    except ValueError:
        raise JourneyInvalid(f"{path}: {value!r} is not a time like 21:00", field=path) from None
    return parsed.strftime("%H:%M")


def _status_list(value: Any, allowed: tuple[str, ...], path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise JourneyInvalid(f"{path}: give a list of statuses", field=path)
    for i, item in enumerate(value):
        if item not in allowed:
            raise JourneyInvalid(
                f"{path}[{i}]: {item!r} is not one of {', '.join(allowed)}", field=f"{path}[{i}]"
            )
    return tuple(value)


RULE_KEYS = {
    "trigger",
    "on",
    "dedupe",
    "topic",
    "urgent",
    "delay",
    "when",
    "cancel_if",
    "enabled",
    "description",
}


def parse_journey(data: Any, *, event_fields: dict[str, set[str]], name: str = "default") -> Journey:
    """Validates a journey as loaded from YAML or JSON; raises JourneyInvalid naming the first bad field.

    `event_fields` maps each known domain event type to its payload field names."""
    if not isinstance(data, dict):
        raise JourneyInvalid("journey: expected a mapping with `rules`", field="journey")
    unknown = set(data) - {"name", "channels", "quiet_hours", "daily_cap", "rules", "version", "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise JourneyInvalid(f"{key}: unknown key", field=key)
    channels = data.get("channels", list(DEFAULT_CHANNELS))
    if not isinstance(channels, list) or not channels:
        raise JourneyInvalid("channels: give a non-empty list", field="channels")
    for i, ch in enumerate(channels):
        if ch not in CHANNELS:
            raise JourneyInvalid(
                f"channels[{i}]: {ch!r} is not one of {', '.join(CHANNELS)}", field=f"channels[{i}]"
            )
    quiet = data.get("quiet_hours") or {}
    if not isinstance(quiet, dict):
        raise JourneyInvalid("quiet_hours: expected {start: '21:00', end: '08:00'}", field="quiet_hours")
    quiet_start = _hhmm(quiet.get("start", DEFAULT_QUIET_START), "quiet_hours.start")
    quiet_end = _hhmm(quiet.get("end", DEFAULT_QUIET_END), "quiet_hours.end")
    cap = data.get("daily_cap", DEFAULT_DAILY_CAP)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise JourneyInvalid(f"daily_cap: {cap!r} must be a whole number of at least 1", field="daily_cap")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise JourneyInvalid("rules: give a non-empty list of rules", field="rules")
    rules = [_parse_rule(raw, f"rules[{i}]", event_fields) for i, raw in enumerate(raw_rules)]
    return Journey(
        name=str(data.get("name", name)),
        rules=tuple(rules),
        channels=tuple(channels),
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        daily_cap=cap,
    )


def _parse_rule(raw: Any, path: str, event_fields: dict[str, set[str]]) -> Rule:
    if not isinstance(raw, dict):
        raise JourneyInvalid(f"{path}: expected a mapping", field=path)
    if True in raw:  # YAML 1.1 reads a bare `on:` key as the boolean true
        raw = {("on" if k is True else k): v for k, v in raw.items()}
    unknown = {str(k) for k in raw} - RULE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise JourneyInvalid(f"{path}.{key}: unknown key", field=f"{path}.{key}")
    trigger = raw.get("trigger")
    if not isinstance(trigger, str) or not trigger.replace("_", "").isalnum() or len(trigger) > 50:
        raise JourneyInvalid(
            f"{path}.trigger: give a name of letters, digits and _ (at most 50)", field=f"{path}.trigger"
        )
    event = raw.get("on")
    if event not in event_fields:
        raise JourneyInvalid(
            f"{path}.on: {event!r} is not a domain event; known: {', '.join(sorted(event_fields))}",
            field=f"{path}.on",
        )
    fields = event_fields[event]
    topic = raw.get("topic", "service")
    if topic not in TOPICS:
        raise JourneyInvalid(
            f"{path}.topic: {topic!r} is not one of service, marketing", field=f"{path}.topic"
        )
    conditions = []
    when = raw.get("when") or {}
    if not isinstance(when, dict):
        raise JourneyInvalid(f"{path}.when: expected a mapping of field to test", field=f"{path}.when")
    for fname, test in when.items():
        fpath = f"{path}.when.{fname}"
        if fname not in fields:
            raise JourneyInvalid(f"{fpath}: {event} has no field {fname!r}", field=fpath)
        if not isinstance(test, dict):
            test = {"eq": test}
        for op, value in test.items():
            if op not in CONDITION_OPS:
                raise JourneyInvalid(
                    f"{fpath}.{op}: unknown test; use one of {', '.join(CONDITION_OPS)}",
                    field=f"{fpath}.{op}",
                )
            if op in ("in", "not_in") and not isinstance(value, list):
                raise JourneyInvalid(f"{fpath}.{op}: give a list", field=f"{fpath}.{op}")
            conditions.append(Condition(fname, op, value))
    dedupe = (
        raw.get("dedupe")
        or "{trigger}:{" + ("shipment_id" if "shipment_id" in fields else "order_id") + "}:{state}"
    )
    try:
        probe = {f: "x" for f in fields} | {"trigger": "x", "event": "x", "state": "x", "occurred_date": "x"}
        dedupe.format_map(probe)
    except (KeyError, ValueError, IndexError) as exc:
        raise JourneyInvalid(
            f"{path}.dedupe: {dedupe!r} names {exc} which {event} does not have", field=f"{path}.dedupe"
        ) from None
    cancel_if = raw.get("cancel_if") or {}
    if not isinstance(cancel_if, dict) or set(cancel_if) - {"shipment_status", "order_status"}:
        raise JourneyInvalid(
            f"{path}.cancel_if: expected shipment_status and/or order_status lists", field=f"{path}.cancel_if"
        )
    enabled = raw.get("enabled", True)
    urgent = raw.get("urgent", False)
    for key, value in (("enabled", enabled), ("urgent", urgent)):
        if not isinstance(value, bool):
            raise JourneyInvalid(f"{path}.{key}: true or false", field=f"{path}.{key}")
    return Rule(
        trigger=trigger,
        event=event,
        dedupe=dedupe,
        topic=topic,
        is_urgent=urgent,
        delay_s=_duration_s(raw.get("delay"), f"{path}.delay"),
        conditions=tuple(conditions),
        cancel_if_shipment_status=_status_list(
            cancel_if.get("shipment_status"), SHIPMENT_STATUSES, f"{path}.cancel_if.shipment_status"
        ),
        cancel_if_order_status=_status_list(
            cancel_if.get("order_status"), ORDER_STATUSES, f"{path}.cancel_if.order_status"
        ),
        is_enabled=enabled,
    )


# ---- what was decided for a message, checked again at send time -------------------------------------------


def reason_gone(
    *,
    cancel_if_shipment_status: list[str],
    cancel_if_order_status: list[str],
    shipment_status: str | None,
    order_status: str | None,
) -> str | None:
    """Why a queued message no longer applies (no "running late" once delivered), or None."""
    if shipment_status and shipment_status in cancel_if_shipment_status:
        return f"shipment is now {shipment_status}"
    if order_status and order_status in cancel_if_order_status:
        return f"order is now {order_status}"
    return None


# ---- time zones, quiet hours, the daily cap -------------------------------------------------------------


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(now: datetime, *, tz_name: str | None, start: str, end: str) -> datetime | None:
    """If `now` falls in the customer's quiet hours (local time, window may cross midnight), when they end (UTC)."""
    tz = zone(tz_name)
    local = now.astimezone(tz)
    start_t, end_t = time.fromisoformat(start), time.fromisoformat(end)
    if start_t == end_t:
        return None
    t = local.time()
    if start_t < end_t:
        inside = start_t <= t < end_t
        end_day = local.date()
    else:
        inside = t >= start_t or t < end_t
        end_day = local.date() + timedelta(days=1) if t >= start_t else local.date()
    if not inside:
        return None
    local_end = datetime.combine(end_day, end_t, tzinfo=tz)
    return local_end.astimezone(UTC)


def local_day_start(now: datetime, tz_name: str | None) -> datetime:
    tz = zone(tz_name)
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0, 0), tzinfo=tz).astimezone(UTC)


# ---- channels and consent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelChoice:
    channel: str
    address: str


def is_consented(consents: dict[tuple[str, str], bool], channel: str, topic: str) -> bool:
    """Service messages go unless the customer said no; marketing needs a yes."""
    given = consents.get((channel, topic))
    if topic == "marketing":
        return given is True
    return given is not False


def plan_channels(
    *,
    order: list[str],
    addresses: dict[str, str],
    consents: dict[tuple[str, str], bool],
    topic: str,
    available: set[str],
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[ChannelChoice], str | None]:
    """The channels to try, in the customer's order: those we can reach them on, that are set up, and that
    they consented to. When empty, the reason: opted_out (reachable but said no) or no_channel."""
    choices: list[ChannelChoice] = []
    refused = False
    for channel in order:
        if channel in exclude or channel not in available or not addresses.get(channel):
            continue
        if channel != "outbox" and not is_consented(consents, channel, topic):
            refused = True
            continue
        choices.append(ChannelChoice(channel, addresses[channel]))
    if choices:
        return choices, None
    return [], "opted_out" if refused else "no_channel"


def keyword_consent(text: str) -> bool | None:
    """STOP-style keywords withdraw consent, START-style ones give it back; other text: None."""
    word = text.strip().upper().rstrip(".!")
    if word in STOP_KEYWORDS:
        return False
    if word in START_KEYWORDS:
        return True
    return None


def locale_of(value: str | None, *, supported: tuple[str, ...]) -> str:
    """'de-DE' -> 'de' when German templates exist; anything unknown -> 'en'."""
    if value:
        lang = value.replace("_", "-").split("-")[0].lower()
        if lang in supported:
            return lang
    return "en"


# ---- provider outcomes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """What a channel adapter reports. `is_transient` failures are retried with backoff, others are not."""

    is_sent: bool
    provider_message_id: str | None = None
    is_transient: bool = False
    http_status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Retry-After as seconds: either delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify_http(status: int, *, retry_after: str | None, body: str, now: datetime) -> SendOutcome:
    """5xx and 429 are worth retrying (429 after Retry-After); any other 4xx will fail the same way again."""
    is_transient = status >= 500 or status in (408, 425, 429)
    return SendOutcome(
        is_sent=False,
        is_transient=is_transient,
        http_status=status,
        error=f"HTTP {status}: {body[:300]}",
        retry_after_s=parse_retry_after(retry_after, now=now),
    )


def next_attempt_at(
    now: datetime, *, attempt: int, base_s: float, max_s: float, retry_after_s: float | None
) -> datetime:
    """Exponential backoff (base * 2^(attempt-1), capped), never sooner than the provider's Retry-After."""
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return now + timedelta(seconds=delay)
