"""Doorstep's own tracking format, for carriers with neither AfterShip nor Karrio: JSON and CSV.

JSON (POST /api/v1/tracking-events): {"events": [<event>, ...]} (or one event object), at most 1,000 per call.
An event:

    {"carrier": "dhl", "tracking_number": "00340434161234567890",
     "occurred_at": "2026-11-16T08:10:00Z",
     "status": "InTransit",              # or a carrier `code` found in the carrier's code table (or both)
     "subtag": "left_with_neighbour",    # optional: a code (Delivered_005) or a readable name
     "code": "AF", "message": "Arrived at facility",
     "location": {"city": "Leeds", "region": "West Yorkshire", "country": "GB", "postcode": "LS1",
                  "latitude": 53.8, "longitude": -1.55},       # or the same keys at the top level
     "order_id": "1001",                 # optional: the shop's order number, links the shipment
     "service": "express", "estimated_delivery": "2026-11-18"}

CSV (POST /api/v1/tracking-events.csv, `doorstep shipments import-csv FILE`): a header row with the same flat
names: carrier, tracking_number, occurred_at, status, subtag, code, message, city, region, country, postcode,
latitude, longitude, order_id, service, estimated_delivery.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from doorstep.shipments.carriers.codes import CodeTables
from doorstep.shipments.carriers.common import (
    MAX_EVENTS_PER_REQUEST,
    ParsedTracking,
    country_code,
    invalid,
    optional_float,
    optional_str,
    parse_optional_time,
    parse_time,
    require_str,
)
from doorstep.shipments.model import Status, TrackingEvent, normalise_subtag

CSV_COLUMNS = (
    "carrier",
    "tracking_number",
    "occurred_at",
    "status",
    "subtag",
    "code",
    "message",
    "city",
    "region",
    "country",
    "postcode",
    "latitude",
    "longitude",
    "order_id",
    "service",
    "estimated_delivery",
)


def events_of(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "events" in body:
        events = body["events"]
        if not isinstance(events, list):
            raise invalid("events", "must be an array of tracking events")
    elif isinstance(body, dict):
        events = [body]
    elif isinstance(body, list):
        events = body
    else:
        raise invalid("body", 'expected {"events": [...]} or one event object')
    if not events:
        raise invalid("events", "empty: send at least one tracking event")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise invalid("events", f"{len(events)} events; at most {MAX_EVENTS_PER_REQUEST} per request")
    return events


def parse_events(body: Any, tables: CodeTables, *, source: str = "tracking") -> list[ParsedTracking]:
    """All events or none: the first bad event raises, naming its index and field."""
    grouped: dict[tuple[str, str], ParsedTracking] = {}
    for index, event in enumerate(events_of(body)):
        path = f"events[{index}]."
        if not isinstance(event, dict):
            raise invalid(path[:-1], "must be an object")
        scan = parse_event(event, path, tables, source=source)
        tracking = grouped.get((scan.carrier, scan.tracking_number))
        if tracking is None:
            tracking = grouped[(scan.carrier, scan.tracking_number)] = ParsedTracking(
                carrier=scan.carrier, tracking_number=scan.tracking_number
            )
        tracking.scans.append(scan)
        tracking.order_ref = optional_str(event, "order_id", path, max_len=100) or tracking.order_ref
        tracking.service = optional_str(event, "service", path, max_len=50) or tracking.service
        tracking.origin_region = (
            optional_str(event, "origin_region", path, max_len=100) or tracking.origin_region
        )
        tracking.destination_region = (
            optional_str(event, "destination_region", path, max_len=100) or tracking.destination_region
        )
        estimate = parse_optional_time(event.get("estimated_delivery"), f"{path}estimated_delivery")
        tracking.carrier_estimate = estimate or tracking.carrier_estimate
    return list(grouped.values())


def parse_event(event: dict[str, Any], path: str, tables: CodeTables, *, source: str) -> TrackingEvent:
    carrier = tables.carrier_slug(require_str(event, "carrier", path))
    number = require_str(event, "tracking_number", path)
    if len(number) > 100:
        raise invalid(f"{path}tracking_number", "longer than 100 characters")
    occurred_at = parse_time(event.get("occurred_at"), f"{path}occurred_at")
    code = optional_str(event, "code", path, max_len=100)
    mapping = tables.lookup(carrier, code)
    raw_status = event.get("status")
    if raw_status not in (None, ""):
        try:
            status = Status.parse(str(raw_status))
        except ValueError as exc:
            raise invalid(f"{path}status", str(exc)) from None
    elif mapping is not None:
        status = mapping.status
    elif code is not None:
        raise invalid(
            f"{path}code",
            f"unknown code {code!r} for carrier {carrier!r}: send `status`, or add the code to a carrier code "
            "table (DOORSTEP_CARRIER_CODES_DIR)",
        )
    else:
        raise invalid(f"{path}status", "required (or a carrier `code` from the carrier's code table)")
    try:
        subtag = normalise_subtag(optional_str(event, "subtag", path), status)
    except ValueError as exc:
        raise invalid(f"{path}subtag", str(exc)) from None
    if subtag is None and mapping is not None and mapping.status == status:
        subtag = mapping.subtag
    location = event.get("location")
    where: dict[str, Any] = location if isinstance(location, dict) else event
    where_path = f"{path}location." if isinstance(location, dict) else path
    if location is not None and not isinstance(location, dict | str):
        raise invalid(f"{path}location", "must be an object with city, region, country, postcode, ...")
    city = optional_str(where, "city", where_path, max_len=100)
    if isinstance(location, str):
        city = location[:100]
    return TrackingEvent(
        carrier=carrier,
        tracking_number=number,
        occurred_at=occurred_at,
        status=status,
        subtag=subtag,
        raw_code=code,
        message=optional_str(event, "message", path, max_len=2000),
        city=city,
        region=optional_str(where, "region", where_path, max_len=100),
        country=country_code(where.get("country")),
        postcode=optional_str(where, "postcode", where_path, max_len=20),
        latitude=optional_float(where.get("latitude"), f"{where_path}latitude"),
        longitude=optional_float(where.get("longitude"), f"{where_path}longitude"),
        source=source,
    )


def csv_to_events(text: str) -> list[dict[str, Any]]:
    """CSV rows -> generic JSON events (empty cells dropped). Unknown columns are an error, so typos show."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise invalid("csv", "empty file: the first row must name the columns")
    names = [n.strip() for n in reader.fieldnames]
    unknown = [n for n in names if n not in CSV_COLUMNS]
    if unknown:
        raise invalid("csv", f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join(CSV_COLUMNS)}")
    for required in ("carrier", "tracking_number", "occurred_at"):
        if required not in names:
            raise invalid("csv", f"missing column {required}")
    events = []
    for row in reader:
        events.append({k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()})
    return events
