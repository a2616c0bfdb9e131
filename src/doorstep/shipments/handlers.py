"""Use cases of the shipments domain: projecting carrier scans from the log, linking orders, periodic checks.

Projection of one log row (an AfterShip or Karrio webhook, or a generic batch of up to 1,000 scans) does its
database work in a handful of statements whatever the number of scans: one lookup of the shipments named,
one of the orders named, one insert of the scans (duplicates skipped by dedupe_key), one update of the
shipments touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from doorstep.bus.registry import Bus, HandlerContext
from doorstep.clock import Clock
from doorstep.orders.events import OrderPlaced, OrderUpdated
from doorstep.orders.tables import orders
from doorstep.shipments.carriers import aftership, generic, karrio
from doorstep.shipments.carriers.codes import CodeTables, cached_tables
from doorstep.shipments.carriers.common import ParsedTracking
from doorstep.shipments.eta import EtaPredictor, load_predictor
from doorstep.shipments.model import DEFAULT_POLICY, DetectionPolicy, Shipment, TrackingEvent
from doorstep.shipments.repository import CHECK_COLUMNS, TRACKING_COLUMNS, ShipmentRepository, TrackingKey

SHIPMENT_NAMESPACE = uuid.UUID("6f1d4a52-5b0e-4d7c-9a54-2f3c1e0b8d11")
PROJECTION_TABLES = ["tracking_events"]


def shipment_id_for(carrier: str, tracking_number: str) -> str:
    """Deterministic, so a replay of the log rebuilds the same ids."""
    return str(uuid.uuid5(SHIPMENT_NAMESPACE, f"shipment:{carrier}:{tracking_number}"))


def register(bus: Bus) -> None:
    bus.on_log("aftership", project_aftership, tables=PROJECTION_TABLES, batch=project_log_rows)
    bus.on_log("karrio", project_karrio, tables=PROJECTION_TABLES, batch=project_log_rows)
    bus.on_log("tracking", project_generic, tables=PROJECTION_TABLES, batch=project_log_rows)
    bus.subscribe(OrderPlaced, "shipments.link_order", on_order_placed, batch=on_orders_placed)
    bus.subscribe(OrderUpdated, "shipments.order_updated", on_order_updated)


# ---- services the handlers need (wired by services.register; built on demand in tests) -----------------


def code_tables(ctx: HandlerContext | Any) -> CodeTables:
    tables = ctx.services.get("carrier_codes")
    if tables is None:
        tables = ctx.services["carrier_codes"] = cached_tables(str(ctx.settings.carrier_codes_dir or ""))
    return tables


def predictor(ctx: HandlerContext | Any) -> EtaPredictor:
    found = ctx.services.get("eta")
    if found is None:
        found = ctx.services["eta"] = load_predictor(ctx.settings.var_dir)
    return found


def policy(ctx: HandlerContext | Any) -> DetectionPolicy:
    return ctx.services.get("detection_policy") or DEFAULT_POLICY


# ---- projections of the log ------------------------------------------------------------------------------


def project_aftership(row: Any, ctx: HandlerContext) -> None:
    body = row.payload
    if body.get("event") not in aftership.TRACKING_EVENTS:
        return  # other AfterShip events (pending time, ...) are logged but carry no scans
    parsed = aftership.parse_tracking(body["msg"])
    project_trackings([parsed], ctx=ctx)


def project_karrio(row: Any, ctx: HandlerContext) -> None:
    body = row.payload
    if (body.get("event") or body.get("type")) not in karrio.TRACKER_EVENTS:
        return
    parsed = karrio.parse_tracker(body["data"], code_tables(ctx))
    project_trackings([parsed], ctx=ctx)


def project_generic(row: Any, ctx: HandlerContext) -> None:
    parsed = generic.parse_events(row.payload, code_tables(ctx))
    project_trackings(parsed, ctx=ctx)


def project_log_rows(rows: Sequence[Any], ctx: HandlerContext) -> list[Shipment]:
    """Projects many log rows (any of the three sources) with one set of statements: the batch form of the
    per-row projections, for a worker that hands a whole log batch to a source's projection. Rows are applied
    in log order per tracking number, as one row at a time would be."""
    parsed: list[ParsedTracking] = []
    for row in rows:
        body = row.payload
        if row.source == "aftership" and body.get("event") in aftership.TRACKING_EVENTS:
            parsed.append(aftership.parse_tracking(body["msg"]))
        elif row.source == "karrio" and (body.get("event") or body.get("type")) in karrio.TRACKER_EVENTS:
            parsed.append(karrio.parse_tracker(body["data"], code_tables(ctx)))
        elif row.source == "tracking":
            parsed.extend(generic.parse_events(body, code_tables(ctx)))
    return project_trackings(parsed, ctx=ctx) if parsed else []


def project_trackings(parsed: Sequence[ParsedTracking], *, ctx: HandlerContext) -> list[Shipment]:
    """Stores the scans (kept with no shipment when the tracking number is unknown), creates shipments that
    name an order, applies the new scans in time order, re-predicts and records the domain events."""
    conn = ctx.uow.conn
    now = ctx.clock.now()
    repo = ShipmentRepository(conn)
    merged = _merge(parsed)
    keys = list(merged)
    found = repo.list_by_tracking(keys, lock=True, light=True)
    missing_refs = {p.order_ref for key, p in merged.items() if key not in found and p.order_ref}
    by_ref = _orders_by_external_id(conn, missing_refs)
    created: list[Shipment] = []
    described: set[str] = set()
    for key, p in merged.items():
        shipment = found.get(key)
        if shipment is None and p.order_ref:
            shipment = _new_shipment(p, by_ref.get(p.order_ref), now=now)
            created.append(shipment)
            found[key] = shipment
        if shipment is not None and _describe(shipment, p):
            described.add(shipment.id)
    new_by_shipment: dict[str, list[TrackingEvent]] = {}
    created_ids = {s.id for s in created}
    if created:
        # a new shipment is settled in memory first (its scans, and any kept before it existed), then
        # inserted once in its final state, before its scans reference it
        orphans = repo.orphan_scans([(s.carrier, s.tracking_number) for s in created])
        for s in created:
            p = merged[(s.carrier, s.tracking_number)]
            mine = [
                scan
                for _, scan in orphans
                if scan.tracking_number == s.tracking_number and scan.carrier == s.carrier
            ]
            new_by_shipment[s.id] = _unique([*mine, *p.scans])
        _apply(created, new_by_shipment, ctx=ctx, now=now)
        repo.add_many(created)
        by_key = {(s.carrier, s.tracking_number): s.id for s in created}
        attach: dict[str, list[int]] = {}
        for row_id, scan in orphans:
            attach.setdefault(by_key[(scan.carrier, scan.tracking_number)], []).append(row_id)
        for owner_id, row_ids in attach.items():
            repo.attach_scans(row_ids, owner_id)
    pairs: list[tuple[TrackingEvent, str | None]] = []
    for key, p in merged.items():
        shipment = found.get(key)
        pairs.extend((scan, shipment.id if shipment else None) for scan in p.scans)
    new_keys = repo.add_scans(pairs, received_at=now)
    for scan, shipment_id in pairs:
        if shipment_id is not None and shipment_id not in created_ids and scan.dedupe_key in new_keys:
            new_by_shipment.setdefault(shipment_id, []).append(scan)
    existing = [
        s
        for s in found.values()
        if (s.id in new_by_shipment or s.id in described) and s.id not in created_ids
    ]
    _apply(existing, new_by_shipment, ctx=ctx, now=now)
    repo.save_many(existing, columns=TRACKING_COLUMNS)
    touched = [*created, *existing]
    for shipment in touched:
        ctx.uow.collect(shipment.events)
    return touched


def _unique(scans: Iterable[TrackingEvent]) -> list[TrackingEvent]:
    seen: dict[str, TrackingEvent] = {}
    for scan in scans:
        seen.setdefault(scan.dedupe_key, scan)
    return list(seen.values())


def _merge(parsed: Sequence[ParsedTracking]) -> dict[TrackingKey, ParsedTracking]:
    merged: dict[TrackingKey, ParsedTracking] = {}
    for p in parsed:
        key = (p.carrier, p.tracking_number)
        if key not in merged:
            merged[key] = p
            continue
        into = merged[key]
        into.scans.extend(p.scans)
        for name in (
            "order_ref",
            "service",
            "origin_region",
            "destination_region",
            "destination_postcode",
            "carrier_estimate",
        ):
            if getattr(p, name) is not None:
                setattr(into, name, getattr(p, name))
    return merged


def _orders_by_external_id(conn: Connection, refs: Iterable[str]) -> dict[str, Any]:
    refs = [r for r in refs if r]
    if not refs:
        return {}
    rows = conn.execute(
        select(
            orders.c.id,
            orders.c.external_id,
            orders.c.customer_id,
            orders.c.promised_from,
            orders.c.promised_to,
            orders.c.ship_region,
            orders.c.ship_country,
            orders.c.ship_postcode,
        ).where(orders.c.external_id.in_(refs))
    )
    return {row.external_id: row for row in rows}


def _new_shipment(p: ParsedTracking, order: Any | None, *, now: datetime) -> Shipment:
    destination = p.destination_region
    if order is not None and (order.ship_region or order.ship_country):
        destination = destination or order.ship_region or order.ship_country
    return Shipment.create(
        id=shipment_id_for(p.carrier, p.tracking_number),
        carrier=p.carrier,
        tracking_number=p.tracking_number,
        now=now,
        order_id=order.id if order is not None else None,
        customer_id=order.customer_id if order is not None else None,
        order_ref=p.order_ref,
        service=p.service,
        origin_region=p.origin_region,
        destination_region=destination,
        destination_postcode=p.destination_postcode or (order.ship_postcode if order is not None else None),
        promised_from=order.promised_from if order is not None else None,
        promised_to=order.promised_to if order is not None else None,
    )


def _describe(s: Shipment, p: ParsedTracking) -> bool:
    """Fills what the carrier told us and we did not know (never overwrites the order's facts); True when
    something changed, e.g. an AfterShip edd_revise with a new estimate and no new checkpoint."""
    before = (
        s.service,
        s.origin_region,
        s.destination_region,
        s.destination_postcode,
        s.order_ref,
        s.carrier_estimate,
    )
    s.service = s.service or p.service
    s.origin_region = s.origin_region or p.origin_region
    s.destination_region = s.destination_region or p.destination_region
    s.destination_postcode = s.destination_postcode or p.destination_postcode
    s.order_ref = s.order_ref or p.order_ref
    if p.carrier_estimate is not None:
        s.carrier_estimate = p.carrier_estimate
    return before != (
        s.service,
        s.origin_region,
        s.destination_region,
        s.destination_postcode,
        s.order_ref,
        s.carrier_estimate,
    )


def _adopt_orphans(
    repo: ShipmentRepository, created: Sequence[Shipment], new_by_shipment: dict[str, list[TrackingEvent]]
) -> None:
    by_key = {(s.carrier, s.tracking_number): s for s in created}
    orphans = repo.orphan_scans(list(by_key))
    grouped: dict[TrackingKey, list[tuple[int, TrackingEvent]]] = {}
    for row_id, scan in orphans:
        grouped.setdefault((scan.carrier, scan.tracking_number), []).append((row_id, scan))
    for key, items in grouped.items():
        s = by_key[key]
        repo.attach_scans([row_id for row_id, _ in items], s.id)
        new_by_shipment.setdefault(s.id, []).extend(scan for _, scan in items)


def _apply(
    touched: Sequence[Shipment],
    new_by_shipment: dict[str, list[TrackingEvent]],
    *,
    ctx: HandlerContext,
    now: datetime,
) -> None:
    eta = predictor(ctx)
    rules = policy(ctx)
    for s in touched:
        for scan in sorted(new_by_shipment.get(s.id, []), key=lambda e: e.occurred_at):
            s.record(scan, now=now, policy=rules)
        _predict(s, eta, now=now)


def _predict(s: Shipment, eta: EtaPredictor, *, now: datetime) -> None:
    if s.is_terminal:
        return
    at = max(now, s.last_scan_at) if s.last_scan_at else now
    s.apply_prediction(eta.predict(s, at), now=now)


# ---- the order side --------------------------------------------------------------------------------------


def register_shipment(
    *,
    ctx: HandlerContext,
    order_id: str,
    carrier: str | None,
    tracking_number: str,
    service: str | None = None,
    is_return: bool = False,
) -> Shipment:
    """Creates (or returns) the shipment of an order for a tracking number, adopting any scans that arrived
    before it, re-predicting and recording the events. For callers that learn the tracking number from the
    shop (Segment `Order Shipped` / `Order Updated`) or create shipments themselves (exchanges, returns)."""
    conn = ctx.uow.conn
    now = ctx.clock.now()
    repo = ShipmentRepository(conn)
    if carrier:
        slug = code_tables(ctx).carrier_slug(carrier)
        existing = repo.get_by_tracking(tracking_number, slug, lock=True)
    else:  # the shop named no carrier: take the one that already reported this number, if any
        existing = repo.get_by_tracking(tracking_number, lock=True)
        slug = existing.carrier if existing else (repo.orphan_carrier(tracking_number) or "unknown")
    order = conn.execute(select(orders).where(orders.c.id == order_id)).first()
    if existing is not None:
        if existing.order_id is None and order is not None:
            existing.link_order(
                order_id=order.id,
                customer_id=order.customer_id,
                promised_from=order.promised_from,
                promised_to=order.promised_to,
            )
            _predict(existing, predictor(ctx), now=now)
            repo.save(existing)
            ctx.uow.collect(existing.events)
        return existing
    shipment = Shipment.create(
        id=shipment_id_for(slug, tracking_number),
        carrier=slug,
        tracking_number=tracking_number,
        now=now,
        order_id=order.id if order is not None else None,
        customer_id=order.customer_id if order is not None else None,
        order_ref=order.external_id if order is not None else None,
        service=service,
        is_return=is_return,
        destination_region=(order.ship_region or order.ship_country) if order is not None else None,
        destination_postcode=order.ship_postcode if order is not None else None,
        promised_from=order.promised_from if order is not None else None,
        promised_to=order.promised_to if order is not None else None,
    )
    repo.add(shipment)
    new_by_shipment: dict[str, list[TrackingEvent]] = {}
    _adopt_orphans(repo, [shipment], new_by_shipment)
    _apply([shipment], new_by_shipment, ctx=ctx, now=now)
    repo.save(shipment)
    ctx.uow.collect(shipment.events)
    return shipment


def on_order_placed(envelope: Any, ctx: HandlerContext) -> None:
    """Links shipments that a carrier webhook named by this order number before the order was known."""
    payload = envelope.payload
    repo = ShipmentRepository(ctx.uow.conn)
    waiting = repo.list_by_order_ref(str(payload["external_id"]), lock=True)
    if not waiting:
        return
    order = ctx.uow.conn.execute(select(orders).where(orders.c.id == payload["order_id"])).first()
    if order is None:
        return
    repo.load_timelines(waiting)
    eta = predictor(ctx)
    now = ctx.clock.now()
    for s in waiting:
        s.link_order(
            order_id=order.id,
            customer_id=order.customer_id,
            promised_from=order.promised_from,
            promised_to=order.promised_to,
        )
        _predict(s, eta, now=now)
        repo.save(s)
        ctx.uow.collect(s.events)


def on_orders_placed(envelopes: list[Any], ctx: HandlerContext) -> None:
    """The batch form of on_order_placed: one query finds the order numbers that shipments wait for (almost
    always none); only those events go through on_order_placed, in order."""
    refs = {str(e.payload["external_id"]) for e in envelopes}
    waited_for = ShipmentRepository(ctx.uow.conn).order_refs_waited_for(refs)
    for envelope in envelopes:
        if str(envelope.payload["external_id"]) in waited_for:
            on_order_placed(envelope, ctx)


def on_order_updated(envelope: Any, ctx: HandlerContext) -> None:
    """A tracking number from the shop creates the shipment; a new promise moves the shipments' promise."""
    payload = envelope.payload
    changes = payload.get("changes") or {}
    order_id = payload["order_id"]
    tracking_number = changes.get("tracking_number")
    if isinstance(tracking_number, str) and tracking_number:
        carrier = changes.get("carrier") or changes.get("carrier_name")
        register_shipment(
            ctx=ctx,
            order_id=order_id,
            carrier=str(carrier) if carrier else None,
            tracking_number=tracking_number,
            service=changes.get("service") if isinstance(changes.get("service"), str) else None,
        )
    if "promised_to" in changes or "promised_from" in changes:
        order = ctx.uow.conn.execute(select(orders).where(orders.c.id == order_id)).first()
        if order is None:
            return
        repo = ShipmentRepository(ctx.uow.conn)
        eta = predictor(ctx)
        now = ctx.clock.now()
        for s in repo.list_for_order(order_id, lock=True):
            if s.is_terminal:
                continue
            s.set_promise(promised_from=order.promised_from, promised_to=order.promised_to)
            _predict(s, eta, now=now)
            repo.save(s)
            ctx.uow.collect(s.events)


def _warn_if_predicted_late(s: Shipment, eta: EtaPredictor, *, now: datetime) -> None:
    """Between scans, silence can make a promise unlikely: re-predict, and keep the new window only when it
    breaks the promise (the warning goes out before the promise does)."""
    if not s.is_active or s.promised_to is None or now >= s.promised_to or "predicted_late" in s.alerts:
        return
    prediction = eta.predict(s, max(now, s.last_scan_at) if s.last_scan_at else now)
    if prediction.expected_at > s.promised_to:
        s.apply_prediction(prediction, now=now)


# ---- periodic checks -------------------------------------------------------------------------------------


def run_checks(ctx: Any, *, clock: Clock | None = None, page: int = 500) -> dict[str, int]:
    """Stalled / probably-lost checks and re-prediction for every active shipment, one transaction per page.
    `ctx` is the AppContext (engine, bus, settings, services); the clock is injected for tests."""
    from doorstep.db.uow import UnitOfWork

    clock = clock or ctx.clock
    counts = {"checked": 0, "events": 0}
    after: str | None = None
    eta = predictor(ctx)
    rules = policy(ctx)
    while True:
        with UnitOfWork(ctx.engine, bus=ctx.bus, clock=clock) as uow:
            repo = ShipmentRepository(uow.conn)
            batch = repo.list_active(limit=page, after_id=after, lock=True)
            if not batch:
                break
            repo.load_timelines(batch)
            now = clock.now()
            changed = []
            for s in batch:
                # the stored window is the one predicted at the last scan: "48 h past the estimate" is
                # measured against it, so silence alone does not slide it forward
                s.check_time(now=now, policy=rules)
                _warn_if_predicted_late(s, eta, now=now)
                if s.events:
                    s.updated_at = now
                    changed.append(s)
                    counts["events"] += len(s.events)
                    uow.collect(s.events)
            repo.save_many(changed, columns=CHECK_COLUMNS)
            uow.commit()
            counts["checked"] += len(batch)
            after = batch[-1].id
    return counts
