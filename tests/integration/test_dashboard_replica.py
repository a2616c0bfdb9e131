"""The analytics replica stays in step with the store: what a sync picks up, what erasure removes, and that the
store is never written. Each step compares the whole dashboard with plain SQL on the store, and checks the
number that should have moved."""

from __future__ import annotations

import hashlib
import itertools
import os
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support_dashboard import NOW, WorldBuilder, at, known_world, same_as_plain_sql

from doorstep.analytics.live import DashboardService
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard
from doorstep.analytics.replica import OVERLAP, Replica, ReplicaWarmingUp
from doorstep.clock import FixedClock
from doorstep.customers.repository import CustomerRepository
from doorstep.customers.tables import customers
from doorstep.db.engine import create_db_engine
from doorstep.shipments.tables import shipments

PERIOD = Filters.last_days(7, now=NOW)
WRITTEN = NOW + timedelta(minutes=1)  # rows written after the world: their updated_at


def _both(url: str, replica: Replica) -> dict[str, Any]:
    """The replica's values, after checking the whole dashboard equals plain SQL's on the store."""
    return same_as_plain_sql(url, replica, PERIOD, now=NOW)["values"]


def _builder(engine: sa.Engine, written_at: Any = WRITTEN, first: int = 1000) -> WorldBuilder:
    return WorldBuilder(engine, NOW, seq=itertools.count(first), written_at=written_at)


def test_a_sync_picks_up_orders_late_deliveries_contacts_feedback_and_events(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    url, engine, _ = store
    before = _both(url, replica)
    assert before["orders"] == 8

    # given a new customer and an order, dispatched but not delivered
    b = _builder(engine)
    e = b.customer(first_seen=at(21, 8), region="south")
    order = b.order(e, placed=at(21, 12), dispatch_h=5, promise_h=48, deliver_h=None)
    b.flush()
    report = replica.sync()
    assert report.rows["orders"] == 1 and report.rows["shipments"] == 1
    v = _both(url, replica)
    assert v["orders"] == 9 and v["delivered_on_promise"] == pytest.approx(500 / 6)

    # when its shipment is delivered 100 h after it was placed (52 h after the promise)
    with engine.begin() as conn:
        conn.execute(
            sa.update(shipments)
            .where(shipments.c.order_id == order)
            .values(
                status="Delivered",
                delivered_at=at(21, 12) + timedelta(hours=100),
                updated_at=WRITTEN + timedelta(minutes=1),
            )
        )
    assert replica.sync().orders_recomputed == 1
    v = _both(url, replica)
    assert v["delivered_on_promise"] == pytest.approx(500 / 7)
    assert v["p90_delay_h"] == pytest.approx(52.0)

    # when the customer writes about it (no order named: linked to their latest order) and leaves one star
    b = _builder(engine, written_at=WRITTEN + timedelta(minutes=2), first=2000)
    b.contact(e, at=at(22, 9), reason="wismo")
    b.feedback(at=at(22, 10), order_id=order, customer_id=e, kind="review", rating=1, topic="delivery")
    b.flush()
    replica.sync()
    v = _both(url, replica)
    assert v["contacts_per_order"] == pytest.approx(4 / 9)
    assert v["one_star_share"] == pytest.approx(50.0)
    assert replica.count("contact_links", f"order_id = '{order}'") == 1
    assert (
        replica.count("contact_links", f"order_id = '{order}' AND upstream_cause = 'no_upstream_cause'") == 1
    )

    # when a return of the order as damaged is requested before the contact: the kept causes of the contact and
    # of the review (computed at sync time) follow their order's facts
    b = _builder(engine, written_at=WRITTEN + timedelta(minutes=3), first=3000)
    b.return_(order, e, at=at(22, 8), reason="damaged.box")
    b.flush()
    replica.sync()
    _both(url, replica)
    assert replica.count("contact_links", f"order_id = '{order}' AND upstream_cause = 'damaged'") == 1
    assert replica.count("feedback_causes", f"order_id = '{order}' AND cause = 'damaged'") == 1

    # when they browse again in a new session
    b.event(e, at=at(22, 11), name="Product Viewed", session="s-new", source="google")
    b.flush()
    assert replica.sync().rows["customer_events"] == 1
    v = _both(url, replica)
    assert v["sessions"] == before["sessions"] + 1 and v["product_views"] == before["product_views"] + 1


def test_syncing_again_changes_nothing_and_a_late_commit_inside_the_overlap_is_read(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    url, engine, _ = store
    b = _builder(engine)
    b.order(b.customer(first_seen=at(20, 8)), placed=at(20, 12))
    b.flush()
    assert replica.sync().rows["orders"] == 1
    again = replica.sync()
    assert sum(again.rows.values()) == 0 and again.orders_recomputed == 0

    # a transaction that committed late: its timestamp is older than the newest row already read
    late = _builder(engine, written_at=WRITTEN - OVERLAP + timedelta(seconds=30), first=2000)
    late.order(late.customer(first_seen=at(20, 8)), placed=at(20, 13))
    late.flush()
    assert replica.sync().rows["orders"] == 1
    assert _both(url, replica)["orders"] == 10


def test_erasure_removes_the_customers_rows_from_the_replica(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    from doorstep.customers.tables import customers

    url, engine, ids = store
    gone = ids["A"]
    assert replica.count("orders", f"customer_id = '{gone}'") > 0
    order_ids = [
        r[0] for r in replica._db.execute("SELECT id FROM orders WHERE customer_id = ?", [gone]).fetchall()
    ]

    # the store's foreign keys cascade, as erase_customer relies on
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.execute(sa.delete(customers).where(customers.c.id == gone))
    report = replica.sync()

    assert report.deleted["customers"] == 1
    in_list = ", ".join(f"'{o}'" for o in order_ids)
    for table in ("customers", "customer_orders"):
        column = "id" if table == "customers" else "customer_id"
        assert replica.count(table, f"{column} = '{gone}'") == 0
    for table in ("orders", "order_facts", "conversations", "contact_links", "feedback", "customer_events"):
        assert replica.count(table, f"customer_id = '{gone}'") == 0, table
    for table in ("shipments", "order_steps", "returns", "order_lines"):
        assert replica.count(table, f"order_id IN ({in_list})") == 0, table
    _both(url, replica)  # and the numbers still agree with the store


def _fingerprint(url: str) -> str:
    path = Path(sa.engine.make_url(url).database or "")
    digest = hashlib.sha256()
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def test_the_replica_never_writes_to_the_store(store: tuple[str, sa.Engine, dict[str, str]]) -> None:
    import duckdb

    url, engine, _ = store
    engine.dispose()  # SQLite: no connection of ours left to checkpoint the WAL while we look
    is_sqlite = url.startswith("sqlite")
    before = _fingerprint(url) if is_sqlite else None
    replica = Replica(url)
    try:
        replica.sync()
        replica.sync()
        with replica.runner() as runner:
            compute_dashboard(runner, PERIOD, now=NOW)
        if is_sqlite:  # read with the app's own sqlite3, opened read-only
            assert replica._store_conn is not None
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                replica._store_conn.execute("DELETE FROM orders")
        else:  # the postgres scanner, attached READ_ONLY
            with pytest.raises(duckdb.Error, match=r"read-only|read only"):
                replica._db.cursor().execute("DELETE FROM store.orders")
    finally:
        replica.close()
    if is_sqlite:
        assert _fingerprint(url) == before
    check = create_db_engine(url)
    with check.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one() == 11
    check.dispose()


def test_the_dashboard_says_warming_up_instead_of_hanging(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    replica = Replica(sqlite_url)
    service = DashboardService(
        database_url=sqlite_url, read_engine=engine, clock=FixedClock(NOW), replica=replica, warm_wait_s=0.05
    )
    service._thread = object()  # type: ignore[assignment]  # as if the watcher were building the replica
    replica.build.state, replica.build.step = "building", "customer_events"
    try:
        with pytest.raises(ReplicaWarmingUp) as caught:
            service.compute(PERIOD)
        assert caught.value.http_status == 503 and caught.value.extra["step"] == "customer_events"
    finally:
        replica.close()
        engine.dispose()


def test_the_page_shows_warming_up_while_the_replica_builds(tmp_path: Path, sqlite_url: str) -> None:
    from tests.conftest import make_settings
    from tests.factories import staff_user
    from tests.helpers import running_app

    from doorstep.security.sessions import SESSION_COOKIE

    with running_app(make_settings(tmp_path, sqlite_url), FixedClock(NOW)) as app:
        app.client.cookies.set(SESSION_COOKIE, staff_user(app.ctx.engine, now=NOW, role="analyst")["session"])
        service0: DashboardService = app.ctx.services["dashboard"]
        time.sleep(3 * service0.poll_s)
        assert (
            service0.replica.build.state == "empty"
        )  # a process that never serves the dashboard reads nothing
        assert app.client.get("/dashboard?period=7").status_code == 200  # asking builds the replica
        service: DashboardService = app.ctx.services["dashboard"]
        service._stop.set()  # no more syncs: as if the watcher thread were still in the initial build
        assert service._thread is not None
        service._thread.join(timeout=10)
        service.warm_wait_s = 0.05
        service.replica.build.state, service.replica.build.step = "building", "order_facts"
        page = app.client.get("/dashboard?period=7")
        assert page.status_code == 503 and "warming up" in page.text and "order_facts" in page.text
        assert app.client.get("/dashboard/data.json?period=7").status_code == 503
        service.replica.build.state = "ready"
        assert app.client.get("/dashboard?period=7").status_code == 200


def test_sessions_that_cross_a_period_boundary_count_in_both_periods_as_in_plain_sql(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    url, engine, ids = store
    before = _both(url, replica)
    b = _builder(engine)
    # one session across the start of the period (rolled up as one row, but counted in both periods)
    b.event(
        ids["A"],
        at=PERIOD.start - timedelta(minutes=10),
        name="Product Viewed",
        session="s-x",
        source="google",
    )
    b.event(ids["A"], at=PERIOD.start + timedelta(minutes=10), name="Product Added", session="s-x")
    # a call without a session, and a session shared by two profiles (before a merge)
    b.event(ids["B"], at=at(20, 9), name="Product Viewed", session=None, kind="track")  # type: ignore[arg-type]
    b.event(ids["B"], at=at(20, 10), name="Product Viewed", session="s-shared")
    b.event(ids["C"], at=at(20, 11), name="Checkout Started", session="s-shared")
    b.flush()
    replica.sync()
    v = _both(url, replica)
    assert v["sessions"] == before["sessions"] + 2  # s-x (its added call is in the period) and s-shared
    assert v["product_views"] == before["product_views"] + 2


def test_a_large_sqlite_store_is_first_read_by_a_child_process(sqlite_url: str) -> None:
    """The export path (DuckDB's sqlite scanner in its own process, analytics/export.py), forced on a small
    store: the same numbers as plain SQL, and later deltas still read in-process."""
    engine = create_db_engine(sqlite_url)
    known_world(engine)
    replica = Replica(sqlite_url, export_min_rows=0)
    try:
        assert replica.sync().rows["orders"] == 11
        _both(sqlite_url, replica)
        b = _builder(engine)
        b.order(b.customer(first_seen=at(20, 8)), placed=at(20, 12))
        b.flush()
        assert replica.sync().rows["orders"] == 1
        assert _both(sqlite_url, replica)["orders"] == 9
    finally:
        replica.close()
        engine.dispose()


def test_a_second_process_on_the_same_file_keeps_its_replica_in_memory(
    tmp_path: Path, sqlite_url: str
) -> None:
    """DuckDB gives a file to one process; `serve --workers N` must not fail in the others."""
    import subprocess
    import sys

    path = tmp_path / "analytics" / "replica.duckdb"
    holder = Replica(sqlite_url, path=path)
    holder.sync()  # opens and holds the file
    try:
        code = (
            "import sys; from pathlib import Path; from doorstep.analytics.replica import Replica; "
            f"r = Replica({sqlite_url!r}, path=Path({str(path)!r})); r.sync(); "
            "sys.exit(0 if r.path is None and r.is_ready else 1)"
        )
        import doorstep

        env = {**os.environ, "PYTHONPATH": str(Path(doorstep.__file__).resolve().parents[1])}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
        )
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        holder.close()


def test_a_merge_of_two_visitors_moves_their_events_in_the_replica(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    url, engine, _ = store
    before = _both(url, replica)

    # given two new visitors browsing in the period, on two devices
    b = _builder(engine)
    phone = b.customer(first_seen=at(21, 8))
    laptop = b.customer(first_seen=at(21, 9))
    b.event(phone, at=at(21, 8), name="Product Viewed", session="s-phone", source="google")
    b.event(laptop, at=at(21, 9), name="Product Viewed", session="s-laptop", source="newsletter")
    b.flush()
    replica.sync()
    v = _both(url, replica)
    assert v["new_visitors"] == before["new_visitors"] + 2 and v["sessions"] == before["sessions"] + 2

    # when they log in on the laptop with the phone's account: the laptop's profile is merged into the phone's
    _merge(engine, (laptop, phone), written_at=WRITTEN + timedelta(minutes=5))
    replica.sync()
    v = _both(url, replica)  # equal to plain SQL on the merged store
    assert v["new_visitors"] == before["new_visitors"] + 1  # one person
    assert v["sessions"] == before["sessions"] + 2  # who browsed in two sessions

    # when, between two syncs, a tablet's profile is merged into the phone's, then the phone's into an account:
    # the chain ends at the last survivor
    b = _builder(engine, written_at=WRITTEN + timedelta(minutes=6), first=4000)
    tablet = b.customer(first_seen=at(22, 8))
    account = b.customer(first_seen=at(22, 9))
    b.event(tablet, at=at(22, 8), name="Product Added", session="s-tablet", source="facebook")
    b.event(account, at=at(22, 9), name="Product Viewed", session="s-phone", source="google")
    b.flush()
    _merge(engine, (tablet, phone), (phone, account), written_at=WRITTEN + timedelta(minutes=7))
    replica.sync()
    v = _both(url, replica)
    assert replica.count("customer_events", f"customer_id IN ('{tablet}', '{phone}', '{laptop}')") == 0
    assert v["sessions"] == before["sessions"] + 3  # s-phone is now one session of one customer


def _merge(engine: sa.Engine, *pairs: tuple[str, str], written_at: Any) -> None:
    """(loser, survivor) merges in order, as the customers domain writes them: the loser's events move to the
    survivor (its `move_merged`), the loser points at the survivor, both profiles are written now."""
    with engine.begin() as conn:
        repo = CustomerRepository(conn)
        for loser, survivor in pairs:
            repo.move_merged(loser_id=loser, survivor_id=survivor)
            conn.execute(sa.update(customers).where(customers.c.id == loser).values(merged_into=survivor))
            conn.execute(
                sa.update(customers)
                .where(customers.c.id.in_([loser, survivor]))
                .values(updated_at=written_at)
            )
