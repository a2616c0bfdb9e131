"""The replica's day rollups (analytics/replica.py: `session_days`, `sessions.rolled_day`) stay equal to what
they roll up through incremental syncs, and the dashboard computed with them equals plain SQL on the store: new
calls that move a session across midnight, a session id shared by two customers, erasure, periods whose
boundaries fall mid-day, and cuts that bypass the rollup."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support_dashboard import NOW, WorldBuilder, at, same_as_plain_sql

from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard
from doorstep.analytics.replica import Replica, _with_rolled_day, session_days_select

WEEK = Filters.last_days(7, now=NOW)  # 17-23 Nov, previous 10-16 Nov: whole days
MIDDAY = Filters(at(18, 12), at(23, 12))  # 5 days from noon to noon: partial days at both ends
WRITTEN = NOW + timedelta(minutes=1)


def _builder(engine: sa.Engine, minutes: int, first: int) -> WorldBuilder:
    return WorldBuilder(
        engine, NOW, seq=itertools.count(first), written_at=WRITTEN + timedelta(minutes=minutes)
    )


def _same_as_plain_sql(url: str, replica: Replica, f: Filters) -> dict[str, Any]:
    return same_as_plain_sql(url, replica, f, now=NOW)


def _assert_rollups_consistent(replica: Replica) -> None:
    """What the sync maintained incrementally equals the rollups rebuilt from scratch."""
    cur = replica._db.cursor()
    try:
        stale = cur.execute(
            "SELECT session_id, customer_id, rolled_day FROM sessions EXCEPT "
            "SELECT session_id, customer_id, rolled_day FROM ("
            f"{_with_rolled_day('SELECT * EXCLUDE (rolled_day) FROM sessions')})"
        ).fetchall()
        assert stale == []
        kept = cur.execute("SELECT * FROM session_days ORDER BY ALL").fetchall()
        rebuilt = cur.execute(f"SELECT * FROM ({session_days_select('TRUE')}) ORDER BY ALL").fetchall()
        assert kept == rebuilt
        # each order's has_earlier / has_later, kept per order, against every order of its customer
        wrong = cur.execute(
            "SELECT f.id FROM order_facts f JOIN orders o ON o.id = f.id WHERE "
            "f.has_earlier <> CAST(EXISTS (SELECT 1 FROM orders o2 WHERE o2.customer_id = o.customer_id "
            "AND o2.placed_at < o.placed_at) AS INTEGER) OR "
            "f.has_later <> CAST(EXISTS (SELECT 1 FROM orders o2 WHERE o2.customer_id = o.customer_id "
            "AND o2.placed_at > o.placed_at) AS INTEGER)"
        ).fetchall()
        assert wrong == []
        assert (
            cur.execute("SELECT count(*) FROM order_facts").fetchone()
            == cur.execute("SELECT count(*) FROM orders").fetchone()
        )
    finally:
        cur.close()


def _row_level_sessions(replica: Replica, f: Filters) -> set[str]:
    """The session ids a computation of `f` counted row by row (its staged `ev`), not from the day rollup."""
    with replica.runner() as runner:
        compute_dashboard(runner, f, now=NOW)
        return {r["session_id"] for r in runner.rows("SELECT DISTINCT session_id FROM ev", {})}


def _session_days(replica: Replica, day: datetime) -> int:
    cur = replica._db.cursor()
    try:
        row = cur.execute(
            "SELECT COALESCE(SUM(sessions), 0) FROM session_days WHERE day = ?", [day.date()]
        ).fetchone()
        return int(row[0])
    finally:
        cur.close()


def _rolled_day(replica: Replica, session: str) -> Any:
    cur = replica._db.cursor()
    try:
        return {
            r[0]
            for r in cur.execute("SELECT rolled_day FROM sessions WHERE session_id = ?", [session]).fetchall()
        }
    finally:
        cur.close()


def test_a_session_leaves_the_day_rollup_when_a_call_lands_on_the_next_day(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    url, engine, ids = store
    before = _same_as_plain_sql(url, replica, WEEK)["values"]
    day = at(20, 0)
    on_day = _session_days(replica, day)

    # a session of two calls on 20 Nov: rolled up on that day, counted once
    b = _builder(engine, 1, 5000)
    b.event(ids["A"], at=at(20, 22), name="Product Viewed", session="s-roll", source="newsletter")
    b.event(ids["A"], at=at(20, 23), name="Product Added", session="s-roll")
    b.flush()
    replica.sync()
    assert _rolled_day(replica, "s-roll") == {day.date()}
    assert _session_days(replica, day) == on_day + 1
    v = _same_as_plain_sql(url, replica, WEEK)["values"]
    assert v["sessions"] == before["sessions"] + 1 and v["product_views"] == before["product_views"] + 1
    assert "s-roll" not in _row_level_sessions(replica, WEEK)  # counted from session_days
    _assert_rollups_consistent(replica)

    # a later call of the same session just after midnight: it spans two days now, read row by row
    b = _builder(engine, 2, 5100)
    b.event(ids["A"], at=at(21, 0) + timedelta(minutes=5), name="Checkout Started", session="s-roll")
    b.flush()
    replica.sync()
    assert _rolled_day(replica, "s-roll") == {None}
    assert _session_days(replica, day) == on_day
    v = _same_as_plain_sql(url, replica, WEEK)["values"]
    assert v["sessions"] == before["sessions"] + 1  # still one session
    assert "s-roll" in _row_level_sessions(replica, WEEK)
    _same_as_plain_sql(url, replica, MIDDAY)
    _assert_rollups_consistent(replica)


def test_a_session_id_shared_by_two_customers_is_rolled_up_by_all_its_calls_and_erasure_rerolls_it(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    from doorstep.customers.tables import customers

    url, engine, ids = store
    before = _same_as_plain_sql(url, replica, WEEK)["values"]
    b = _builder(engine, 1, 6000)
    gone = b.customer(first_seen=at(19, 8), region="north")
    # one session id: C's calls on 19 Nov, the new customer's on 20 Nov: each row is within a day, the session is not
    b.event(ids["C"], at=at(19, 23), name="Product Viewed", session="s-shared-2", source="google")
    b.event(gone, at=at(20, 1), name="Order Completed", session="s-shared-2", source="affiliate")
    # another one, both customers on 19 Nov: rolled up once
    b.event(ids["C"], at=at(19, 9), name="Product Viewed", session="s-shared-1")
    b.event(gone, at=at(19, 10), name="Product Added", session="s-shared-1", source="facebook")
    b.flush()
    replica.sync()
    assert _rolled_day(replica, "s-shared-1") == {at(19, 0).date()}
    assert _rolled_day(replica, "s-shared-2") == {None}
    v = _same_as_plain_sql(url, replica, WEEK)["values"]
    assert v["sessions"] == before["sessions"] + 2
    _same_as_plain_sql(url, replica, MIDDAY)
    _assert_rollups_consistent(replica)

    # erasing the new customer takes their calls: s-shared-2 now lies on 19 Nov only, and is rolled up there
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.execute(sa.delete(customers).where(customers.c.id == gone))
    assert replica.sync().deleted["customers"] == 1
    assert _rolled_day(replica, "s-shared-2") == {at(19, 0).date()}
    result = _same_as_plain_sql(url, replica, WEEK)
    assert result["values"]["sessions"] == before["sessions"] + 2
    assert {r["label"] for r in result["breakdowns"]["sessions_by_source"]} >= {"google"}
    _same_as_plain_sql(url, replica, MIDDAY)
    _assert_rollups_consistent(replica)


@pytest.mark.parametrize(
    "f",
    [
        WEEK,
        MIDDAY,
        Filters(at(18, 12), at(23, 12), region="south"),
        Filters(WEEK.start, WEEK.end, segment="new"),
        Filters(WEEK.start, WEEK.end, carrier="ups"),
        Filters(WEEK.start, WEEK.end, channel="web"),
    ],
    ids=["week", "midday", "midday-south", "week-new", "week-ups", "week-web"],
)
def test_periods_and_cuts_equal_plain_sql_with_sessions_on_every_kind_of_day(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica, f: Filters
) -> None:
    url, engine, ids = store
    b = _builder(engine, 1, 7000)
    sources = itertools.cycle(["google", None, "newsletter"])
    names = itertools.cycle(["Product Viewed", "Product Added", "Checkout Started", "Order Completed", None])
    for i, (who, day) in enumerate(itertools.product(["A", "B", "C", "E"], range(9, 24))):
        start = at(day, (i * 5) % 24)
        for k in range(1 + i % 3):  # sessions of 1-3 calls, some across midnight, some at the period's noon
            name = next(names)
            b.event(
                ids[who],
                at=start + timedelta(minutes=50 * k),
                name=name,
                session=f"s-{who}-{day}",
                kind="track" if name else "page",
                source=next(sources),
            )
    b.flush()
    replica.sync()
    _assert_rollups_consistent(replica)
    assert _session_days(replica, at(20, 0)) > 0
    ours = _same_as_plain_sql(url, replica, f)
    assert ours["values"]["sessions"] > 0
    row_level = _row_level_sessions(replica, f)
    if f.region or f.segment:  # a cut by who browsed reads every session row by row
        assert "s-A-20" in row_level or "s-C-20" in row_level
    else:  # whole days inside the period come from the rollup
        assert not {"s-A-20", "s-B-20", "s-C-20", "s-E-20"} & row_level


def test_a_customers_new_earlier_or_deleted_order_moves_repeat_purchase_and_downstream(
    store: tuple[str, sa.Engine, dict[str, str]], replica: Replica
) -> None:
    from doorstep.orders.tables import orders

    url, engine, ids = store
    before = _same_as_plain_sql(url, replica, WEEK)
    _assert_rollups_consistent(replica)

    # C's only order (o3, 18 Nov, delivered on time) gets a later one: C came back after an on-time delivery
    b = _builder(engine, 1, 8000)
    later = b.order(ids["C"], placed=at(22, 15), deliver_h=None)
    b.flush()
    replica.sync()
    _assert_rollups_consistent(replica)
    after = _same_as_plain_sql(url, replica, WEEK)
    assert after["downstream"][0]["bucket"] == "on time"
    assert after["downstream"][0]["repeat_rate"] > before["downstream"][0]["repeat_rate"]
    assert after["values"]["repeat_purchase_rate"] > before["values"]["repeat_purchase_rate"]

    # an order of history imported for F, placed before F's only order: F is now a repeat customer
    b = _builder(engine, 2, 8100)
    b.order(ids["F"], placed=at(1), dispatch_h=5, deliver_h=30)
    b.flush()
    replica.sync()
    _assert_rollups_consistent(replica)
    assert (
        _same_as_plain_sql(url, replica, WEEK)["values"]["repeat_purchase_rate"]
        > (after["values"]["repeat_purchase_rate"])
    )

    # C's new order is deleted again: C's first order has no later one any more
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.execute(sa.delete(orders).where(orders.c.id == later))
    assert replica.sync().deleted["orders"] == 1
    _assert_rollups_consistent(replica)
    again = _same_as_plain_sql(url, replica, WEEK)
    assert again["downstream"][0]["repeat_rate"] == pytest.approx(before["downstream"][0]["repeat_rate"])
