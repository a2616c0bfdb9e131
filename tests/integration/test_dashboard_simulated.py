"""The dashboard against the simulator's ground truth: exact counts on a generated world."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from tests.support_dashboard import load_simulated_world, synced_replica

from doorstep.analytics.engine import sql_runner
from doorstep.analytics.model import Filters, owner_of
from doorstep.analytics.queries import compute_dashboard, stage
from doorstep.db.engine import create_db_engine
from doorstep.simulator.profile import load_profile
from doorstep.simulator.world import generate

SIM_ORDERS = 400


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    return generate(load_profile("boutique"), orders=SIM_ORDERS, seed=11)


def test_metrics_match_the_simulators_truth(world, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = create_db_engine(sqlite_url)
    load_simulated_world(engine, world)
    engine.dispose()
    orders = list(world.truth_orders())
    ships = {s["order_id"]: s for s in world.truth_shipments()}
    first = min(_ts(o["placed_at"]) for o in orders)
    last = max(_ts(o["placed_at"]) for o in orders)
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    f = Filters(start, start + timedelta(days=(last - start).days + 1))
    now = last + timedelta(days=60)  # everything has happened
    with synced_replica(sqlite_url) as replica, replica.runner() as runner:
        result = compute_dashboard(runner, f, now=now)
    with sql_runner(create_db_engine(sqlite_url, for_reads=True)) as runner:
        plain = compute_dashboard(runner, f, now=now)["values"]
    # equal to plain SQL (SQLite's julianday arithmetic differs in the last digits of hours)
    assert plain == {
        k: pytest.approx(v, rel=1e-9) if v is not None else None for k, v in result["values"].items()
    }
    v = {m["key"]: m for s in result["stages"] for m in s["metrics"]}

    delivered = [s for s in ships.values() if s["delivered_at"]]
    assert v["orders"]["value"] == len(orders) == SIM_ORDERS
    assert v["delivered_on_promise"]["denominator"] == len(delivered)
    assert v["delivered_on_promise"]["numerator"] == sum(1 for s in delivered if not s["late"])
    assert v["first_attempt_success"]["numerator"] == sum(
        1 for s in delivered if not s["failed_first_attempt"]
    )
    contacts = [c for c in world.truth_contacts() if not c["is_follow_up"]]
    in_period = [c for c in contacts if f.start <= _ts(c["sent_at"]) < f.end]
    assert v["contacts_per_order"]["numerator"] == len(in_period)
    assert v["return_rate"]["numerator"] == sum(1 for o in orders if o["returned"])
    feedback = [r for r in world.feedback() if f.start <= _ts(r["submitted_at"]) < f.end]
    csat = [int(r["csat"]) for r in feedback if r["csat"] not in ("", None)]
    assert v["csat"]["denominator"] == len(csat) and v["csat"]["numerator"] == sum(1 for c in csat if c >= 4)
    scores = [int(r["rating"] or r["csat"]) for r in feedback if (r["rating"] or r["csat"]) not in ("", None)]
    assert v["one_star_share"]["numerator"] == sum(1 for s in scores if s == 1)


def test_derived_causes_recover_the_simulators_carrier_causes(world, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    """Conversations arrive with no cause; what happened to the order before the contact must give it back
    for the causes the store can see (late, lost, failed attempt)."""
    engine = create_db_engine(sqlite_url)
    load_simulated_world(engine, world)
    orders = list(world.truth_orders())
    returned = {o["order_id"] for o in orders if o["returned"]}
    first = min(_ts(o["placed_at"]) for o in orders)
    f = Filters(first - timedelta(days=1), first + timedelta(days=365))
    now = f.end
    read = create_db_engine(sqlite_url, for_reads=True)
    try:
        with sql_runner(read) as runner:
            params = stage(runner, f, now=now)
            derived = {r["id"]: r["cause"] for r in runner.rows("SELECT id, cause FROM contacts", params)}
    finally:
        read.dispose()
        engine.dispose()
    from tests.support_dashboard import uuid

    truth = {
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim:conversation:{c['contact_id']}")): c
        for c in world.truth_contacts()
        if not c["is_follow_up"]
    }
    checked = Counter()
    mismatched = []
    for cid, c in truth.items():
        if (
            c["cause"] in ("late", "lost", "failed_attempt")
            and c["order_id"] not in returned
            and cid in derived
        ):
            checked[c["cause"]] += 1
            if derived[cid] != c["cause"]:
                mismatched.append((c["cause"], derived[cid], c["sent_at"], c["order_id"]))
    total = sum(checked.values())
    assert total >= 20, checked
    # Every one is put on the carrier. The cause itself can be ambiguous in the store: a contact made after
    # a failed attempt *and* after the promise passed reads as either; allow at most 5% of those.
    assert all(owner_of(derived) == "carrier" for _, derived, _, _ in mismatched)
    assert len(mismatched) <= total * 0.05, mismatched
