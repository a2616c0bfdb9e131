from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import timedelta
from pathlib import Path
from statistics import mean
from typing import Any

import phonenumbers
import pytest
import yaml

from doorstep.clock import FixedClock
from doorstep.ingest.segment import Accepted, validate_event
from doorstep.simulator.files import FILES, write_files
from doorstep.simulator.profile import load_profile, parse_profile
from doorstep.simulator.world import generate, make_plan

TAGS = {
    "Pending",
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "Delivered",
    "AvailableForPickup",
    "Exception",
    "Expired",
}


def _profile(**rates: float) -> Any:
    """The boutique with one carrier, no lanes and no peak, so rates in the truth can be compared directly."""
    data = yaml.safe_load(
        (Path(__file__).parents[2] / "src/doorstep/simulator/profiles/boutique.yaml").read_text()
    )
    data["carriers"] = {
        "dhl": {
            **data["carriers"]["dhl"],
            "weight": 1,
            "rates": {
                "delay": 0.2,
                "failed_first_attempt": 0.1,
                "lost": 0.02,
                "damaged": 0.05,
                "return_to_sender": 0.02,
                **rates,
            },
        }
    }
    data["lanes"] = {}
    data["calendar"]["peaks"] = []
    return parse_profile(data)


@pytest.fixture(scope="module")
def world() -> Any:
    return generate(_profile(), orders=4000, seed=11)


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_same_seed_gives_the_same_bytes_whatever_the_process_count(tmp_path: Path) -> None:
    profile = load_profile("boutique")
    write_files(make_plan(profile, orders=900, seed=5, chunk_orders=200), tmp_path / "a", processes=1)
    write_files(make_plan(profile, orders=900, seed=5, chunk_orders=200), tmp_path / "b", processes=2)
    write_files(make_plan(profile, orders=900, seed=6, chunk_orders=200), tmp_path / "c", processes=1)

    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert a == b
    assert set(a) == set(FILES.values()) | {"customers.csv", "products.csv", "manifest.json"}
    assert a["segment_batches.jsonl"] != c["segment_batches.jsonl"]
    assert a["truth_shipments.csv"] != c["truth_shipments.csv"]


def test_shipment_rates_follow_the_profile(world: Any) -> None:
    rows = list(world.truth_shipments())
    n = len(rows)
    lost = sum(r["lost"] for r in rows) / n
    rts = sum(r["returned_to_sender"] for r in rows) / n
    travelling = [r for r in rows if not r["lost"] and not r["returned_to_sender"]]
    delayed = sum(r["delayed"] for r in travelling) / len(travelling)
    failed = sum(r["failed_first_attempt"] for r in travelling) / len(travelling)
    damaged = sum(r["damaged"] for r in rows if not r["lost"]) / sum(1 for r in rows if not r["lost"])

    assert n == 4000
    assert lost == pytest.approx(0.02, abs=0.008)
    assert rts == pytest.approx(0.02, abs=0.008)
    assert delayed == pytest.approx(0.2, abs=0.025)
    assert failed == pytest.approx(0.1, abs=0.02)
    assert damaged == pytest.approx(0.05, abs=0.015)
    # a delay beyond the promise buffer makes a parcel late; an undelayed, first-time delivery is rarely late
    late_when_delayed = mean(r["late"] for r in travelling if r["delayed"])
    late_otherwise = mean(r["late"] for r in travelling if not r["delayed"] and not r["failed_first_attempt"])
    assert late_when_delayed > 0.4
    assert late_otherwise < 0.1
    assert all(r["late_hours"] > 0 for r in rows if r["late"])


def test_late_parcels_bring_more_contacts_and_lower_scores(world: Any) -> None:
    shipments = {r["order_id"]: r for r in world.truth_shipments()}
    orders = list(world.truth_orders())
    late = [o for o in orders if shipments[o["order_id"]]["late"]]
    on_time = [o for o in orders if o["on_time"] and not shipments[o["order_id"]]["damaged"]]

    contact_late = mean(o["contacted"] for o in late)
    contact_on_time = mean(o["contacted"] for o in on_time)
    csat_late = mean(o["csat"] for o in late if o["csat"] != "")
    csat_on_time = mean(o["csat"] for o in on_time if o["csat"] != "")
    assert contact_late > 3 * contact_on_time
    assert csat_late < csat_on_time - 0.7
    causes = Counter(
        c["cause"] for c in world.truth_contacts() if c["order_id"] in {o["order_id"] for o in late}
    )
    assert causes.most_common(1)[0][0] == "late"


def test_contacts_have_a_cause_an_owner_and_matching_words(world: Any) -> None:
    contacts = list(world.truth_contacts())
    owners = {c["cause"]: c["owner"] for c in contacts}

    assert set(owners) <= {
        "late",
        "failed_attempt",
        "damaged",
        "lost",
        "refund_slow",
        "invoice_missing",
        "wrong_item",
        "none",
    }
    assert owners["late"] == "carrier" and owners["refund_slow"] == "payments"
    assert owners.get("wrong_item", "warehouse") == "warehouse"
    texts = [c["text"] for c in contacts if c["cause"] == "late" and not c["is_follow_up"]]
    assert len(set(texts)) > len(texts) * 0.5  # varied wording
    assert {c["channel"] for c in contacts} == {"email", "whatsapp", "sms", "chat"}


def test_returns_concentrate_in_apparel_with_fit_reasons(world: Any) -> None:
    reasons = Counter(o["return_reason"] for o in world.truth_orders() if o["returned"])

    assert reasons.most_common(1)[0][0] == "fit.too_small"
    assert (
        reasons["fit.too_small"] > 2 * reasons["changed_mind"]
    )  # the profile puts fit reasons in apparel and shoes


def test_perfect_journey_truth_is_consistent(world: Any) -> None:
    for o in world.truth_orders():
        if o["perfect"]:
            assert o["on_time"] and not o["contacted"] and not o["returned"] and o["happy"]
            assert o["fell_off_at"] == ""
        else:
            assert o["fell_off_at"] in {"delivery", "contact", "return", "happy"}
            assert o["owner"] in {"carrier", "warehouse", "payments", "product"}


def test_peak_season_raises_daily_orders() -> None:
    plan = make_plan(load_profile("boutique"), orders=6000, seed=3)
    per_day = Counter(plan.order_day.tolist())
    peak = [
        per_day[d]
        for d in range(plan.days)
        if (plan.start + timedelta(days=d)).isoformat() >= "2026-10-01"
        and (plan.start + timedelta(days=d)).isoformat() <= "2026-10-07"
    ]
    other = [per_day[d] for d in range(plan.days) if per_day[d] and d not in range(59, 66)]

    assert mean(peak) / mean(other) == pytest.approx(1.8, rel=0.2)


def test_segment_events_pass_the_ingest_validation(world: Any) -> None:
    events = list(generate(load_profile("boutique"), orders=200, seed=2).segment_events())
    clock = FixedClock()
    results = [
        validate_event(e, index=i, received_at=clock.now(), max_future_skew=timedelta(days=1))
        for i, e in enumerate(events)
    ]

    assert all(isinstance(r, Accepted) for r in results), [r for r in results if not isinstance(r, Accepted)][
        :1
    ]
    names = Counter(e.get("event") or e["type"] for e in events)
    for name in (
        "page",
        "identify",
        "Product Viewed",
        "Product Added",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Order Updated",
    ):
        assert names[name] > 0, name
    completed = [e for e in events if e.get("event") == "Order Completed"]
    assert len(completed) == 200
    assert all(
        e["properties"]["promised_delivery_from"] < e["properties"]["promised_delivery_to"] for e in completed
    )
    assert any("campaign" in e.get("context", {}) for e in events if e["type"] == "page")
    assert len({e["messageId"] for e in events}) == len(events)


def test_customers_have_valid_phones_locales_and_consent() -> None:
    world = generate(load_profile("large"), orders=3000, seed=4)
    customers = list(world.customers())

    for c in customers:
        number = phonenumbers.parse(c["mobile"])
        assert phonenumbers.is_valid_number(number), c["mobile"]
        assert phonenumbers.region_code_for_number(number) == c["country"]
    assert len({c["mobile"] for c in customers}) == len(customers)
    assert len({c["email"] for c in customers}) == len(customers)
    assert {c["locale"] for c in customers} >= {"de-DE", "fr-FR", "en-GB"}
    assert {c["preferred_channel"] for c in customers} == {"email", "whatsapp", "sms"}


def test_aftership_webhooks_have_the_tracking_shape(world: Any) -> None:
    bodies = [b for _i, b in zip(range(3000), world.aftership_webhooks(), strict=False)]

    for body in bodies:
        assert body["event"] == "tracking_update"
        assert isinstance(body["ts"], int) and isinstance(body["is_tracking_first_tag"], bool)
        msg = body["msg"]
        assert msg["slug"] == "dhl" and msg["tracking_number"] and msg["order_id"]
        assert msg["tag"] in TAGS and msg["checkpoints"][-1]["tag"] == msg["tag"]
        times = [c["checkpoint_time"] for c in msg["checkpoints"]]
        assert times == sorted(times)
        for checkpoint in msg["checkpoints"]:
            assert set(checkpoint) >= {
                "checkpoint_time",
                "tag",
                "subtag",
                "raw_tag",
                "message",
                "city",
                "state",
                "country_iso3",
                "zip",
                "location",
                "coordinate",
            }
    assert {b["msg"]["tag"] for b in bodies} >= {"InfoReceived", "InTransit", "OutForDelivery", "Delivered"}


def test_feedback_csv_and_twilio_forms(tmp_path: Path) -> None:
    write_files(make_plan(load_profile("boutique"), orders=600, seed=9), tmp_path, processes=1)

    with open(tmp_path / "feedback.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["kind"] for r in rows} == {"survey", "review"}
    assert all(1 <= int(r["rating"]) <= 5 for r in rows)
    assert all(0 <= int(r["nps"]) <= 10 for r in rows if r["kind"] == "survey")
    import orjson

    forms = [orjson.loads(line) for line in (tmp_path / "twilio_inbound.jsonl").read_bytes().splitlines()]
    assert forms
    for form in forms:
        assert form["MessageSid"].startswith("SM") and form["AccountSid"].startswith("AC")
        assert form["Body"] and form["NumMedia"] == "0"
        assert form["From"].removeprefix("whatsapp:").startswith("+")


SERVER_SIDE = {"Order Updated", "Order Refunded", "Order Cancelled", "Return Requested"}


def test_browsing_calls_carry_a_session_id_shared_within_a_session() -> None:
    events = list(generate(load_profile("boutique"), orders=100, seed=3).segment_events())
    # the shop's server-side calls (Order Updated, Order Refunded ...) come from no browser and carry no context
    browsing = [e for e in events if e["type"] in ("page", "track") and e.get("event") not in SERVER_SIDE]
    sessions: dict[int, set[str]] = {}
    for e in browsing:
        sessions.setdefault(e["context"]["sessionId"], set()).add(e["anonymousId"])

    assert all("sessionId" in e["context"] for e in browsing)
    assert all(len(visitors) == 1 for visitors in sessions.values())  # a session never spans two visitors
    orders = sum(1 for e in browsing if e.get("event") == "Order Completed")
    assert orders <= len(sessions) < len(browsing)  # every order has its session; sessions group many calls
