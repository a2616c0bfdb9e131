"""Domain events: facts in the past tense, recorded by aggregates and delivered through the outbox."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from doorstep.ids import new_id

EVENT_TYPES: dict[str, type[DomainEvent]] = {}


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Base of every domain event. Subclasses are dataclasses whose fields are JSON-friendly values.

    `key` decides ordering: events with the same key reach each handler in the order they were recorded.

    >>> @dataclass(frozen=True, kw_only=True)
    ... class ShipmentDelayed(DomainEvent):
    ...     shipment_id: str
    ...     @property
    ...     def key(self) -> str: return f"shipment:{self.shipment_id}"
    """

    occurred_at: datetime
    event_id: str = field(default_factory=new_id)

    type_name: ClassVar[str] = "DomainEvent"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__
        EVENT_TYPES[cls.__name__] = cls

    @property
    def key(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define `key`")

    def payload(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DomainEvent:
        kwargs = {}
        for name, hint in _field_hints(cls):
            if name in payload:
                kwargs[name] = _from_json(payload[name], hint)
        return cls(**kwargs)


_FIELD_HINTS: dict[type[DomainEvent], tuple[tuple[str, Any], ...]] = {}


def _field_hints(cls: type[DomainEvent]) -> tuple[tuple[str, Any], ...]:
    """Field names and resolved type hints of an event class, worked out once per class: resolving hints
    evaluates the module's annotations (about a millisecond), and a worker turns thousands of payloads a
    second back into events."""
    found = _FIELD_HINTS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELD_HINTS[cls] = tuple((f.name, hints.get(f.name)) for f in dataclasses.fields(cls))
    return found


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _from_json(value: Any, hint: Any) -> Any:
    if value is None or hint is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(value, args[0]) if len(args) == 1 else value
    if hint is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if hint is Decimal:
        return Decimal(str(value))
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class Envelope:
    """What a handler receives: the stored event, its type and payload as JSON values."""

    event_id: str
    event_type: str
    key: str
    occurred_at: datetime
    payload: dict[str, Any]
    attempt: int = 1

    def event(self) -> DomainEvent:
        """The typed event, when its class is known."""
        return EVENT_TYPES[self.event_type].from_payload(self.payload)
