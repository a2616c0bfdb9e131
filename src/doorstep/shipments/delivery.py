"""Pure rules of the last mile: which delivery changes a customer may make now, slot checks, a driver's ETA
windows, proof of delivery checks, phone masking. No I/O: `now` comes in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from doorstep.errors import DoorstepError


class DeliveryErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    RULE_VIOLATED = "rule_violated"
    CONFLICT = "conflict"


class DeliveryError(DoorstepError):
    """Base of the last mile's errors (delivery changes, slots, driver rounds, proof of delivery)."""

    code = DeliveryErrorCode.INVALID
    status = 422


class InvalidChange(DeliveryError):
    code = DeliveryErrorCode.INVALID
    status = 422


class ChangeRefused(DeliveryError):
    code = DeliveryErrorCode.RULE_VIOLATED
    status = 422


class SlotFull(DeliveryError):
    code = DeliveryErrorCode.CONFLICT
    status = 409


class StopNotFound(DeliveryError):
    code = DeliveryErrorCode.NOT_FOUND
    status = 404


KINDS = ("slot", "pickup_point", "safe_place", "neighbour", "instructions")
REDIRECT_KINDS = frozenset({"pickup_point", "safe_place", "neighbour"})
FINAL_STATUSES = frozenset({"Delivered", "Expired"})
SAFE_PLACES = ("front_porch", "back_door", "garage", "shed", "reception", "other")
FAILURE_REASONS = ("not_home", "address_not_found", "access_denied", "refused", "damaged", "unsafe", "other")
MAX_INSTRUCTIONS_CHARS = 500  # fits a carrier's driver note field (DHL/DPD accept 500+)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

DEFAULT_CAPABILITIES_PATH = Path(__file__).parent / "carrier_capabilities.yaml"


@dataclass(frozen=True)
class Capabilities:
    kinds: frozenset[str]
    redirect_after_out_for_delivery: bool
    slot_change_cutoff_hours: float


def load_capabilities(path: Path | None = None) -> dict[str, Capabilities]:
    raw = yaml.safe_load((path or DEFAULT_CAPABILITIES_PATH).read_text())
    default = raw.get("default", {})
    result = {}
    for carrier, entry in raw.items():
        merged = {**default, **(entry or {})}
        unknown = set(merged["kinds"]) - set(KINDS)
        if unknown:
            raise ValueError(f"carrier {carrier}: unknown change kinds {sorted(unknown)}")
        result[carrier] = Capabilities(
            kinds=frozenset(merged["kinds"]),
            redirect_after_out_for_delivery=bool(merged["redirect_after_out_for_delivery"]),
            slot_change_cutoff_hours=float(merged["slot_change_cutoff_hours"]),
        )
    return result


def capabilities_for(table: dict[str, Capabilities], carrier: str) -> Capabilities:
    return table.get(carrier.lower(), table["default"])


@dataclass(frozen=True)
class ShipmentState:
    shipment_id: str
    carrier: str
    status: str
    region: str | None
    is_return: bool = False


@dataclass(frozen=True)
class Slot:
    id: str
    carrier: str
    region: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int

    @property
    def remaining(self) -> int:
        return max(0, self.capacity - self.booked)


def allowed_kinds(shipment: ShipmentState, caps: Capabilities) -> list[str]:
    """The changes the customer may make now, in display order (the tracking page offers only these)."""
    if shipment.is_return or shipment.status in FINAL_STATUSES or shipment.status == "AvailableForPickup":
        return []
    kinds = [k for k in KINDS if k in caps.kinds]
    if shipment.status == "OutForDelivery" and not caps.redirect_after_out_for_delivery:
        kinds = [k for k in kinds if k not in REDIRECT_KINDS and k != "slot"]
    return kinds


def validate_change(
    kind: str,
    detail: Any,
    *,
    shipment: ShipmentState,
    caps: Capabilities,
    now: datetime,
    slot: Slot | None = None,
) -> dict[str, Any]:
    """Returns the cleaned detail for a change the carrier and the shipment's state allow; raises otherwise."""
    if kind not in KINDS:
        raise InvalidChange(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind")
    if not isinstance(detail, dict):
        raise InvalidChange("detail must be an object", field="detail")
    if shipment.is_return:
        raise ChangeRefused("a return shipment cannot be changed by the customer", field="kind")
    if shipment.status in FINAL_STATUSES:
        raise ChangeRefused(
            f"the parcel is already {shipment.status.lower()}: nothing left to change", field="kind"
        )
    if kind not in caps.kinds:
        raise ChangeRefused(
            f"carrier {shipment.carrier} does not accept {kind.replace('_', ' ')} changes", field="kind"
        )
    if kind not in allowed_kinds(shipment, caps):
        if shipment.status == "OutForDelivery":
            raise ChangeRefused(
                f"the parcel is out for delivery and carrier {shipment.carrier} cannot redirect it or change the slot now; "
                "you can still add instructions for the driver",
                field="kind",
            )
        raise ChangeRefused(
            f"{kind.replace('_', ' ')} cannot be changed while the parcel is {shipment.status}", field="kind"
        )
    cleaned = _CLEANERS[kind](detail)
    if kind == "slot":
        if slot is None:
            raise InvalidChange(f"no delivery slot {cleaned['slot_id']!r}", field="detail.slot_id")
        check_slot(slot, shipment=shipment, caps=caps, now=now)
        cleaned.update(starts_at=slot.starts_at.isoformat(), ends_at=slot.ends_at.isoformat())
    return cleaned


def check_slot(slot: Slot, *, shipment: ShipmentState, caps: Capabilities, now: datetime) -> None:
    if slot.carrier != shipment.carrier or (shipment.region and slot.region != shipment.region):
        raise ChangeRefused("that slot is for another carrier or area", field="detail.slot_id")
    earliest = now + timedelta(hours=caps.slot_change_cutoff_hours)
    if slot.starts_at < earliest:
        raise ChangeRefused(
            f"slot starting {slot.starts_at:%Y-%m-%d %H:%M} is too soon: slots must start after "
            f"{earliest:%Y-%m-%d %H:%M} UTC",
            field="detail.slot_id",
        )
    if slot.remaining <= 0:
        raise SlotFull(
            f"the slot {slot.starts_at:%a %d %b %H:%M} is full: pick another", field="detail.slot_id"
        )


def _text(detail: dict[str, Any], name: str, *, max_chars: int, required: bool = True) -> str | None:
    value = detail.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidChange(f"{name} is required", field=f"detail.{name}")
        return None
    if not isinstance(value, str):
        raise InvalidChange(f"{name} must be text", field=f"detail.{name}")
    value = _CONTROL.sub("", value).strip()
    if len(value) > max_chars:
        raise InvalidChange(f"{name} is {len(value)} characters; at most {max_chars}", field=f"detail.{name}")
    return value


def _only(detail: dict[str, Any], *names: str) -> None:
    extra = sorted(set(detail) - set(names))
    if extra:
        raise InvalidChange(f"unexpected field {extra[0]!r}", field=f"detail.{extra[0]}")


def _clean_slot(d: dict[str, Any]) -> dict[str, Any]:
    _only(d, "slot_id")
    return {"slot_id": _text(d, "slot_id", max_chars=36)}


def _clean_pickup_point(d: dict[str, Any]) -> dict[str, Any]:
    _only(d, "point_id", "name", "address")
    return {
        "point_id": _text(d, "point_id", max_chars=50),
        "name": _text(d, "name", max_chars=200),
        "address": _text(d, "address", max_chars=300, required=False),
    }


def _clean_safe_place(d: dict[str, Any]) -> dict[str, Any]:
    _only(d, "place", "note")
    place = _text(d, "place", max_chars=30)
    if place not in SAFE_PLACES:
        raise InvalidChange(f"place must be one of {', '.join(SAFE_PLACES)}", field="detail.place")
    note = _text(d, "note", max_chars=200, required=place == "other")
    return {"place": place, "note": note}


def _clean_neighbour(d: dict[str, Any]) -> dict[str, Any]:
    _only(d, "name", "house")
    return {"name": _text(d, "name", max_chars=100), "house": _text(d, "house", max_chars=100)}


def _clean_instructions(d: dict[str, Any]) -> dict[str, Any]:
    _only(d, "text")
    return {"text": _text(d, "text", max_chars=MAX_INSTRUCTIONS_CHARS)}


_CLEANERS = {
    "slot": _clean_slot,
    "pickup_point": _clean_pickup_point,
    "safe_place": _clean_safe_place,
    "neighbour": _clean_neighbour,
    "instructions": _clean_instructions,
}


def describe_change(kind: str, detail: dict[str, Any]) -> str:
    """Plain words for the customer and the driver."""
    if kind == "slot":
        start = datetime.fromisoformat(str(detail["starts_at"]))
        end = datetime.fromisoformat(str(detail["ends_at"]))
        return f"Delivery slot {start:%a %d %b, %H:%M}–{end:%H:%M}"
    if kind == "pickup_point":
        return f"Redirected to pickup point {detail['name']}"
    if kind == "safe_place":
        place = str(detail["place"]).replace("_", " ")
        return f"Leave in a safe place: {detail.get('note') or place}"
    if kind == "neighbour":
        return f"Leave with neighbour {detail['name']} ({detail['house']})"
    return f"Instructions: {detail['text']}"


# ---- driver rounds -----------------------------------------------------------------------------------------

FIRST_STOP_MIN = 25  # depot to the first stop, typical urban round
PER_STOP_MIN = 12  # drive plus hand-over per stop
WINDOW_MIN = 40  # the window customers are told; narrow enough to plan around, wide enough to keep


def eta_window(departed_at: datetime, sequence: int) -> tuple[datetime, datetime]:
    """The window announced when the driver leaves the depot: centred on the stop's expected arrival."""
    if sequence < 1:
        raise ValueError("sequence starts at 1")
    centre = departed_at + timedelta(minutes=FIRST_STOP_MIN + (sequence - 1) * PER_STOP_MIN)
    start = centre - timedelta(minutes=WINDOW_MIN / 2)
    start = start.replace(second=0, microsecond=0) - timedelta(
        minutes=start.minute % 5
    )  # round down to 5 min
    return start, start + timedelta(minutes=WINDOW_MIN)


def mask_phone(phone: str | None) -> str:
    """Enough for the driver to recognise the number the customer will see, not enough to keep it."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 6:
        return "•" * len(digits)
    prefix = ("+" + digits[:2]) if phone.startswith("+") else digits[:2]
    return f"{prefix} {'•' * (len(digits) - 5)} {digits[-3:]}"


@dataclass(frozen=True)
class ProofInput:
    recipient_name: str | None
    has_photo: bool
    has_signature: bool
    latitude: float | None
    longitude: float | None


def validate_proof(proof: ProofInput, *, assignment_status: str) -> None:
    if assignment_status in ("delivered", "failed"):
        raise ChangeRefused(f"this stop is already {assignment_status}", field="stop")
    if not (proof.has_photo or proof.has_signature):
        raise InvalidChange("a proof needs a photo or a signature", field="photo")
    if proof.has_signature and not proof.recipient_name:
        raise InvalidChange("a signature needs the recipient's name", field="recipient_name")
    if proof.recipient_name is not None and len(proof.recipient_name) > 200:
        raise InvalidChange("recipient_name is longer than 200 characters", field="recipient_name")
    if (proof.latitude is None) != (proof.longitude is None):
        raise InvalidChange("send both latitude and longitude, or neither", field="latitude")
    if proof.latitude is not None and not -90 <= proof.latitude <= 90:
        raise InvalidChange("latitude must be between -90 and 90", field="latitude")
    if proof.longitude is not None and not -180 <= proof.longitude <= 180:
        raise InvalidChange("longitude must be between -180 and 180", field="longitude")


def validate_failure(reason: str, note: str | None, *, assignment_status: str) -> None:
    if assignment_status in ("delivered", "failed"):
        raise ChangeRefused(f"this stop is already {assignment_status}", field="stop")
    if reason not in FAILURE_REASONS:
        raise InvalidChange(f"reason must be one of {', '.join(FAILURE_REASONS)}", field="reason")
    if reason == "other" and not (note and note.strip()):
        raise InvalidChange("say what happened when the reason is 'other'", field="note")
    if note and len(note) > 500:
        raise InvalidChange("note is longer than 500 characters", field="note")
