"""The Segment-spec HTTP API end to end: every endpoint, bad input, limits, replays, and the read API."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import secret_key, segment_event, staff_user, write_key
from tests.helpers import AppUnderTest, running_app
from tests.support_ingest import basic, bearer, count, log_count, order_completed

from doorstep.clock import FixedClock
from doorstep.customers.tables import customers, identities, identity_links
from doorstep.ingest.tables import event_log
from doorstep.orders.tables import order_lines, orders


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> Iterator[AppUnderTest]:
    with running_app(make_settings(tmp_path, sqlite_url, default_phone_region="GB"), clock) as app:
        yield app


@pytest.fixture
def key(app: AppUnderTest, clock: FixedClock) -> str:
    return write_key(app.ctx.engine, now=clock.now())


def problem(response: object) -> dict[str, object]:
    assert response.headers["content-type"] == "application/problem+json", response.text  # type: ignore[attr-defined]
    return response.json()  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    ("path", "event"),
    [
        ("/v1/identify", {"userId": "u1", "traits": {"email": "maya@shop.io"}}),
        ("/v1/track", {"userId": "u1", "event": "Product Viewed", "properties": {"product_id": "p1"}}),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}),
        ("/v1/screen", {"anonymousId": "a1", "name": "Basket"}),
        ("/v1/group", {"userId": "u1", "groupId": "acme", "traits": {"plan": "b2b"}}),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}),
    ],
)
def test_each_endpoint_appends_one_call(app: AppUnderTest, key: str, path: str, event: dict[str, object]) -> None:
    response = app.client.post(path, json=event, headers=basic(key))

    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    with app.ctx.engine.connect() as conn:
        row = conn.execute(select(event_log)).one()
    assert row.type == path.rsplit("/", 1)[1]
    assert row.source == "segment"


def test_write_key_in_the_body_is_accepted(app: AppUnderTest, key: str) -> None:
    response = app.client.post("/v1/track", json={**segment_event(), "writeKey": key})

    assert response.status_code == 200
    with app.ctx.engine.connect() as conn:
        assert "writeKey" not in conn.execute(select(event_log.c.payload)).scalar_one()


def test_secret_key_without_ingest_scope_cannot_ingest(app: AppUnderTest, clock: FixedClock) -> None:
    read_only = secret_key(app.ctx.engine, now=clock.now(), scopes=["customers:read"])

    response = app.client.post("/v1/track", json=segment_event(), headers=basic(read_only))

    assert response.status_code == 401
    assert log_count(app.ctx.engine) == 0


def test_missing_write_key_is_401_problem(app: AppUnderTest) -> None:
    response = app.client.post("/v1/track", json=segment_event())

    assert response.status_code == 401
    assert "write key" in problem(response)["detail"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"userId": "u1", "event": ', ""),
        (b"", ""),
        (orjson.dumps({"event": "X"}), "userId"),
        (orjson.dumps({"userId": ["u"], "event": "X"}), "userId"),
        (orjson.dumps({"userId": "u", "event": "X", "properties": "p"}), "properties"),
        (orjson.dumps({"userId": "u", "event": 7}), "event"),
        (orjson.dumps({"userId": "u", "event": "X", "timestamp": "yesterday"}), "timestamp"),
        (orjson.dumps({"userId": "u", "event": "X", "timestamp": "2027-01-01T00:00:00Z"}), "timestamp"),
    ],
)
def test_bad_single_calls_are_400_naming_the_field_and_store_nothing(
    app: AppUnderTest, key: str, body: bytes, field: str
) -> None:
    response = app.client.post("/v1/track", content=body, headers={**basic(key), "content-type": "application/json"})

    assert response.status_code == 400, response.text
    body_json = problem(response)
    assert body_json["errors"][0]["field"] == field  # type: ignore[index]
    assert log_count(app.ctx.engine) == 0


def test_oversize_event_is_400_naming_the_limit(app: AppUnderTest, key: str) -> None:
    event = segment_event(properties={"blob": "x" * 33_000})

    response = app.client.post("/v1/track", json=event, headers=basic(key))

    assert response.status_code == 400
    assert "32 KB per event" in problem(response)["detail"]  # type: ignore[operator]
    assert log_count(app.ctx.engine) == 0


def test_oversize_batch_is_400_naming_the_limit(app: AppUnderTest, key: str) -> None:
    batch = [segment_event(properties={"blob": "x" * 20_000}) for _ in range(30)]

    response = app.client.post("/v1/batch", json={"batch": batch}, headers=basic(key))

    assert response.status_code == 400
    assert "500 KB per batch" in problem(response)["detail"]  # type: ignore[operator]
    assert log_count(app.ctx.engine) == 0


def test_oversize_event_inside_a_one_event_batch_is_rejected(app: AppUnderTest, key: str) -> None:
    response = app.client.post(
        "/v1/batch", json={"batch": [segment_event(properties={"blob": "x" * 40_000})]}, headers=basic(key)
    )

    assert response.status_code == 400
    assert "32 KB per event" in problem(response)["rejected"][0]["detail"]  # type: ignore[index]
    assert log_count(app.ctx.engine) == 0


def test_gzip_batch_is_inflated_and_a_gzip_bomb_is_refused(app: AppUnderTest, key: str) -> None:
    good = gzip.compress(orjson.dumps({"batch": [segment_event(), segment_event()]}))
    bomb = gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}")
    headers = {**basic(key), "content-type": "application/json", "content-encoding": "gzip"}

    ok = app.client.post("/v1/batch", content=good, headers=headers)
    refused = app.client.post("/v1/batch", content=bomb, headers=headers)

    assert ok.status_code == 200 and ok.json()["accepted"] == 2
    assert refused.status_code == 400 and "500 KB per batch" in problem(refused)["detail"]  # type: ignore[operator]
    assert log_count(app.ctx.engine) == 2


def test_batch_with_bad_items_stores_the_good_ones_and_lists_the_rest(app: AppUnderTest, key: str) -> None:
    good = [segment_event(), segment_event("page", name="Home")]
    batch = [good[0], {"type": "track", "messageId": "bad-1", "event": "X"}, "not an object", good[1],
             {"type": "dance", "userId": "u"}]

    response = app.client.post("/v1/batch", json={"batch": batch}, headers=basic(key))

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert [(r["index"], r["messageId"], r["errors"][0]["field"]) for r in body["rejected"]] == [
        (1, "bad-1", "userId"), (2, None, ""), (4, None, "type")]
    assert log_count(app.ctx.engine) == 2


def test_all_bad_batch_is_400_listing_every_item(app: AppUnderTest, key: str) -> None:
    response = app.client.post("/v1/batch", json={"batch": [{"type": "track"}, 5]}, headers=basic(key))

    assert response.status_code == 400
    assert [r["index"] for r in problem(response)["rejected"]] == [0, 1]  # type: ignore[union-attr]


def test_retry_is_a_duplicate_but_a_reused_message_id_is_refused(app: AppUnderTest, key: str, clock: FixedClock) -> None:
    event = segment_event(messageId="m-1")
    first = app.client.post("/v1/track", json=event, headers=basic(key))
    clock.advance(seconds=30)
    retry = app.client.post("/v1/track", json={**event, "sentAt": "2026-11-23T09:00:29Z"}, headers=basic(key))
    replay = app.client.post("/v1/track", json={**event, "event": "Order Completed"}, headers=basic(key))
    in_batch = app.client.post(
        "/v1/batch",
        json={"batch": [segment_event(messageId="m-2"), segment_event(messageId="m-2"), {**event, "event": "Other"}]},
        headers=basic(key),
    )

    assert (first.status_code, retry.status_code) == (200, 200)
    assert replay.status_code == 409
    assert problem(replay)["errors"][0]["field"] == "messageId"  # type: ignore[index]
    assert in_batch.status_code == 200
    assert in_batch.json()["accepted"] == 1
    assert [(r["index"], r["errors"][0]["field"]) for r in in_batch.json()["rejected"]] == [(1, "messageId"),
                                                                                          (2, "messageId")]
    with app.ctx.engine.connect() as conn:
        stored = conn.execute(select(event_log.c.message_id, event_log.c.name).order_by(event_log.c.id)).all()
    assert [tuple(r) for r in stored] == [("m-1", "Product Viewed"), ("m-2", "Product Viewed")]


def test_clock_skew_is_corrected_from_sent_at(app: AppUnderTest, key: str) -> None:
    # the device clock runs 3 hours fast; the server received the batch at 09:00 UTC
    batch = {"batch": [segment_event(timestamp="2026-11-23T11:59:00Z", sentAt=None)], "sentAt": "2026-11-23T12:00:00Z"}
    batch["batch"][0].pop("sentAt")

    app.client.post("/v1/batch", json=batch, headers=basic(key))

    with app.ctx.engine.connect() as conn:
        row = conn.execute(select(event_log)).one()
    assert row.occurred_at.isoformat() == "2026-11-23T08:59:00+00:00"
    assert row.payload["originalTimestamp"] == "2026-11-23T11:59:00+00:00"


def test_maya_story_one_profile_and_an_order_through_the_read_api(app: AppUnderTest, key: str, clock: FixedClock) -> None:
    reader = secret_key(app.ctx.engine, now=clock.now(), scopes=["customers:read", "orders:read"])
    batch = [
        {"type": "page", "anonymousId": "anon-maya", "name": "Home", "messageId": "p1",
         "context": {"page": {"url": "https://shop.example/?utm_source=newsletter"}}},
        {"type": "track", "anonymousId": "anon-maya", "event": "Product Viewed", "messageId": "t1",
         "properties": {"product_id": "shoe-1", "name": "Runner", "price": 95, "category": "Shoes"}},
        {"type": "identify", "anonymousId": "anon-maya", "userId": "maya-1", "messageId": "i1",
         "traits": {"email": "Maya@Shop.io", "phone": "07911 123456", "name": "Maya Lopez",
                    "preferred_channel": "whatsapp", "consent": {"whatsapp": True}}},
        {"type": "track", "userId": "maya-1", "event": "Order Completed", "messageId": "o1",
         "properties": order_completed("1001", payment_status="paid")},
    ]
    assert app.client.post("/v1/batch", json={"batch": batch}, headers=basic(key)).json()["accepted"] == 4
    app.drain()

    page = app.client.get("/api/v1/customers", params={"email": "maya@shop.io"}, headers=bearer(reader))
    assert page.status_code == 200, page.text
    [summary] = page.json()["items"]
    profile = app.client.get(f"/api/v1/customers/{summary['id']}", headers=bearer(reader)).json()
    order = app.client.get("/api/v1/orders/1001", headers=bearer(reader)).json()

    assert (profile["email"], profile["phone"], profile["name"]) == ("maya@shop.io", "+447911123456", "Maya Lopez")
    assert sorted((i["kind"], i["value"]) for i in profile["identities"]) == [
        ("anonymous_id", "anon-maya"), ("email", "maya@shop.io"), ("phone", "+447911123456"), ("user_id", "maya-1")]
    assert [link["action"] for link in profile["identity_links"]] == ["created", "linked", "linked", "linked"]
    assert "user_id:maya-1 with anonymous_id:anon-maya in message i1" in profile["identity_links"][1]["reason"]
    assert profile["preferred_channels"] == ["whatsapp"]
    assert [(c["channel"], c["topic"], c["is_granted"]) for c in profile["consents"]] == [("whatsapp", "marketing", True)]
    assert [(e["type"], e["name"]) for e in profile["recent_events"]][-1] == ("page", "Home")
    assert profile["recent_events"][-1]["campaign_source"] == "newsletter"
    assert [o["external_id"] for o in profile["orders"]] == ["1001"]
    assert (order["total"], order["currency"], order["customer_id"]) == ("99.50", "EUR", summary["id"])
    assert [s["step"] for s in order["steps"]] == ["placed", "paid"]
    assert [(line["product_id"], line["unit_price"], line["category"]) for line in order["lines"]] == [
        ("shoe-1", "95.00", "Shoes")]
    assert order["promised_from"] == "2026-11-26T09:00:00Z"


def test_read_api_needs_the_right_scope_or_role(app: AppUnderTest, clock: FixedClock) -> None:
    orders_only = secret_key(app.ctx.engine, now=clock.now(), scopes=["orders:read"])
    driver = staff_user(app.ctx.engine, now=clock.now(), role="driver")
    agent = staff_user(app.ctx.engine, now=clock.now(), role="agent")

    anonymous = app.client.get("/api/v1/customers")
    wrong_scope = app.client.get("/api/v1/customers", headers=bearer(orders_only))
    app.client.cookies.set("doorstep_session", driver["session"])
    as_driver = app.client.get("/api/v1/customers")
    app.client.cookies.set("doorstep_session", agent["session"])
    as_agent = app.client.get("/api/v1/customers")
    agent_erase = app.client.delete("/api/v1/customers/x", headers={"x-csrf-token": agent["csrf"]})

    assert anonymous.status_code == 401
    assert wrong_scope.status_code == 403
    assert as_driver.status_code == 403
    assert as_agent.status_code == 200
    assert agent_erase.status_code == 403


def test_customer_listing_pages_with_an_opaque_cursor(app: AppUnderTest, key: str, clock: FixedClock) -> None:
    reader = secret_key(app.ctx.engine, now=clock.now(), scopes=["customers:read"])
    for n in range(5):
        app.client.post("/v1/identify", json={"userId": f"u{n}", "traits": {"name": f"C{n}"}}, headers=basic(key))
        app.drain()
        clock.advance(minutes=1)

    first = app.client.get("/api/v1/customers", params={"limit": 2}, headers=bearer(reader)).json()
    second = app.client.get("/api/v1/customers", params={"limit": 2, "cursor": first["next_cursor"]},
                            headers=bearer(reader)).json()
    third = app.client.get("/api/v1/customers", params={"limit": 2, "cursor": second["next_cursor"]},
                           headers=bearer(reader)).json()
    since = app.client.get("/api/v1/customers", params={"updated_since": "2026-11-23T09:03:00Z"},
                           headers=bearer(reader)).json()
    bad = app.client.get("/api/v1/customers", params={"cursor": "!!nope"}, headers=bearer(reader))

    names = [c["name"] for page in (first, second, third) for c in page["items"]]
    assert names == ["C4", "C3", "C2", "C1", "C0"]
    assert third["next_cursor"] is None
    assert [c["name"] for c in since["items"]] == ["C4", "C3"]
    assert bad.status_code == 400 and problem(bad)["errors"][0]["field"] == "cursor"  # type: ignore[index]


def test_order_listing_filters_and_pages(app: AppUnderTest, key: str, clock: FixedClock) -> None:
    reader = secret_key(app.ctx.engine, now=clock.now(), scopes=["orders:read"])
    for n in range(3):
        app.client.post("/v1/track", json={"userId": "u1" if n < 2 else "u2", "event": "Order Completed",
                                           "properties": order_completed(f"10{n}")}, headers=basic(key))
        clock.advance(hours=1)
    app.client.post("/v1/track", json={"userId": "u1", "event": "Order Cancelled", "properties": {"order_id": "100"}},
                    headers=basic(key))
    app.drain()
    customer_id = app.client.get("/api/v1/orders/101", headers=bearer(reader)).json()["customer_id"]

    mine = app.client.get("/api/v1/orders", params={"customer_id": customer_id}, headers=bearer(reader)).json()
    cancelled = app.client.get("/api/v1/orders", params={"status": "cancelled"}, headers=bearer(reader)).json()
    window = app.client.get("/api/v1/orders", params={"placed_after": "2026-11-23T10:00:00Z",
                                                      "placed_before": "2026-11-23T11:00:00Z"},
                            headers=bearer(reader)).json()
    page1 = app.client.get("/api/v1/orders", params={"limit": 2}, headers=bearer(reader)).json()
    page2 = app.client.get("/api/v1/orders", params={"limit": 2, "cursor": page1["next_cursor"]},
                           headers=bearer(reader)).json()
    missing = app.client.get("/api/v1/orders/nope", headers=bearer(reader))

    assert [o["external_id"] for o in mine["items"]] == ["101", "100"]
    assert [o["external_id"] for o in cancelled["items"]] == ["100"]
    assert [o["external_id"] for o in window["items"]] == ["101"]
    assert [o["external_id"] for o in page1["items"] + page2["items"]] == ["102", "101", "100"]
    assert missing.status_code == 404


def test_erasure_removes_the_customer_everywhere(app: AppUnderTest, key: str, clock: FixedClock) -> None:
    admin = secret_key(app.ctx.engine, now=clock.now(), scopes=["admin"])
    app.client.post("/v1/batch", headers=basic(key), json={"batch": [
        {"type": "page", "anonymousId": "a-maya", "messageId": "p1"},
        {"type": "page", "anonymousId": "a-maya-phone", "messageId": "p2"},
        {"type": "identify", "userId": "maya", "anonymousId": "a-maya", "traits": {"email": "maya@shop.io"},
         "messageId": "i1"},
        {"type": "identify", "userId": "maya", "anonymousId": "a-maya-phone", "messageId": "i2"},
        {"type": "track", "userId": "maya", "event": "Order Completed", "properties": order_completed("1001"),
         "messageId": "o1"},
        {"type": "identify", "userId": "lee", "traits": {"email": "lee@shop.io"}, "messageId": "i3"},
        {"type": "identify", "userId": "lee", "anonymousId": "a-maya", "messageId": "i4"},  # Lee on Maya's laptop
    ]})
    app.drain()
    with app.ctx.engine.connect() as conn:
        maya = conn.execute(select(identities.c.customer_id).where(identities.c.value == "maya")).scalar_one()
        merged = conn.execute(select(customers.c.id).where(customers.c.merged_into == maya)).scalars().all()
    assert len(merged) == 1  # the phone's anonymous profile was merged into Maya's

    response = app.client.delete(f"/api/v1/customers/{merged[0]}", headers=bearer(admin))

    assert response.status_code == 200, response.text
    assert response.json()["profiles"] == 2
    assert count(app.ctx.engine, customers) == 1  # Lee stays
    assert count(app.ctx.engine, identities, identities.c.value.in_(["maya", "a-maya", "a-maya-phone"])) == 0
    assert count(app.ctx.engine, identity_links, identity_links.c.customer_id == maya) == 0
    assert count(app.ctx.engine, orders) == 0 and count(app.ctx.engine, order_lines) == 0
    with app.ctx.engine.connect() as conn:
        remaining = conn.execute(select(event_log.c.message_id)).scalars().all()
        lee_links = conn.execute(select(identity_links.c.action, identity_links.c.value)).all()
    assert remaining == ["i3", "i4"]
    # Lee's refused merge named Maya's profile and laptop: that explanation went with her
    assert [tuple(link) for link in lee_links] == [("created", "lee"), ("linked", "lee@shop.io")]
    assert app.client.get(f"/api/v1/customers/{maya}", headers=bearer(admin)).status_code == 404


def test_staff_customer_pages(app: AppUnderTest, key: str, clock: FixedClock) -> None:
    app.client.post("/v1/identify", json={"userId": "u1", "traits": {"email": "maya@shop.io", "name": "Maya <b>"}},
                    headers=basic(key))
    app.drain()
    agent = staff_user(app.ctx.engine, now=clock.now(), role="agent")
    driver = staff_user(app.ctx.engine, now=clock.now(), role="driver")

    anonymous = app.client.get("/customers", follow_redirects=False)
    app.client.cookies.set("doorstep_session", driver["session"])
    as_driver = app.client.get("/customers")
    app.client.cookies.set("doorstep_session", agent["session"])
    listing = app.client.get("/customers", params={"q": "maya@shop.io"})
    customer_id = app.client.get("/api/v1/customers").json()["items"][0]["id"]
    profile_page = app.client.get(f"/customers/{customer_id}")

    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    assert as_driver.status_code == 403
    assert listing.status_code == 200 and "maya@shop.io" in listing.text
    assert profile_page.status_code == 200
    assert "Maya &lt;b&gt;" in profile_page.text
    assert "Why these belong together" in profile_page.text and "new profile: first seen user_id:u1" in profile_page.text


def test_batch_level_context_applies_to_each_call_and_the_calls_own_wins(app: AppUnderTest, key: str) -> None:
    batch = {
        "context": {"locale": "en-GB", "campaign": {"source": "newsletter"}},
        "batch": [segment_event(), segment_event(context={"locale": "de-DE"})],
    }

    assert app.client.post("/v1/batch", json=batch, headers=basic(key)).status_code == 200

    with app.ctx.engine.connect() as conn:
        contexts = conn.execute(select(event_log.c.payload).order_by(event_log.c.id)).scalars().all()
    assert [c["context"] for c in contexts] == [
        {"locale": "en-GB", "campaign": {"source": "newsletter"}},
        {"locale": "de-DE", "campaign": {"source": "newsletter"}},
    ]
