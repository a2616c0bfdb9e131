"""A test-data builder for the dashboard: inserts realistic rows straight into the store's tables (it bypasses
ingest and the domain handlers on purpose: it states the world, so the tests know every number)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from doorstep.analytics.engine import sql_runner
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard
from doorstep.analytics.replica import Replica
from doorstep.conversations.tables import conversations
from doorstep.customers.tables import customer_events, customers
from doorstep.feedback.tables import feedback
from doorstep.orders.tables import order_lines, order_steps, orders
from doorstep.returns.tables import returns
from doorstep.shipments.tables import shipments

H = timedelta(hours=1)


def _id(kind: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dashboard-test:{kind}:{n}"))


@dataclass
class WorldBuilder:
    engine: Engine
    now: datetime
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seq: Any = field(default_factory=lambda: itertools.count(1))
    # when the rows are written: their updated_at (by default, the row's own business time)
    written_at: datetime | None = None

    def _add(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        if self.written_at is not None and "updated_at" in row:
            row["updated_at"] = self.written_at
        self.rows.setdefault(table, []).append(row)
        return row

    def customer(self, *, first_seen: datetime, region: str = "north", email: str | None = None) -> str:
        n = next(self.seq)
        cid = _id("customer", n)
        self._add(
            "customers",
            {
                "id": cid,
                "email": email or f"c{n}@example.com",
                "name": f"Customer {n}",
                "region": region,
                "country": "GB",
                "preferred_channels": ["email"],
                "traits": {},
                "first_seen_at": first_seen,
                "last_seen_at": first_seen,
                "created_at": first_seen,
                "updated_at": first_seen,
            },
        )
        return cid

    def order(
        self,
        customer_id: str,
        *,
        placed: datetime,
        total_minor: int = 5000,
        channel: str = "web",
        region: str = "north",
        carrier: str | None = "dhl",
        category: str = "shoes",
        dispatch_h: float | None = 10,
        promise_h: float | None = 72,
        deliver_h: float | None = 48,
        first_attempt_h: float | None = None,
        cancelled: bool = False,
        status: str | None = None,
        lost: bool = False,
        invoiced_h: float | None = None,
        refunded_h: float | None = None,
    ) -> str:
        n = next(self.seq)
        oid = _id("order", n)
        promised = placed + promise_h * H if promise_h is not None else None
        self._add(
            "orders",
            {
                "id": oid,
                "external_id": f"#{1000 + n}",
                "customer_id": customer_id,
                "status": "cancelled" if cancelled else (status or ("delivered" if deliver_h else "placed")),
                "currency": "EUR",
                "total_minor": total_minor,
                "shipping_minor": 0,
                "tax_minor": 0,
                "discount_minor": 0,
                "channel": channel,
                "ship_region": region,
                "ship_country": "GB",
                "promised_to": promised,
                "placed_at": placed,
                "properties": {},
                "created_at": placed,
                "updated_at": placed,
            },
        )
        self._add(
            "order_lines",
            {
                "order_id": oid,
                "line_no": 1,
                "product_id": f"p-{category}",
                "category": category,
                "quantity": 1,
                "unit_price_minor": total_minor,
            },
        )
        self._add("order_steps", {"order_id": oid, "step": "placed", "occurred_at": placed})
        if cancelled:
            self._add("order_steps", {"order_id": oid, "step": "cancelled", "occurred_at": placed + H})
        if invoiced_h is not None:
            self._add(
                "order_steps", {"order_id": oid, "step": "invoiced", "occurred_at": placed + invoiced_h * H}
            )
        if refunded_h is not None:
            self._add(
                "order_steps", {"order_id": oid, "step": "refunded", "occurred_at": placed + refunded_h * H}
            )
        if carrier is not None and not cancelled:
            self._add(
                "shipments",
                {
                    "id": _id("shipment", n),
                    "order_id": oid,
                    "carrier": carrier,
                    "tracking_number": f"TN{n:08d}",
                    "is_return": False,
                    "status": "Expired" if lost else ("Delivered" if deliver_h is not None else "InTransit"),
                    "destination_region": region,
                    "promised_to": promised,
                    "dispatched_at": placed + dispatch_h * H if dispatch_h is not None else None,
                    "first_attempt_at": placed + first_attempt_h * H if first_attempt_h is not None else None,
                    "delivered_at": placed + deliver_h * H if deliver_h is not None else None,
                    "created_at": placed,
                    "updated_at": placed,
                },
            )
        return oid

    def contact(
        self,
        customer_id: str,
        *,
        at: datetime,
        order_id: str | None = None,
        reason: str = "wismo",
        cause: str | None = None,
        cause_owner: str | None = None,
    ) -> str:
        cid = _id("conversation", next(self.seq))
        self._add(
            "conversations",
            {
                "id": cid,
                "customer_id": customer_id,
                "channel": "whatsapp",
                "status": "resolved",
                "order_id": order_id,
                "contact_reason": reason,
                "intent": reason,
                "cause": cause,
                "cause_owner": cause_owner,
                "is_verified": True,
                "urgency": 0,
                "state": {},
                "opened_at": at,
                "updated_at": at,
            },
        )
        return cid

    def return_(self, order_id: str, customer_id: str, *, at: datetime, reason: str = "fit.too_small") -> str:
        rid = _id("return", next(self.seq))
        self._add(
            "returns",
            {
                "id": rid,
                "order_id": order_id,
                "customer_id": customer_id,
                "status": "requested",
                "resolution": "refund",
                "method": "drop_off",
                "reason_code": reason,
                "requested_at": at,
                "updated_at": at,
                "steps": [],
            },
        )
        return rid

    def feedback(
        self,
        *,
        at: datetime,
        order_id: str | None = None,
        customer_id: str | None = None,
        kind: str = "survey",
        csat: int | None = None,
        nps: int | None = None,
        rating: int | None = None,
        topic: str | None = None,
        comment: str | None = None,
    ) -> str:
        fid = _id("feedback", next(self.seq))
        self._add(
            "feedback",
            {
                "id": fid,
                "customer_id": customer_id,
                "order_id": order_id,
                "kind": kind,
                "csat": csat,
                "nps": nps,
                "rating": rating,
                "comment": comment,
                "topic": topic,
                "source": "test",
                "submitted_at": at,
            },
        )
        return fid

    def event(
        self,
        customer_id: str,
        *,
        at: datetime,
        name: str | None,
        session: str,
        kind: str = "track",
        source: str | None = None,
    ) -> None:
        self._add(
            "customer_events",
            {
                "log_id": next(self.seq),
                "customer_id": customer_id,
                "type": kind,
                "name": name,
                "occurred_at": at,
                "session_id": session,
                "campaign_source": source,
            },
        )

    def flush(self) -> None:
        tables = [
            ("customers", customers),
            ("orders", orders),
            ("order_lines", order_lines),
            ("order_steps", order_steps),
            ("shipments", shipments),
            ("returns", returns),
            ("conversations", conversations),
            ("feedback", feedback),
            ("customer_events", customer_events),
        ]
        with self.engine.begin() as conn:
            for name, table in tables:
                batch = self.rows.pop(name, [])
                if batch:
                    conn.execute(insert(table), batch)


def at(day: int, hour: int = 10, month: int = 11) -> datetime:
    from datetime import UTC

    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


NOW = at(23, 9)  # the dashboard's "now": period = 17-23 Nov (last 7 days), previous = 10-16 Nov


def known_world(engine: Engine) -> dict[str, str]:
    """A small shop whose every dashboard number is worked out by hand in test_dashboard_metrics.py."""
    b = WorldBuilder(engine, NOW)
    a = b.customer(first_seen=at(1, month=10), region="north")
    bb = b.customer(first_seen=at(17, 8), region="north")
    c = b.customer(first_seen=at(18, 8), region="south")
    d = b.customer(first_seen=at(1, month=9), region="south")
    e = b.customer(first_seen=at(11, 8), region="north")
    f = b.customer(first_seen=at(18, 9), region="south")
    ids: dict[str, str] = {"A": a, "B": bb, "C": c, "D": d, "E": e, "F": f}
    # before both periods
    b.order(a, placed=at(5, month=10), total_minor=2500)
    # previous period (10-16 Nov)
    ids["p1"] = b.order(e, placed=at(11), total_minor=5000)
    ids["p2"] = p2 = b.order(a, placed=at(12), total_minor=3000, carrier="ups", promise_h=48, deliver_h=60)
    b.contact(a, at=at(12) + 50 * H, order_id=p2, reason="wismo")
    # this period (17-23 Nov)
    ids["o1"] = o1 = b.order(a, placed=at(17, 10), total_minor=4000)
    b.feedback(
        at=at(17, 10) + 60 * H,
        order_id=o1,
        customer_id=a,
        csat=5,
        nps=10,
        topic="delivery",
        comment="arrived quickly",
    )
    ids["o5"] = o5 = b.order(a, placed=at(17, 12), total_minor=10000, dispatch_h=8, deliver_h=30)
    b.return_(o5, a, at=at(17, 12) + 100 * H, reason="damaged.in_transit")
    b.contact(a, at=at(17, 12) + 110 * H, order_id=o5, reason="return_status")
    ids["o2"] = o2 = b.order(
        bb,
        placed=at(18, 10),
        total_minor=6000,
        carrier="ups",
        category="bags",
        dispatch_h=20,
        promise_h=48,
        deliver_h=80,
    )
    b.contact(bb, at=at(18, 10) + 50 * H, reason="wismo")  # no order on the conversation: linked to o2
    b.feedback(
        at=at(18, 10) + 90 * H,
        order_id=o2,
        customer_id=bb,
        kind="review",
        rating=1,
        topic="delivery",
        comment="two days late",
    )
    ids["o6"] = b.order(bb, placed=at(21, 10), total_minor=3000, cancelled=True)
    ids["o3"] = b.order(
        c, placed=at(18, 11), total_minor=8000, region="south", dispatch_h=30, promise_h=96, deliver_h=70
    )
    ids["o8"] = o8 = b.order(
        f, placed=at(18, 12), total_minor=7000, region="south", channel="app", dispatch_h=12, deliver_h=50
    )
    b.feedback(
        at=at(18, 12) + 70 * H,
        order_id=o8,
        customer_id=f,
        csat=2,
        nps=3,
        topic="price",
        comment="too expensive",
    )
    ids["o4"] = o4 = b.order(
        d,
        placed=at(17, 14),
        total_minor=2000,
        region="south",
        carrier="dpd",
        category="bags",
        dispatch_h=5,
        first_attempt_h=40,
        deliver_h=64,
    )
    b.contact(d, at=at(17, 14) + 45 * H, order_id=o4, reason="delivery_change")
    ids["o7"] = b.order(d, placed=at(22, 12), total_minor=5000, region="south", dispatch_h=6, deliver_h=None)
    # sessions
    for i, name in enumerate(["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]):
        b.event(a, at=at(17, 9) + i * timedelta(minutes=5), name=name, session="s1", source="newsletter")
    b.event(a, at=at(17, 9), name="Home", session="s1", kind="page", source="newsletter")
    for i, name in enumerate(["Product Viewed", "Product Added", "Checkout Started"]):
        b.event(bb, at=at(18, 9) + i * timedelta(minutes=5), name=name, session="s2", source="google")
    b.event(bb, at=at(18, 15), name="Home", session="s3", kind="page")
    b.event(c, at=at(18, 9), name="Product Viewed", session="s4", source="google")
    b.event(d, at=at(18, 9), name=None, session="s5", kind="identify")
    b.event(e, at=at(11, 9), name="Product Viewed", session="s6", source="newsletter")
    b.event(
        e,
        at=at(
            11,
            9,
        )
        + timedelta(minutes=2),
        name="Product Added",
        session="s6",
        source="newsletter",
    )
    b.flush()
    return ids


def load_simulated_world(engine: Engine, world: Any) -> dict[str, str]:
    """Writes the simulator's ground truth (customers, orders, parcels, contacts, feedback) straight into the
    store, as the projections would leave it; contacts carry no cause, so the dashboard has to derive it.
    Returns the simulator's order number -> store order id."""
    from datetime import UTC

    def ts(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC) if value else None

    def uid(kind: str, key: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim:{kind}:{key}"))

    rows: dict[str, list[dict[str, Any]]] = {
        k: []
        for k in ("customers", "orders", "order_lines", "shipments", "returns", "conversations", "feedback")
    }
    truth_orders = list(world.truth_orders())
    first_order = {}
    for o in truth_orders:
        first_order.setdefault(o["customer_id"], ts(o["placed_at"]))
    for c in world.customers():
        seen = first_order.get(c["user_id"]) or datetime(2026, 1, 1, tzinfo=UTC)
        rows["customers"].append(
            {
                "id": uid("customer", c["user_id"]),
                "email": c["email"],
                "name": c["name"],
                "region": c["region"],
                "country": c["country"],
                "preferred_channels": [c["preferred_channel"]],
                "traits": {},
                "first_seen_at": seen,
                "last_seen_at": seen,
                "created_at": seen,
                "updated_at": seen,
            }
        )
    ids = {}
    ships = {s["order_id"]: s for s in world.truth_shipments()}
    for o in truth_orders:
        oid = ids[o["order_id"]] = uid("order", o["order_id"])
        placed = ts(o["placed_at"])
        s = ships.get(o["order_id"])
        rows["orders"].append(
            {
                "id": oid,
                "external_id": o["order_id"],
                "customer_id": uid("customer", o["customer_id"]),
                "status": "delivered" if o["delivered"] else "placed",
                "currency": o["currency"],
                "total_minor": round(float(o["total"]) * 100),
                "channel": "web",
                "promised_to": ts(s["promised_to"]) if s else None,
                "placed_at": placed,
                "properties": {},
                "created_at": placed,
                "updated_at": placed,
            }
        )
        rows["order_lines"].append(
            {
                "order_id": oid,
                "line_no": 1,
                "product_id": "p",
                "category": "apparel",
                "quantity": 1,
                "unit_price_minor": 100,
            }
        )
        if s:
            rows["shipments"].append(
                {
                    "id": uid("shipment", o["order_id"]),
                    "order_id": oid,
                    "carrier": s["carrier"],
                    "tracking_number": s["tracking_number"],
                    "is_return": False,
                    "status": "Expired" if s["lost"] else ("Delivered" if s["delivered_at"] else "InTransit"),
                    "subtag": "lost" if s["lost"] else None,
                    "promised_to": ts(s["promised_to"]),
                    "dispatched_at": ts(s["dispatched_at"]),
                    "first_attempt_at": ts(s["first_attempt_at"]),
                    "delivered_at": ts(s["delivered_at"]),
                    "created_at": placed,
                    "updated_at": placed,
                }
            )
        if o["returned"]:
            delivered = ts(s["delivered_at"]) if s and s["delivered_at"] else placed
            rows["returns"].append(
                {
                    "id": uid("return", o["order_id"]),
                    "order_id": oid,
                    "customer_id": uid("customer", o["customer_id"]),
                    "status": "requested",
                    "resolution": "refund",
                    "method": "drop_off",
                    "reason_code": o["return_reason"] or "other",
                    "requested_at": delivered + timedelta(days=2),
                    "updated_at": delivered,
                    "steps": [],
                }
            )
    for c in world.truth_contacts():
        if c["is_follow_up"]:
            continue  # a further message in the same conversation
        at_ = ts(c["sent_at"])
        rows["conversations"].append(
            {
                "id": uid("conversation", c["contact_id"]),
                "customer_id": uid("customer", c["customer_id"]),
                "channel": c["channel"],
                "status": "resolved",
                "order_id": ids.get(c["order_id"]),
                "contact_reason": None,
                "intent": None,
                "cause": None,
                "is_verified": True,
                "urgency": 0,
                "state": {},
                "opened_at": at_,
                "updated_at": at_,
            }
        )
    for f in world.feedback():
        rows["feedback"].append(
            {
                "id": uid("feedback", f["feedback_id"]),
                "customer_id": uid("customer", f["customer_id"]),
                "order_id": ids.get(f["order_id"]),
                "kind": f["kind"],
                "csat": f["csat"] or None,
                "nps": None if f["nps"] in ("", None) else f["nps"],
                "rating": f["rating"] or None,
                "comment": f["comment"],
                "topic": None,
                "source": "simulator",
                "external_id": f["feedback_id"],
                "submitted_at": ts(f["submitted_at"]),
            }
        )
    b = WorldBuilder(engine, NOW)
    b.rows = rows
    b.flush()
    return ids


@contextmanager
def synced_replica(url: str) -> Iterator[Replica]:
    """An in-memory analytics replica of the store at `url`, built (synced once) and closed afterwards."""
    replica = Replica(url)
    try:
        replica.sync()
        yield replica
    finally:
        replica.close()


def same_as_plain_sql(url: str, replica: Replica, f: Filters, *, now: datetime) -> dict[str, Any]:
    """The whole dashboard from the replica equals plain SQL's on the store: values, breakdowns, the perfect
    journey, drivers and downstream. Returns the replica's result."""
    from doorstep.db.engine import create_db_engine

    with replica.runner() as runner:
        ours = compute_dashboard(runner, f, now=now)
    engine = create_db_engine(url, for_reads=True)
    try:
        with sql_runner(engine) as runner:
            theirs = compute_dashboard(runner, f, now=now)
    finally:
        engine.dispose()
    assert theirs["values"] == {k: pytest.approx(v) for k, v in ours["values"].items()}
    assert theirs["breakdowns"] == ours["breakdowns"]
    assert theirs["perfect"]["stair"] == ours["perfect"]["stair"] and theirs["drivers"] == ours["drivers"]
    assert theirs["downstream"] == [
        {k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()}
        for row in ours["downstream"]
    ]
    for dim, rows in ours["perfect"]["by"].items():  # rows with equal counts come in either order
        assert sorted(theirs["perfect"]["by"][dim], key=str) == sorted(rows, key=str)
    return ours
