"""Persistence of shipments and their scans. Repositories never commit: the unit of work does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, tuple_, update

from doorstep.db.dialect import insert_ignore
from doorstep.orders.tables import orders
from doorstep.shipments.errors import ShipmentNotFound
from doorstep.shipments.model import Shipment, Status, TrackingEvent
from doorstep.shipments.tables import shipments, tracking_events

TrackingKey = tuple[str, str]  # (carrier, tracking_number)

_SCAN_COLUMNS = [
    tracking_events.c.carrier,
    tracking_events.c.tracking_number,
    tracking_events.c.occurred_at,
    tracking_events.c.status,
    tracking_events.c.subtag,
    tracking_events.c.raw_code,
    tracking_events.c.message,
    tracking_events.c.city,
    tracking_events.c.region,
    tracking_events.c.country,
    tracking_events.c.postcode,
    tracking_events.c.latitude,
    tracking_events.c.longitude,
    tracking_events.c.source,
]
_MANY = 500  # keys per IN (...) query; keeps each statement well under SQLite's variable limit


def _chunks(items: Sequence[Any], size: int = _MANY) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def scan_from_row(row: Any) -> TrackingEvent:
    return TrackingEvent(
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        occurred_at=row.occurred_at,
        status=Status(row.status),
        subtag=row.subtag,
        raw_code=row.raw_code,
        message=row.message,
        city=row.city,
        region=row.region,
        country=row.country,
        postcode=row.postcode,
        latitude=row.latitude,
        longitude=row.longitude,
        source=row.source,
    )


def scan_row(scan: TrackingEvent, *, shipment_id: str | None, received_at: datetime) -> dict[str, Any]:
    return {
        "shipment_id": shipment_id,
        "carrier": scan.carrier,
        "tracking_number": scan.tracking_number,
        "occurred_at": scan.occurred_at,
        "status": scan.status.value,
        "subtag": scan.subtag,
        "raw_code": scan.raw_code,
        "message": scan.message,
        "city": scan.city,
        "region": scan.region,
        "country": scan.country,
        "postcode": scan.postcode,
        "latitude": scan.latitude,
        "longitude": scan.longitude,
        "source": scan.source,
        "dedupe_key": scan.dedupe_key,
        "received_at": received_at,
    }


def _shipment_values(s: Shipment) -> dict[str, Any]:
    return {
        "id": s.id,
        "order_id": s.order_id,
        "carrier": s.carrier,
        "tracking_number": s.tracking_number,
        "service": s.service,
        "is_return": s.is_return,
        "status": s.status.value,
        "subtag": s.subtag,
        "origin_region": s.origin_region,
        "destination_region": s.destination_region,
        "destination_postcode": s.destination_postcode,
        "promised_from": s.promised_from,
        "promised_to": s.promised_to,
        "predicted_from": s.predicted_from,
        "predicted_to": s.predicted_to,
        "predicted_confidence": s.predicted_confidence,
        "delay_reason": s.delay_reason,
        "dispatched_at": s.dispatched_at,
        "first_attempt_at": s.first_attempt_at,
        "delivered_at": s.delivered_at,
        "last_scan_at": s.last_scan_at,
        "last_location": s.last_location,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "order_ref": s.order_ref,
        "predicted_at": s.predicted_at,
        "predicted_by": s.predicted_by,
        "carrier_estimate": s.carrier_estimate,
        "status_since": s.status_since,
        "pickup_deadline": s.pickup_deadline,
        "scan_count": s.scan_count,
        "alerts": sorted(s.alerts),
    }


def shipment_from_row(row: Any) -> Shipment:
    return Shipment(
        id=row.id,
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        status=Status(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        order_id=row.order_id,
        customer_id=row.customer_id,
        order_ref=row.order_ref,
        service=row.service,
        is_return=bool(row.is_return),
        subtag=row.subtag,
        origin_region=row.origin_region,
        destination_region=row.destination_region,
        destination_postcode=row.destination_postcode,
        promised_from=row.promised_from,
        promised_to=row.promised_to,
        predicted_from=row.predicted_from,
        predicted_to=row.predicted_to,
        predicted_at=row.predicted_at,
        predicted_confidence=row.predicted_confidence,
        predicted_by=row.predicted_by,
        carrier_estimate=row.carrier_estimate,
        delay_reason=row.delay_reason,
        dispatched_at=row.dispatched_at,
        first_attempt_at=row.first_attempt_at,
        delivered_at=row.delivered_at,
        last_scan_at=row.last_scan_at,
        last_location=row.last_location,
        status_since=row.status_since,
        pickup_deadline=row.pickup_deadline,
        scan_count=row.scan_count or 0,
        alerts=set(row.alerts or []),
    )


# What scans and predictions change on a shipment (the projection updates only these).
TRACKING_COLUMNS = (
    "order_id",
    "status",
    "subtag",
    "service",
    "origin_region",
    "destination_region",
    "destination_postcode",
    "predicted_from",
    "predicted_to",
    "predicted_at",
    "predicted_confidence",
    "predicted_by",
    "delay_reason",
    "dispatched_at",
    "first_attempt_at",
    "delivered_at",
    "last_scan_at",
    "last_location",
    "updated_at",
    "order_ref",
    "carrier_estimate",
    "status_since",
    "pickup_deadline",
    "scan_count",
    "alerts",
)
# What the periodic checks change.
CHECK_COLUMNS = (
    "predicted_from",
    "predicted_to",
    "predicted_at",
    "predicted_confidence",
    "predicted_by",
    "delay_reason",
    "alerts",
    "updated_at",
)


class ShipmentRepository:
    """Loads and stores Shipment aggregates and their timelines.

    >>> repo = ShipmentRepository(conn)
    >>> shipment = repo.get_by_tracking("00340434161234567890", carrier="dhl")
    """

    def __init__(self, conn: Connection):
        self.conn = conn

    # ---- reads --------------------------------------------------------------------------------------------

    def _select(self, *, lock: bool = False) -> Any:
        query = select(shipments, orders.c.customer_id).select_from(
            shipments.outerjoin(orders, orders.c.id == shipments.c.order_id)
        )
        if lock:
            query = query.with_for_update(of=shipments)
        return query

    def _load(self, query: Any, *, with_timeline: bool) -> list[Shipment]:
        found = [shipment_from_row(row) for row in self.conn.execute(query)]
        if with_timeline and found:
            self.load_timelines(found)
        return found

    def get(self, shipment_id: str, *, with_timeline: bool = True, lock: bool = False) -> Shipment | None:
        found = self._load(
            self._select(lock=lock).where(shipments.c.id == shipment_id), with_timeline=with_timeline
        )
        return found[0] if found else None

    def get_or_raise(self, shipment_id: str, *, with_timeline: bool = True, lock: bool = False) -> Shipment:
        shipment = self.get(shipment_id, with_timeline=with_timeline, lock=lock)
        if shipment is None:
            raise ShipmentNotFound(f"no shipment with id {shipment_id}")
        return shipment

    def get_by_tracking(
        self,
        tracking_number: str,
        carrier: str | None = None,
        *,
        with_timeline: bool = True,
        lock: bool = False,
    ) -> Shipment | None:
        """The shipment with this tracking number (and carrier, when given; the newest if several match)."""
        query = self._select(lock=lock).where(shipments.c.tracking_number == tracking_number)
        if carrier is not None:
            query = query.where(shipments.c.carrier == carrier)
        found = self._load(
            query.order_by(shipments.c.created_at.desc()).limit(1), with_timeline=with_timeline
        )
        return found[0] if found else None

    def list_for_order(
        self, order_id: str, *, with_timeline: bool = True, lock: bool = False
    ) -> list[Shipment]:
        query = (
            self._select(lock=lock).where(shipments.c.order_id == order_id).order_by(shipments.c.created_at)
        )
        return self._load(query, with_timeline=with_timeline)

    def list_by_order_ref(self, order_ref: str, *, lock: bool = False) -> list[Shipment]:
        """Shipments a carrier webhook tied to an order number that was not known yet."""
        query = self._select(lock=lock).where(
            shipments.c.order_ref == order_ref, shipments.c.order_id.is_(None)
        )
        return self._load(query, with_timeline=False)

    def order_refs_waited_for(self, order_refs: set[str]) -> set[str]:
        """Which of these order numbers have shipments waiting for the order (see list_by_order_ref)."""
        found: set[str] = set()
        for chunk in _chunks(sorted(order_refs)):
            query = select(shipments.c.order_ref).where(
                shipments.c.order_ref.in_(list(chunk)), shipments.c.order_id.is_(None)
            )
            found.update(self.conn.execute(query.distinct()).scalars())
        return found

    def orphan_carrier(self, tracking_number: str) -> str | None:
        """The carrier of scans kept for this tracking number, when a caller does not know it."""
        return self.conn.execute(
            select(tracking_events.c.carrier)
            .where(
                tracking_events.c.tracking_number == tracking_number, tracking_events.c.shipment_id.is_(None)
            )
            .limit(1)
        ).scalar_one_or_none()

    def list_by_tracking(
        self,
        keys: Sequence[TrackingKey],
        *,
        with_timeline: bool = True,
        lock: bool = False,
        light: bool = False,
    ) -> dict[TrackingKey, Shipment]:
        """Batch lookup for the projection: one query per 500 keys."""
        found: dict[TrackingKey, Shipment] = {}
        unique = list(dict.fromkeys(keys))
        for chunk in _chunks(unique):
            query = self._select(lock=lock).where(
                tuple_(shipments.c.carrier, shipments.c.tracking_number).in_(list(chunk))
            )
            for shipment in self._load(query, with_timeline=False):
                found[(shipment.carrier, shipment.tracking_number)] = shipment
        if with_timeline and found:
            self.load_timelines(list(found.values()), light=light)
        return found

    def list_active(
        self, *, limit: int = 1000, after_id: str | None = None, lock: bool = False
    ) -> list[Shipment]:
        """Shipments still on their way (for the periodic stalled/lost checks), in id order, paged by id.
        With `lock`, rows another transaction holds are skipped (PostgreSQL) and checked next round."""
        query = self._select().where(
            shipments.c.status.not_in([Status.DELIVERED.value, Status.EXPIRED.value])
        )
        if lock:
            query = query.with_for_update(of=shipments, skip_locked=True)
        if after_id is not None:
            query = query.where(shipments.c.id > after_id)
        return self._load(query.order_by(shipments.c.id).limit(limit), with_timeline=False)

    def load_timelines(self, found: Sequence[Shipment], *, light: bool = False) -> None:
        """Fills each shipment's timeline (ordered by occurred_at) in one query per 500 shipments.

        `light` loads only time and status of each scan (what the ETA features need): for the projection,
        which never writes the timeline back and leaves duplicate detection to the store's dedupe_key.
        """
        by_id = {s.id: s for s in found}
        for s in found:
            s.timeline = []
            s._seen = set() if light else None
        columns = [tracking_events.c.occurred_at, tracking_events.c.status] if light else _SCAN_COLUMNS
        for chunk in _chunks(list(by_id)):
            rows = self.conn.execute(
                select(tracking_events.c.shipment_id, *columns)
                .where(tracking_events.c.shipment_id.in_(list(chunk)))
                .order_by(tracking_events.c.shipment_id, tracking_events.c.occurred_at, tracking_events.c.id)
            )
            for row in rows:
                shipment = by_id[row.shipment_id]
                if light:
                    shipment.timeline.append(
                        TrackingEvent(
                            carrier=shipment.carrier,
                            tracking_number=shipment.tracking_number,
                            occurred_at=row.occurred_at,
                            status=Status(row.status),
                            source="stored",
                        )
                    )
                else:
                    shipment.timeline.append(scan_from_row(row))

    def orphan_scans(self, keys: Sequence[TrackingKey]) -> list[tuple[int, TrackingEvent]]:
        """Scans kept for tracking numbers no shipment had yet, as (row id, scan), oldest first."""
        result: list[tuple[int, TrackingEvent]] = []
        for chunk in _chunks(list(dict.fromkeys(keys))):
            rows = self.conn.execute(
                select(tracking_events.c.id, *_SCAN_COLUMNS)
                .where(
                    tracking_events.c.shipment_id.is_(None),
                    tuple_(tracking_events.c.carrier, tracking_events.c.tracking_number).in_(list(chunk)),
                )
                .order_by(tracking_events.c.occurred_at, tracking_events.c.id)
            )
            result.extend((row.id, scan_from_row(row)) for row in rows)
        return result

    # ---- writes ---------------------------------------------------------------------------------------------

    def add(self, shipment: Shipment) -> None:
        self.conn.execute(insert(shipments), [_shipment_values(shipment)])

    def add_many(self, found: Sequence[Shipment]) -> None:
        """One executemany INSERT for a batch of new shipments."""
        if found:
            self.conn.execute(insert(shipments), [_shipment_values(s) for s in found])

    def save(self, shipment: Shipment) -> None:
        values = _shipment_values(shipment)
        del values["id"]
        self.conn.execute(update(shipments).where(shipments.c.id == shipment.id).values(**values))

    def save_many(self, found: Sequence[Shipment], *, columns: Sequence[str] | None = None) -> None:
        """One executemany UPDATE for a batch of shipments; `columns` limits it to what the caller changes."""
        if not found:
            return
        names = list(columns) if columns is not None else [n for n in _shipment_values(found[0]) if n != "id"]
        rows = []
        for s in found:
            values = _shipment_values(s)
            row = {name: values[name] for name in names}
            row["_id"] = s.id
            rows.append(row)
        stmt = (
            update(shipments)
            .where(shipments.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in names})
        )
        self.conn.execute(stmt, rows)

    def add_scans(
        self, scans: Sequence[tuple[TrackingEvent, str | None]], *, received_at: datetime
    ) -> set[str]:
        """Stores (scan, shipment id or None) pairs, skipping duplicates; returns the dedupe keys that were new."""
        if not scans:
            return set()
        rows = [scan_row(scan, shipment_id=sid, received_at=received_at) for scan, sid in scans]
        stmt = insert_ignore(self.conn, tracking_events, index_elements=["dedupe_key"]).returning(
            tracking_events.c.dedupe_key
        )
        new: set[str] = set()
        for chunk in _chunks(rows, 1000):
            new.update(row.dedupe_key for row in self.conn.execute(stmt, list(chunk)))
        return new

    def attach_scans(self, row_ids: Sequence[int], shipment_id: str) -> None:
        for chunk in _chunks(list(row_ids)):
            self.conn.execute(
                update(tracking_events)
                .where(tracking_events.c.id.in_(list(chunk)), tracking_events.c.shipment_id.is_(None))
                .values(shipment_id=shipment_id)
            )
