"""Read side of shipments for the API: typed views built from the repository's aggregates."""

from __future__ import annotations

from sqlalchemy import Connection

from doorstep.shipments.model import Shipment, subtag_name
from doorstep.shipments.repository import ShipmentRepository
from doorstep.shipments.schemas import ShipmentRead, TrackingEventRead


def shipment_view(s: Shipment) -> ShipmentRead:
    return ShipmentRead(
        id=s.id,
        order_id=s.order_id,
        order_ref=s.order_ref,
        carrier=s.carrier,
        tracking_number=s.tracking_number,
        service=s.service,
        status=s.status.value,
        subtag=s.subtag,
        subtag_name=subtag_name(s.subtag),
        promised_from=s.promised_from,
        promised_to=s.promised_to,
        predicted_from=s.predicted_from,
        predicted_to=s.predicted_to,
        predicted_at=s.predicted_at,
        predicted_confidence=s.predicted_confidence,
        predicted_by=s.predicted_by,
        carrier_estimate=s.carrier_estimate,
        delay_reason=s.delay_reason,
        dispatched_at=s.dispatched_at,
        first_attempt_at=s.first_attempt_at,
        delivered_at=s.delivered_at,
        last_scan_at=s.last_scan_at,
        last_location=s.last_location,
        pickup_deadline=s.pickup_deadline,
        timeline=[
            TrackingEventRead(
                occurred_at=e.occurred_at,
                status=e.status.value,
                subtag=e.subtag,
                subtag_name=subtag_name(e.subtag),
                raw_code=e.raw_code,
                message=e.message,
                location=e.location,
                latitude=e.latitude,
                longitude=e.longitude,
                source=e.source,
            )
            for e in s.timeline
        ],
    )


def find_shipments(
    conn: Connection, *, tracking_number: str | None, order_id: str | None
) -> list[ShipmentRead]:
    repo = ShipmentRepository(conn)
    if order_id:
        return [shipment_view(s) for s in repo.list_for_order(order_id)]
    if tracking_number:
        found = repo.get_by_tracking(tracking_number)
        return [shipment_view(found)] if found else []
    return []
