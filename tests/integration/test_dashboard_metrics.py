"""Every dashboard metric against a world whose numbers are worked out by hand (tests/support_dashboard.py),
computed by DuckDB over the analytics replica and by plain SQL on the store: both must give the same exact
answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.support_dashboard import NOW, known_world, synced_replica

from doorstep.analytics.engine import sql_runner
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard, drill
from doorstep.analytics.replica import Replica
from doorstep.db.engine import create_db_engine

PERIOD = Filters.last_days(7, now=NOW)


@pytest.fixture
def world(sqlite_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    engine = create_db_engine(sqlite_url)
    ids = known_world(engine)
    engine.dispose()
    yield sqlite_url, ids


@pytest.fixture
def any_world(database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The same world on SQLite, and on PostgreSQL when configured (the replica then syncs from PostgreSQL)."""
    engine = create_db_engine(database_url)
    ids = known_world(engine)
    engine.dispose()
    yield database_url, ids


def _compute(url: str, engine_name: str, f: Filters) -> dict[str, Any]:
    if engine_name == "duckdb":
        with synced_replica(url) as replica, replica.runner() as runner:
            return compute_dashboard(runner, f, now=NOW)
    engine = create_db_engine(url, for_reads=True)
    try:
        with sql_runner(engine) as runner:
            return compute_dashboard(runner, f, now=NOW)
    finally:
        engine.dispose()


@pytest.mark.parametrize("engine_name", ["duckdb", "sql"])
def test_every_metric_matches_the_hand_worked_world(
    any_world: tuple[str, dict[str, str]], engine_name: str
) -> None:
    url, _ = any_world
    result = _compute(url, engine_name, PERIOD)
    v = result["values"]

    assert v["sessions"] == 4
    assert v["new_visitors"] == 2
    assert v["product_views"] == 3
    assert v["add_to_cart_rate"] == pytest.approx(200 / 3)
    assert v["checkout_conversion"] == pytest.approx(50.0)
    assert v["orders"] == 8
    assert v["aov"] == pytest.approx(56.25)
    assert v["order_to_dispatch_h"] == pytest.approx(13.0)
    assert v["dispatched_on_time"] == pytest.approx(600 / 7)
    assert v["delivered_on_promise"] == pytest.approx(500 / 6)
    assert v["first_attempt_success"] == pytest.approx(500 / 6)
    assert v["mean_delay_h"] == pytest.approx(32 / 6)
    assert v["p90_delay_h"] == pytest.approx(32.0)
    assert v["contacts_per_order"] == pytest.approx(3 / 8)
    assert v["contacts_per_customer"] == pytest.approx(3 / 5)
    assert v["wismo_share"] == pytest.approx(100 / 3)
    assert v["return_rate"] == pytest.approx(12.5)
    assert v["csat"] == pytest.approx(50.0)
    assert v["nps"] == pytest.approx(0.0)
    assert v["one_star_share"] == pytest.approx(100 / 3)
    assert v["repeat_purchase_rate"] == pytest.approx(60.0)
    assert v["perfect_share"] == pytest.approx(12.5)

    by_key = {m["key"]: m for s in result["stages"] for m in s["metrics"]}
    assert by_key["orders"]["previous"] == 2
    assert by_key["aov"]["previous"] == pytest.approx(40.0)
    assert by_key["sessions"]["previous"] == 1
    assert by_key["new_visitors"]["previous"] == 1
    assert by_key["add_to_cart_rate"]["previous"] == pytest.approx(100.0)
    assert by_key["orders"]["change"] == 6
    assert [s["key"] for s in result["stages"]] == [
        "awareness",
        "consideration",
        "purchase",
        "fulfilment",
        "delivery",
        "after_purchase",
        "loyalty",
    ]

    b = result["breakdowns"]
    assert [(r["label"], r["value"]) for r in b["sessions_by_source"]] == [
        ("google", 2),
        ("direct", 1),
        ("newsletter", 1),
    ]
    assert [(r["label"], r["value"]) for r in b["new_visitors_by_source"]] == [("google", 2)]
    assert [(r["label"], r["value"]) for r in b["contact_reasons"]] == [
        ("delivery_change", 1),
        ("return_status", 1),
        ("wismo", 1),
    ]
    assert [(r["label"], r["value"]) for r in b["return_reasons"]] == [("damaged.in_transit", 1)]
    assert [(r["label"], r["value"], r["scored"]) for r in b["one_star_by_topic"]] == [
        ("delivery", 1, 2),
        ("price", 0, 1),
    ]


@pytest.mark.parametrize("engine_name", ["duckdb", "sql"])
def test_perfect_journey_drivers_and_downstream(
    any_world: tuple[str, dict[str, str]], engine_name: str
) -> None:
    url, _ = any_world
    result = _compute(url, engine_name, PERIOD)

    perfect = result["perfect"]
    assert perfect["orders"] == 8 and perfect["perfect"] == 1
    assert {s["step"]: s["fell_off"] for s in perfect["stair"]} == {
        "cancelled": 1,
        "dispatch_late": 1,
        "not_delivered": 1,
        "late": 1,
        "failed_attempt": 1,
        "contacted": 1,
        "returned": 0,
        "unhappy": 1,
    }
    carriers = {r["label"]: (r["orders"], r["perfect"]) for r in perfect["by"]["carrier"]}
    assert carriers == {"dhl": (5, 1), "ups": (1, 0), "dpd": (1, 0), "(none)": (1, 0)}
    assert {r["label"]: r["orders"] for r in perfect["by"]["region"]} == {"north": 4, "south": 4}
    assert {r["label"]: r["orders"] for r in perfect["by"]["category"]} == {"shoes": 6, "bags": 2}
    assert {r["label"]: r["orders"] for r in perfect["by"]["week"]} == {"2026-11-16": 8}

    drivers = {d["cause"]: d for d in result["drivers"]}
    assert [d["cause"] for d in result["drivers"]] == ["late", "damaged", "failed_attempt"]
    assert (drivers["late"]["contacts"], drivers["late"]["one_star"], drivers["late"]["owner"]) == (
        1,
        1,
        "carrier",
    )
    assert drivers["late"]["previous_contacts"] == 1 and drivers["late"]["orders"] == 1
    assert drivers["damaged"]["contacts"] == 1 and drivers["failed_attempt"]["contacts"] == 1

    down = {r["bucket"]: r for r in result["downstream"]}
    assert down["on time"]["orders"] == 5
    assert down["on time"]["contacts_per_order"] == pytest.approx(0.4)
    assert down["on time"]["mean_score"] == pytest.approx(3.5)
    assert down["on time"]["repeat_rate"] == pytest.approx(40.0)
    assert down["2 days late"]["orders"] == 1 and down["2 days late"]["mean_score"] == pytest.approx(1.0)
    assert down["1 day late"]["orders"] == 0 and down["1 day late"]["mean_score"] is None


@pytest.mark.parametrize("engine_name", ["duckdb", "sql"])
@pytest.mark.parametrize(
    ("cut", "orders", "contacts"),
    [
        ({"carrier": "dhl"}, 5, 1),
        ({"region": "south"}, 4, 1),
        ({"channel": "app"}, 1, 0),
        ({"segment": "new"}, 4, 1),
        ({"segment": "returning"}, 4, 2),
    ],
)
def test_filters_cut_orders_and_contacts(
    world: tuple[str, dict[str, str]], engine_name: str, cut: dict[str, str], orders: int, contacts: int
) -> None:
    url, _ = world
    f = Filters(PERIOD.start, PERIOD.end, **cut)
    v = _compute(url, engine_name, f)["values"]
    assert v["orders"] == orders
    assert (v["contacts_per_order"] or 0) * orders == pytest.approx(contacts)


@pytest.mark.parametrize("engine_name", ["duckdb", "sql"])
def test_drill_down_lists_the_orders_behind_a_number(
    world: tuple[str, dict[str, str]], engine_name: str
) -> None:
    url, ids = world
    engine = create_db_engine(url, for_reads=True)
    replica = Replica(url)
    replica.sync()
    try:

        def run(name: str) -> tuple[str, list[dict[str, Any]]]:
            if engine_name == "duckdb":
                with replica.runner() as runner:
                    return drill(runner, PERIOD, name, now=NOW)
            with sql_runner(engine) as runner:
                return drill(runner, PERIOD, name, now=NOW)

        kind, late = run("late")
        assert kind == "orders" and [r["id"] for r in late] == [ids["o2"]]
        assert [r["id"] for r in run("fall:unhappy")[1]] == [ids["o8"]]
        assert [r["id"] for r in run("cause:failed_attempt")[1]] == [ids["o4"]]
        assert len(run("orders")[1]) == 8
        kind, repeaters = run("repeat_customers")
        assert kind == "customers" and {r["id"] for r in repeaters} == {ids["A"], ids["B"], ids["D"]}
        assert {r["id"] for r in run("new_visitors")[1]} == {ids["B"], ids["C"]}
    finally:
        replica.close()
        engine.dispose()
