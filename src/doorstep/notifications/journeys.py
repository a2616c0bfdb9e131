"""Loading journeys: the one shipped in the package until an admin saves another through the API, then the
saved one (validated, versioned). Parsed journeys are cached per version, so an event costs one small query."""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection

from doorstep.bus.messages import EVENT_TYPES
from doorstep.notifications.errors import JourneyInvalid
from doorstep.notifications.model import Journey, parse_journey
from doorstep.notifications.repository import NotificationRepository

DEFAULT_JOURNEY_PATH = Path(__file__).parent / "default_journey.yaml"
EVENT_MODULES = (
    "doorstep.orders.events",
    "doorstep.shipments.events",
    "doorstep.returns.events",
    "doorstep.feedback.events",
)

# High-volume internal events no customer message should hang on (each subscription costs an outbox row per
# event): a journey names the specific event instead (ShipmentOutForDelivery, not ShipmentStatusChanged).
NOT_JOURNEY_EVENTS = frozenset(
    {"ShipmentCreated", "ShipmentStatusChanged", "OrderUpdated", "OrderStepReached"}
)


@lru_cache(maxsize=1)
def event_fields() -> dict[str, set[str]]:
    """Customer-facing domain events a journey may react to, with their payload fields."""
    for module in EVENT_MODULES:
        importlib.import_module(module)
    found: dict[str, set[str]] = {}
    for name, cls in EVENT_TYPES.items():
        if cls.__module__ in EVENT_MODULES and name not in (
            "OrderEvent",
            "ShipmentEvent",
            "ReturnEvent",
            *NOT_JOURNEY_EVENTS,
        ):
            found[name] = {f.name for f in dataclasses.fields(cls)}
    return found


def parse_source(source: str, *, name: str = "default") -> tuple[Journey, dict[str, Any]]:
    """YAML (or JSON, which is YAML) text -> validated journey and its plain form."""
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise JourneyInvalid(
            f"journey: not valid YAML{where}: {getattr(exc, 'problem', exc)}", field="journey"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        # YAML 1.1 reads a bare `on:` key as the boolean true; store the key as written
        data["rules"] = [
            {("on" if k is True else k): v for k, v in rule.items()} if isinstance(rule, dict) else rule
            for rule in data["rules"]
        ]
    return parse_journey(data, event_fields=event_fields(), name=name), data


@lru_cache(maxsize=1)
def default_source() -> str:
    return DEFAULT_JOURNEY_PATH.read_text(encoding="utf-8")


class JourneyStore:
    """Thread-safe cache of the current journey, keyed by its stored version (0 = the shipped default). The
    version is looked up at most every `recheck_s`, so a saved journey takes effect within that time."""

    def __init__(self, *, recheck_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[int, Journey] | None = None
        self._checked_at = 0.0
        self.recheck_s = recheck_s

    def invalidate(self) -> None:
        self._checked_at = 0.0

    def current(self, conn: Connection, name: str = "default") -> Journey:
        cached = self._cached
        if cached is not None and time.monotonic() - self._checked_at < self.recheck_s:
            return cached[1]
        repo = NotificationRepository(conn)
        version = repo.journey_version(name) or 0
        self._checked_at = time.monotonic()
        if cached is not None and cached[0] == version:
            return cached[1]
        if version == 0:
            journey, _ = parse_source(default_source())
        else:
            row = repo.journey_row(name)
            assert row is not None
            journey = parse_journey(row.definition, event_fields=event_fields(), name=name)
        with self._lock:
            self._cached = (version, journey)
        return journey

    def source(self, conn: Connection, name: str = "default") -> tuple[str, int]:
        row = NotificationRepository(conn).journey_row(name)
        if row is None:
            return default_source(), 0
        return row.source, row.version
