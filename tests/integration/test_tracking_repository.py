"""Shipment repository on the real store (SQLite, and PostgreSQL when configured), and the migration check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from doorstep.db.engine import create_db_engine
from doorstep.db.migrate import check
from doorstep.shipments.model import Shipment, Status, TrackingEvent
from doorstep.shipments.repository import ShipmentRepository
from doorstep.shipments.tables import tracking_events

T0 = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)


def _scan(h: float, status: Status, tn: str = "TN1") -> TrackingEvent:
    return TrackingEvent(
        carrier="dhl",
        tracking_number=tn,
        occurred_at=T0 + timedelta(hours=h),
        status=status,
        message=f"{status} at {h}",
        city="Leeds",
        source="aftership",
    )


def test_migrated_schema_matches_tables(database_url: str) -> None:
    check(database_url)


def test_add_save_get_and_timeline_round_trip(database_url: str) -> None:
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        repo = ShipmentRepository(conn)
        s = Shipment.create(
            id="s1",
            carrier="dhl",
            tracking_number="TN1",
            now=T0,
            order_ref="1001",
            promised_to=T0 + timedelta(days=3),
        )
        repo.add(s)
        new = repo.add_scans(
            [(_scan(5, Status.IN_TRANSIT), "s1"), (_scan(1, Status.INFO_RECEIVED), "s1")], received_at=T0
        )
        assert len(new) == 2
        again = repo.add_scans([(_scan(5, Status.IN_TRANSIT), "s1")], received_at=T0)
        assert again == set()  # a duplicate is skipped
        s.record(_scan(1, Status.INFO_RECEIVED), now=T0)
        s.record(_scan(5, Status.IN_TRANSIT), now=T0)
        s.alerts.add("predicted_late")
        repo.save(s)
    with engine.connect() as conn:
        repo = ShipmentRepository(conn)
        loaded = repo.get_or_raise("s1")
        assert loaded.status is Status.IN_TRANSIT
        assert loaded.order_ref == "1001"
        assert loaded.alerts == {"dispatched", "predicted_late"}
        assert loaded.scan_count == 2
        assert [e.status for e in loaded.timeline] == [Status.INFO_RECEIVED, Status.IN_TRANSIT]
        assert loaded.timeline[0].occurred_at == T0 + timedelta(hours=1)
        assert repo.get_by_tracking("TN1").id == "s1"  # type: ignore[union-attr]
        assert repo.get_by_tracking("TN1", carrier="ups") is None
        assert [x.id for x in repo.list_by_order_ref("1001")] == ["s1"]
        assert list(repo.list_by_tracking([("dhl", "TN1"), ("dhl", "nope")])) == [("dhl", "TN1")]
        assert [x.id for x in repo.list_active()] == ["s1"]
    engine.dispose()


def test_orphan_scans_are_kept_and_attached(database_url: str) -> None:
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        repo = ShipmentRepository(conn)
        repo.add_scans([(_scan(2, Status.IN_TRANSIT, "ORPHAN"), None)], received_at=T0)
        orphans = repo.orphan_scans([("dhl", "ORPHAN")])
        assert [scan.tracking_number for _, scan in orphans] == ["ORPHAN"]
        s = Shipment.create(id="s2", carrier="dhl", tracking_number="ORPHAN", now=T0)
        repo.add(s)
        repo.attach_scans([row_id for row_id, _ in orphans], "s2")
        assert repo.orphan_scans([("dhl", "ORPHAN")]) == []
        assert conn.execute(select(tracking_events.c.shipment_id)).scalars().all() == ["s2"]
    engine.dispose()
