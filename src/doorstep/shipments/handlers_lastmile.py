"""Last-mile use cases: delivery changes with slot booking and the outbound carrier webhook, driver rounds
(assign, depart, proof of delivery, failed attempt). Each owns its transaction; files are written before
the commit that refers to them."""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from doorstep.bus.messages import Envelope
from doorstep.bus.registry import Bus, HandlerContext
from doorstep.context import AppContext
from doorstep.customers.events import CustomerErased
from doorstep.customers.tables import customers
from doorstep.ids import new_id
from doorstep.orders.tables import orders
from doorstep.security.tables import users
from doorstep.shipments.delivery import (
    Capabilities,
    ChangeRefused,
    DeliveryError,
    InvalidChange,
    ProofInput,
    ShipmentState,
    Slot,
    SlotFull,
    StopNotFound,
    capabilities_for,
    eta_window,
    load_capabilities,
    validate_change,
    validate_failure,
    validate_proof,
)
from doorstep.shipments.events import (
    DeliveryAttemptFailed,
    DeliveryChanged,
    DriverDeparted,
    ProofOfDeliveryRecorded,
    ShipmentDelivered,
    ShipmentStatusChanged,
)
from doorstep.shipments.tables import (
    carrier_webhook_deliveries,
    delivery_changes,
    delivery_slots,
    driver_assignments,
    proofs_of_delivery,
    shipments,
    slot_bookings,
)

MAX_PHOTO_BYTES = 8 * 1024 * 1024  # a phone photo at full resolution
MAX_SIGNATURE_BYTES = 512 * 1024
IMAGE_MAGIC = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png", b"RIFF": "webp"}


@lru_cache(maxsize=4)
def _capabilities(path: str | None) -> dict[str, Capabilities]:
    return load_capabilities(Path(path) if path else None)


def capabilities(ctx: AppContext, carrier: str) -> Capabilities:
    return capabilities_for(_capabilities(ctx.settings.extra.get("carrier_capabilities_path")), carrier)


@dataclass(frozen=True)
class ShipmentRef:
    id: str
    order_id: str | None
    customer_id: str | None
    carrier: str
    tracking_number: str
    status: str
    region: str | None
    is_return: bool

    def state(self) -> ShipmentState:
        return ShipmentState(self.id, self.carrier, self.status, self.region, self.is_return)


def load_shipment(conn: Connection, shipment_id: str, *, lock: bool = False) -> ShipmentRef:
    query = (
        select(shipments, orders.c.customer_id, orders.c.ship_region)
        .select_from(shipments.outerjoin(orders, orders.c.id == shipments.c.order_id))
        .where(shipments.c.id == shipment_id)
    )
    if lock:
        query = query.with_for_update(of=shipments)
    row = conn.execute(query).first()
    if row is None:
        raise StopNotFound(f"no shipment {shipment_id!r}", field="shipment_id")
    return ShipmentRef(
        id=row.id,
        order_id=row.order_id,
        customer_id=row.customer_id,
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        status=row.status,
        region=row.destination_region or row.ship_region,
        is_return=bool(row.is_return),
    )


def _slot(row: Any) -> Slot:
    return Slot(row.id, row.carrier, row.region, row.starts_at, row.ends_at, row.capacity, row.booked)


def list_slots(
    conn: Connection, *, carrier: str, region: str | None, now: datetime, until: datetime
) -> list[Slot]:
    query = select(delivery_slots).where(
        delivery_slots.c.carrier == carrier,
        delivery_slots.c.starts_at > now,
        delivery_slots.c.starts_at < until,
    )
    if region:
        query = query.where(delivery_slots.c.region == region)
    return [_slot(r) for r in conn.execute(query.order_by(delivery_slots.c.starts_at))]


def current_slot(conn: Connection, shipment_id: str) -> Slot | None:
    row = conn.execute(
        select(delivery_slots)
        .join(slot_bookings, slot_bookings.c.slot_id == delivery_slots.c.id)
        .where(slot_bookings.c.shipment_id == shipment_id)
    ).first()
    return _slot(row) if row else None


def change_delivery(
    ctx: AppContext, *, shipment_id: str, kind: str, detail: Any, requested_by: str
) -> dict[str, Any]:
    """Validates and records a delivery change, books the slot, queues the signed carrier webhook, emits
    DeliveryChanged: all in one transaction, or nothing."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        conn = uow.conn
        shipment = load_shipment(conn, shipment_id, lock=True)
        caps = capabilities(ctx, shipment.carrier)
        slot = None
        if kind == "slot" and isinstance(detail, dict) and isinstance(detail.get("slot_id"), str):
            row = conn.execute(
                select(delivery_slots).where(delivery_slots.c.id == detail["slot_id"]).with_for_update()
            ).first()
            slot = _slot(row) if row else None
        cleaned = validate_change(kind, detail, shipment=shipment.state(), caps=caps, now=now, slot=slot)
        if kind == "slot":
            assert slot is not None
            _book_slot(conn, shipment_id=shipment.id, slot=slot, now=now)
        change_id = new_id()
        conn.execute(
            insert(delivery_changes).values(
                id=change_id,
                shipment_id=shipment.id,
                kind=kind,
                detail=cleaned,
                requested_by=requested_by,
                created_at=now,
                carrier_status="pending",
            )
        )
        body = json.dumps(
            {
                "event": "delivery_changed",
                "change_id": change_id,
                "shipment_id": shipment.id,
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "kind": kind,
                "detail": cleaned,
                "requested_by": requested_by,
                "requested_at": now.isoformat(),
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        conn.execute(
            insert(carrier_webhook_deliveries).values(
                id=new_id(),
                change_id=change_id,
                shipment_id=shipment.id,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        uow.publish(
            DeliveryChanged(
                occurred_at=now,
                shipment_id=shipment.id,
                order_id=shipment.order_id,
                customer_id=shipment.customer_id,
                kind=kind,
                detail=cleaned,
                requested_by=requested_by,
            )
        )
        uow.commit()
    return {
        "change_id": change_id,
        "shipment_id": shipment.id,
        "kind": kind,
        "detail": cleaned,
        "carrier_status": "pending",
    }


def _book_slot(conn: Connection, *, shipment_id: str, slot: Slot, now: datetime) -> None:
    held = conn.execute(
        select(slot_bookings.c.slot_id).where(slot_bookings.c.shipment_id == shipment_id)
    ).first()
    if held is not None and held.slot_id == slot.id:
        raise ChangeRefused("you already have this slot", field="detail.slot_id")
    taken = conn.execute(
        update(delivery_slots)
        .where(delivery_slots.c.id == slot.id, delivery_slots.c.booked < delivery_slots.c.capacity)
        .values(booked=delivery_slots.c.booked + 1)
    )
    if taken.rowcount != 1:  # someone took the last unit between our read and this update
        raise SlotFull(
            f"the slot {slot.starts_at:%a %d %b %H:%M} is full: pick another", field="detail.slot_id"
        )
    if held is not None:
        conn.execute(
            update(delivery_slots)
            .where(delivery_slots.c.id == held.slot_id, delivery_slots.c.booked > 0)
            .values(booked=delivery_slots.c.booked - 1)
        )
        conn.execute(delete(slot_bookings).where(slot_bookings.c.shipment_id == shipment_id))
    conn.execute(insert(slot_bookings).values(shipment_id=shipment_id, slot_id=slot.id, booked_at=now))


def create_slots(
    ctx: AppContext, *, carrier: str, region: str, windows: list[tuple[datetime, datetime, int]]
) -> int:
    """Adds capacity; an existing (carrier, region, start) gets the new capacity (never below what is booked)."""
    created = 0
    with ctx.uow() as uow:
        for starts_at, ends_at, capacity in windows:
            if ends_at <= starts_at:
                raise InvalidChange("a slot must end after it starts", field="ends_at")
            if capacity < 0:
                raise InvalidChange("capacity cannot be negative", field="capacity")
            existing = uow.conn.execute(
                select(delivery_slots)
                .where(
                    delivery_slots.c.carrier == carrier,
                    delivery_slots.c.region == region,
                    delivery_slots.c.starts_at == starts_at,
                )
                .with_for_update()
            ).first()
            if existing is None:
                uow.conn.execute(
                    insert(delivery_slots).values(
                        id=new_id(),
                        carrier=carrier,
                        region=region,
                        starts_at=starts_at,
                        ends_at=ends_at,
                        capacity=capacity,
                        booked=0,
                    )
                )
                created += 1
            else:
                if capacity < existing.booked:
                    raise ChangeRefused(
                        f"{existing.booked} already booked: capacity cannot go below that", field="capacity"
                    )
                uow.conn.execute(
                    update(delivery_slots)
                    .where(delivery_slots.c.id == existing.id)
                    .values(capacity=capacity, ends_at=ends_at)
                )
        uow.commit()
    return created


# ---- driver rounds -----------------------------------------------------------------------------------------


def assign_stops(ctx: AppContext, *, driver_id: str, route_date: date, shipment_ids: list[str]) -> list[str]:
    """Sets a driver's round for a day, in the given order; stops already completed keep their place."""
    if len(set(shipment_ids)) != len(shipment_ids):
        raise InvalidChange("a shipment appears twice in the round", field="shipment_ids")
    now = ctx.clock.now()
    ids = []
    with ctx.uow() as uow:
        conn = uow.conn
        driver = conn.execute(select(users.c.role, users.c.is_active).where(users.c.id == driver_id)).first()
        if driver is None or driver.role != "driver" or not driver.is_active:
            raise InvalidChange(f"{driver_id!r} is not an active driver", field="driver_id")
        for sid in shipment_ids:
            load_shipment(conn, sid)
        conn.execute(
            delete(driver_assignments).where(
                driver_assignments.c.driver_id == driver_id,
                driver_assignments.c.route_date == route_date,
                driver_assignments.c.status == "assigned",
            )
        )
        for sequence, sid in enumerate(shipment_ids, start=1):
            other = conn.execute(
                select(
                    driver_assignments.c.id, driver_assignments.c.driver_id, driver_assignments.c.status
                ).where(
                    driver_assignments.c.shipment_id == sid, driver_assignments.c.route_date == route_date
                )
            ).first()
            if other is not None:
                if other.status != "assigned" or other.driver_id == driver_id:
                    ids.append(other.id)
                    continue
                conn.execute(
                    delete(driver_assignments).where(driver_assignments.c.id == other.id)
                )  # reassigned
            aid = new_id()
            conn.execute(
                insert(driver_assignments).values(
                    id=aid,
                    driver_id=driver_id,
                    shipment_id=sid,
                    route_date=route_date,
                    sequence=sequence,
                    status="assigned",
                    created_at=now,
                )
            )
            ids.append(aid)
        uow.commit()
    return ids


def _own_stop(conn: Connection, *, assignment_id: str, driver_id: str) -> Any:
    row = conn.execute(
        select(driver_assignments).where(driver_assignments.c.id == assignment_id).with_for_update()
    ).first()
    # another driver's stop is reported as missing, not forbidden: its existence is not the driver's business
    if row is None or row.driver_id != driver_id:
        raise StopNotFound("no such stop on your round", field="stop")
    return row


def depart(ctx: AppContext, *, driver_id: str, route_date: date) -> int:
    """ "Departed depot": each waiting stop gets its ETA window and DriverDeparted goes to each customer."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        rows = uow.conn.execute(
            select(driver_assignments)
            .where(
                driver_assignments.c.driver_id == driver_id,
                driver_assignments.c.route_date == route_date,
                driver_assignments.c.status == "assigned",
            )
            .order_by(driver_assignments.c.sequence)
            .with_for_update()
        ).all()
        for position, row in enumerate(rows, start=1):
            eta_from, eta_to = eta_window(now, position)
            uow.conn.execute(
                update(driver_assignments)
                .where(driver_assignments.c.id == row.id)
                .values(status="departed", departed_at=now, eta_from=eta_from, eta_to=eta_to)
            )
            shipment = load_shipment(uow.conn, row.shipment_id)
            uow.publish(
                DriverDeparted(
                    occurred_at=now,
                    shipment_id=shipment.id,
                    order_id=shipment.order_id,
                    customer_id=shipment.customer_id,
                    eta_from=eta_from,
                    eta_to=eta_to,
                )
            )
        uow.commit()
    return len(rows)


def decode_signature(data_url: str | None) -> bytes | None:
    """The canvas's PNG data URL to bytes; refuses anything but a PNG."""
    if not data_url:
        return None
    prefix = "data:image/png;base64,"
    if not data_url.startswith(prefix):
        raise InvalidChange("signature must be a PNG data URL", field="signature")
    try:
        raw = base64.b64decode(data_url[len(prefix) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidChange("signature is not valid base64", field="signature") from exc
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise InvalidChange(f"signature is larger than {MAX_SIGNATURE_BYTES} bytes", field="signature")
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InvalidChange("signature is not a PNG image", field="signature")
    return raw


def photo_extension(photo: bytes) -> str:
    if len(photo) > MAX_PHOTO_BYTES:
        raise InvalidChange(f"photo is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MB", field="photo")
    for magic, ext in IMAGE_MAGIC.items():
        if photo.startswith(magic) and (ext != "webp" or photo[8:12] == b"WEBP"):
            return ext
    raise InvalidChange("photo must be a JPEG, PNG or WebP image", field="photo")


def record_proof(
    ctx: AppContext,
    *,
    driver_id: str,
    assignment_id: str,
    recipient_name: str | None,
    photo: bytes | None,
    signature_png: bytes | None,
    latitude: float | None,
    longitude: float | None,
) -> str:
    """Stores the proof, marks the stop and the shipment delivered, emits ProofOfDeliveryRecorded (which
    starts the invoice and the follow-up)."""
    now = ctx.clock.now()
    recipient_name = (recipient_name or "").strip() or None
    photo_ext = photo_extension(photo) if photo else None
    with ctx.uow() as uow:
        conn = uow.conn
        stop = _own_stop(conn, assignment_id=assignment_id, driver_id=driver_id)
        validate_proof(
            ProofInput(recipient_name, photo is not None, signature_png is not None, latitude, longitude),
            assignment_status=stop.status,
        )
        shipment = load_shipment(conn, stop.shipment_id, lock=True)
        proof_id = new_id()
        folder = proofs_dir(Path(ctx.settings.var_dir), shipment.customer_id) / proof_id
        folder.mkdir(parents=True, exist_ok=True)
        photo_path = signature_path = None
        if photo is not None:
            photo_path = folder / f"photo.{photo_ext}"
            photo_path.write_bytes(photo)
        if signature_png is not None:
            signature_path = folder / "signature.png"
            signature_path.write_bytes(signature_png)
        conn.execute(
            insert(proofs_of_delivery).values(
                id=proof_id,
                shipment_id=shipment.id,
                recipient_name=recipient_name,
                photo_path=str(photo_path) if photo_path else None,
                signature_path=str(signature_path) if signature_path else None,
                latitude=latitude,
                longitude=longitude,
                delivered_at=now,
                driver_id=driver_id,
                detail={"assignment_id": assignment_id},
            )
        )
        conn.execute(
            update(driver_assignments)
            .where(driver_assignments.c.id == assignment_id)
            .values(status="delivered", completed_at=now)
        )
        _mark_delivered(uow, shipment, now=now)
        uow.publish(
            ProofOfDeliveryRecorded(
                occurred_at=now,
                shipment_id=shipment.id,
                order_id=shipment.order_id,
                customer_id=shipment.customer_id,
                proof_id=proof_id,
                delivered_at=now,
                recipient_name=recipient_name,
            )
        )
        uow.commit()
    return proof_id


def _mark_delivered(uow: Any, shipment: ShipmentRef, *, now: datetime) -> None:
    if shipment.status == "Delivered":
        return
    row = uow.conn.execute(select(shipments.c.promised_to).where(shipments.c.id == shipment.id)).one()
    uow.conn.execute(
        update(shipments)
        .where(shipments.c.id == shipment.id)
        .values(
            status="Delivered",
            subtag=None,
            delivered_at=now,
            last_scan_at=now,
            updated_at=now,
            status_since=now,
        )
    )
    late_h = max(0.0, (now - row.promised_to).total_seconds() / 3600) if row.promised_to else 0.0
    common: dict[str, Any] = {
        "occurred_at": now,
        "shipment_id": shipment.id,
        "order_id": shipment.order_id,
        "customer_id": shipment.customer_id,
    }
    uow.publish(ShipmentStatusChanged(**common, status="Delivered", previous_status=shipment.status))
    uow.publish(
        ShipmentDelivered(**common, delivered_at=now, is_late=late_h > 0, delay_hours=round(late_h, 2))
    )


def record_failure(
    ctx: AppContext, *, driver_id: str, assignment_id: str, reason: str, note: str | None
) -> None:
    now = ctx.clock.now()
    with ctx.uow() as uow:
        conn = uow.conn
        stop = _own_stop(conn, assignment_id=assignment_id, driver_id=driver_id)
        validate_failure(reason, note, assignment_status=stop.status)
        shipment = load_shipment(conn, stop.shipment_id, lock=True)
        conn.execute(
            update(driver_assignments)
            .where(driver_assignments.c.id == assignment_id)
            .values(status="failed", completed_at=now, failure_reason=reason)
        )
        conn.execute(
            update(shipments)
            .where(shipments.c.id == shipment.id)
            .values(
                status="AttemptFail",
                updated_at=now,
                status_since=now,
                last_scan_at=now,
            )
        )
        conn.execute(
            update(shipments)
            .where(and_(shipments.c.id == shipment.id, shipments.c.first_attempt_at.is_(None)))
            .values(first_attempt_at=now)
        )
        common: dict[str, Any] = {
            "occurred_at": now,
            "shipment_id": shipment.id,
            "order_id": shipment.order_id,
            "customer_id": shipment.customer_id,
        }
        if shipment.status != "AttemptFail":
            uow.publish(
                ShipmentStatusChanged(**common, status="AttemptFail", previous_status=shipment.status)
            )
        text = reason.replace("_", " ") + (f": {note.strip()}" if note and note.strip() else "")
        uow.publish(DeliveryAttemptFailed(**common, reason=text))
        uow.commit()


def todays_stops(conn: Connection, *, driver_id: str, route_date: date) -> list[dict[str, Any]]:
    """The driver's stops with what is needed at the door; the phone is masked."""
    from doorstep.shipments.delivery import describe_change, mask_phone

    rows = conn.execute(
        select(
            driver_assignments,
            shipments.c.tracking_number,
            shipments.c.carrier,
            orders.c.external_id,
            orders.c.ship_name,
            orders.c.ship_line1,
            orders.c.ship_city,
            orders.c.ship_postcode,
            customers.c.name.label("customer_name"),
            customers.c.phone,
        )
        .select_from(
            driver_assignments.join(shipments, shipments.c.id == driver_assignments.c.shipment_id)
            .outerjoin(orders, orders.c.id == shipments.c.order_id)
            .outerjoin(customers, customers.c.id == orders.c.customer_id)
        )
        .where(driver_assignments.c.driver_id == driver_id, driver_assignments.c.route_date == route_date)
        .order_by(driver_assignments.c.sequence)
    ).all()
    stops = []
    for r in rows:
        changes = conn.execute(
            select(delivery_changes.c.kind, delivery_changes.c.detail)
            .where(delivery_changes.c.shipment_id == r.shipment_id, delivery_changes.c.kind != "slot")
            .order_by(delivery_changes.c.created_at)
        ).all()
        stops.append(
            {
                "id": r.id,
                "sequence": r.sequence,
                "status": r.status,
                "shipment_id": r.shipment_id,
                "tracking_number": r.tracking_number,
                "order_number": r.external_id,
                "name": r.ship_name or r.customer_name or "",
                "address": ", ".join(x for x in (r.ship_line1, r.ship_postcode, r.ship_city) if x),
                "phone": mask_phone(r.phone),
                "eta_from": r.eta_from,
                "eta_to": r.eta_to,
                "instructions": [describe_change(c.kind, c.detail) for c in changes],
                "failure_reason": r.failure_reason,
            }
        )
    return stops


def proofs_dir(var_dir: Path, customer_id: str | None) -> Path:
    """Proof files per customer (photos, signatures), so erasure removes them in one go."""
    return var_dir / "proofs" / (customer_id or "unmatched")


def on_customer_erased(envelope: Envelope, ctx: HandlerContext) -> None:
    """Erasure reaches the files too: proofs, invoices and return labels of that customer."""
    customer_id = str(envelope.payload["customer_id"])
    if not customer_id or "/" in customer_id or customer_id.startswith("."):
        return
    var_dir = Path(ctx.settings.var_dir)
    for kind in ("proofs", "invoices", "labels"):
        shutil.rmtree(var_dir / kind / customer_id, ignore_errors=True)


def register(bus: Bus) -> None:
    bus.subscribe(CustomerErased, "shipments.erase_lastmile_files", on_customer_erased)


__all__ = ["DeliveryError", "change_delivery", "depart", "record_failure", "record_proof"]
