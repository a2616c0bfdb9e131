"""What every tracking adapter produces, and the small parsing helpers they share.

Adapters validate at the edge (raising InvalidTrackingPayload naming the field, so nothing is stored) and
parse again in the worker from the raw payload kept in the event log, so a replay with extended code tables
re-normalises old scans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from doorstep.shipments.errors import InvalidTrackingPayload
from doorstep.shipments.model import TrackingEvent

MAX_EVENTS_PER_REQUEST = 1000  # generic JSON and CSV: larger files go through `doorstep shipments import-csv`


@dataclass
class ParsedTracking:
    """One tracking number's update: what we learnt about the shipment, and its scans."""

    carrier: str
    tracking_number: str
    scans: list[TrackingEvent] = field(default_factory=list)
    order_ref: str | None = None  # the shop's order number (orders.external_id)
    service: str | None = None
    origin_region: str | None = None
    destination_region: str | None = None
    destination_postcode: str | None = None
    carrier_estimate: datetime | None = None
    is_return: bool = False


def invalid(field_name: str, message: str) -> InvalidTrackingPayload:
    return InvalidTrackingPayload(
        f"{field_name}: {message}", errors=[{"field": field_name, "message": message}]
    )


def require_str(obj: dict[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise invalid(f"{path}{key}", "required")
    if not isinstance(value, str | int):
        raise invalid(f"{path}{key}", f"must be a string, got {type(value).__name__}")
    return str(value).strip()


def optional_str(obj: dict[str, Any], key: str, path: str, *, max_len: int = 200) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float):
        raise invalid(f"{path}{key}", f"must be a string, got {type(value).__name__}")
    text = str(value).strip()
    return text[:max_len] or None


def optional_float(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise invalid(name, f"must be a number, got {value!r}") from None
    return number


def parse_time(value: Any, name: str) -> datetime:
    """ISO 8601 -> aware UTC. A time without an offset is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(name, "required ISO 8601 timestamp")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(name, f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_optional_time(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value.strip()) == 10:  # a date: the end of that day
        try:
            day = datetime.fromisoformat(value.strip()).date()
        except ValueError:
            raise invalid(name, f"{value!r} is not a date") from None
        return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
    return parse_time(value, name)


# ISO 3166 alpha-3 -> alpha-2 for the countries carriers report most; others are kept as None (the city and
# region still describe the scan).
ALPHA3_TO_2 = {
    "GBR": "GB",
    "IRL": "IE",
    "FRA": "FR",
    "DEU": "DE",
    "NLD": "NL",
    "BEL": "BE",
    "LUX": "LU",
    "ESP": "ES",
    "PRT": "PT",
    "ITA": "IT",
    "AUT": "AT",
    "CHE": "CH",
    "DNK": "DK",
    "SWE": "SE",
    "NOR": "NO",
    "FIN": "FI",
    "POL": "PL",
    "CZE": "CZ",
    "SVK": "SK",
    "HUN": "HU",
    "ROU": "RO",
    "BGR": "BG",
    "GRC": "GR",
    "HRV": "HR",
    "SVN": "SI",
    "EST": "EE",
    "LVA": "LV",
    "LTU": "LT",
    "ISL": "IS",
    "MLT": "MT",
    "CYP": "CY",
    "USA": "US",
    "CAN": "CA",
    "MEX": "MX",
    "BRA": "BR",
    "ARG": "AR",
    "CHL": "CL",
    "COL": "CO",
    "AUS": "AU",
    "NZL": "NZ",
    "CHN": "CN",
    "HKG": "HK",
    "TWN": "TW",
    "JPN": "JP",
    "KOR": "KR",
    "SGP": "SG",
    "MYS": "MY",
    "THA": "TH",
    "VNM": "VN",
    "IND": "IN",
    "ARE": "AE",
    "SAU": "SA",
    "ISR": "IL",
    "TUR": "TR",
    "ZAF": "ZA",
    "UKR": "UA",
}


def country_code(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().upper()
    if len(text) == 2 and text.isalpha():
        return text
    return ALPHA3_TO_2.get(text)
