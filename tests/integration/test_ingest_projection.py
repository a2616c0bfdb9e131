"""The Segment projection on the real store (SQLite, and PostgreSQL when configured): identity merges and
refusals, orders from e-commerce events, replay determinism, merges moving orders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import write_key
from tests.helpers import AppUnderTest, running_app
from tests.support_ingest import basic, count, drain_log, order_completed

from doorstep.bus.admin import reset_projections
from doorstep.bus.tables import outbox
from doorstep.clock import FixedClock
from doorstep.customers.model import Identifier, Kind, customer_id_for
from doorstep.customers.tables import consents, customer_events, customers, identities, identity_links
from doorstep.db.migrate import check
from doorstep.orders.tables import order_lines, order_steps, orders, products


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[AppUnderTest]:
    with running_app(make_settings(tmp_path, database_url, default_phone_region="GB"), clock) as app:
        app.key = write_key(app.ctx.engine, now=clock.now())  # type: ignore[attr-defined]
        yield app


def send(app: AppUnderTest, *events: dict[str, Any]) -> None:
    response = app.client.post("/v1/batch", json={"batch": list(events)}, headers=basic(app.key))  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    assert "rejected" not in response.json(), response.json()
    drain_log(app)
    with app.ctx.engine.connect() as conn:
        deferred = conn.execute(
            select(outbox.c.last_error).where(outbox.c.handler == "bus.retry_log_event")
        ).all()
    assert deferred == [], deferred  # every call projected at the first attempt


def owner(app: AppUnderTest, kind: str, value: str) -> str | None:
    with app.ctx.engine.connect() as conn:
        return conn.execute(
            select(identities.c.customer_id).where(identities.c.kind == kind, identities.c.value == value)
        ).scalar_one_or_none()


def outbox_types(app: AppUnderTest) -> list[str]:
    with app.ctx.engine.connect() as conn:
        return list(conn.execute(select(outbox.c.event_type).order_by(outbox.c.id)).scalars())


def test_schema_matches_the_migrations(database_url: str) -> None:
    check(database_url)


def test_anonymous_browsing_then_login_on_another_device_merges_into_one_profile(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "page", "anonymousId": "laptop", "messageId": "m1"},
        {"type": "page", "anonymousId": "phone", "messageId": "m2"},
        {
            "type": "identify",
            "anonymousId": "laptop",
            "userId": "maya",
            "traits": {"email": "maya@shop.io"},
            "messageId": "m3",
        },
        {"type": "identify", "anonymousId": "phone", "traits": {"email": "MAYA@shop.io"}, "messageId": "m4"},
    )

    maya = owner(app, "user_id", "maya")
    assert maya is not None
    assert {
        owner(app, "anonymous_id", "laptop"),
        owner(app, "anonymous_id", "phone"),
        owner(app, "email", "maya@shop.io"),
    } == {maya}
    with app.ctx.engine.connect() as conn:
        live = conn.execute(select(customers.c.id).where(customers.c.merged_into.is_(None))).scalars().all()
        merged = conn.execute(
            select(customers.c.id, customers.c.merged_into).where(customers.c.merged_into.is_not(None))
        ).all()
        actions = conn.execute(
            select(identity_links.c.action, identity_links.c.message_id)
            .where(identity_links.c.customer_id == maya)
            .order_by(identity_links.c.id)
        ).all()
        timeline = (
            conn.execute(select(customer_events.c.log_id).where(customer_events.c.customer_id == maya))
            .scalars()
            .all()
        )
    assert live == [maya]
    # the phone's anonymous profile (its id derived from its first identifier) was folded into Maya's
    assert [tuple(m) for m in merged] == [(customer_id_for(Identifier(Kind.ANONYMOUS_ID, "phone")), maya)]
    assert ("merged", "m4") in [tuple(a) for a in actions]
    assert len(timeline) == 4  # the phone's page view moved to Maya's timeline
    assert outbox_types(app).count("CustomersMerged") == 1


def test_shared_device_keeps_two_users_apart_and_explains_why(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "identify", "anonymousId": "family-ipad", "userId": "maya", "messageId": "m1"},
        {"type": "identify", "anonymousId": "family-ipad", "userId": "tom", "messageId": "m2"},
        {
            "type": "track",
            "userId": "tom",
            "event": "Order Completed",
            "properties": order_completed("2002"),
            "messageId": "m3",
        },
    )

    maya, tom = owner(app, "user_id", "maya"), owner(app, "user_id", "tom")
    assert maya and tom and maya != tom
    assert owner(app, "anonymous_id", "family-ipad") == maya
    with app.ctx.engine.connect() as conn:
        refusal = conn.execute(select(identity_links).where(identity_links.c.action == "refused")).one()
        order_owner = conn.execute(select(orders.c.customer_id)).scalar_one()
    assert refusal.customer_id == tom and refusal.other_customer_id == maya
    assert "2 user_id (maya, tom)" in refusal.reason
    assert order_owner == tom
    assert count(app.ctx.engine, customers, customers.c.merged_into.is_not(None)) == 0


def test_placeholder_email_never_links_strangers(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "identify", "userId": "a", "traits": {"email": "test@test.com"}, "messageId": "m1"},
        {"type": "identify", "userId": "b", "traits": {"email": "test@test.com"}, "messageId": "m2"},
        {
            "type": "identify",
            "anonymousId": "null",
            "traits": {"email": "noreply@shop.io"},
            "messageId": "m3",
        },
    )

    assert count(app.ctx.engine, customers) == 2
    assert count(app.ctx.engine, identities, identities.c.kind == "email") == 0
    assert count(app.ctx.engine, identity_links, identity_links.c.action == "refused") == 2
    assert (
        count(app.ctx.engine, customer_events) == 2
    )  # the call with only blocked identifiers is on no profile


def test_alias_joins_previous_anonymous_id(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "page", "anonymousId": "cookie-9", "messageId": "m1"},
        {"type": "alias", "previousId": "cookie-9", "userId": "maya", "messageId": "m2"},
    )

    assert owner(app, "user_id", "maya") == owner(app, "anonymous_id", "cookie-9")
    assert count(app.ctx.engine, customers) == 1


def test_orders_follow_the_ecommerce_events(app: AppUnderTest, clock: FixedClock) -> None:
    send(
        app,
        {
            "type": "track",
            "userId": "maya",
            "event": "Product Added",
            "messageId": "m0",
            "properties": {"product_id": "sock", "name": "Sock", "price": 5, "currency": "EUR"},
        },
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Completed",
            "messageId": "m1",
            "properties": order_completed(
                "1001", shipping_address={"city": "Leeds", "postcode": "LS1 4AP", "country": "GB"}
            ),
        },
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Updated",
            "messageId": "m2",
            "properties": {
                "order_id": "1001",
                "products": [
                    {"product_id": "shoe-1", "price": "95.00", "quantity": 1, "category": "Shoes"},
                    {"product_id": "sock", "price": "5.00", "quantity": 2, "category": "Socks"},
                ],
                "total": "109.50",
            },
        },
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Refunded",
            "messageId": "m3",
            "properties": {"order_id": "1001", "total": "10.00"},
        },
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Cancelled",
            "messageId": "m4",
            "properties": {"order_id": "1001", "reason": "changed mind"},
        },
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Cancelled",
            "messageId": "m5",
            "properties": {"order_id": "9999"},
        },
    )

    with app.ctx.engine.connect() as conn:
        order = conn.execute(select(orders)).one()
        lines = conn.execute(
            select(order_lines.c.product_id, order_lines.c.quantity, order_lines.c.unit_price_minor).order_by(
                order_lines.c.line_no
            )
        ).all()
        steps = dict(conn.execute(select(order_steps.c.step, order_steps.c.detail)).all())
        catalogue = {r.id: (r.name, r.price_minor) for r in conn.execute(select(products))}
    assert (order.external_id, order.status, order.total_minor, order.currency) == (
        "1001",
        "cancelled",
        10950,
        "EUR",
    )
    assert (order.ship_city, order.ship_postcode) == ("Leeds", "LS1 4AP")
    assert [tuple(line) for line in lines] == [("shoe-1", 1, 9500), ("sock", 2, 500)]
    assert set(steps) == {"placed", "refunded", "cancelled"}
    assert steps["refunded"]["refunded"] == "10.00"
    assert steps["cancelled"] == {"reason": "changed mind"}
    assert catalogue == {"sock": ("Sock", 500), "shoe-1": ("Runner", 9500)}
    assert count(app.ctx.engine, orders) == 1


def test_merged_customers_orders_move_to_the_survivor(app: AppUnderTest) -> None:
    send(
        app,
        {
            "type": "track",
            "anonymousId": "guest-1",
            "event": "Order Completed",
            "messageId": "m1",
            "properties": order_completed("3003"),
        },
        {"type": "identify", "userId": "maya", "traits": {"email": "maya@shop.io"}, "messageId": "m2"},
        {
            "type": "identify",
            "anonymousId": "guest-1",
            "traits": {"email": "maya@shop.io"},
            "messageId": "m3",
        },
    )

    maya = owner(app, "user_id", "maya")
    with app.ctx.engine.connect() as conn:
        assert conn.execute(select(orders.c.customer_id)).scalar_one() == maya
        handled = (
            conn.execute(select(outbox.c.status).where(outbox.c.handler == "orders.follow_customer_merge"))
            .scalars()
            .all()
        )
    assert handled == ["done"]


def test_consents_from_traits_are_stored_once(app: AppUnderTest) -> None:
    send(
        app,
        {
            "type": "identify",
            "userId": "maya",
            "traits": {"consent": {"sms": {"service": True}}, "email_opt_in": False},
            "messageId": "m1",
        },
        {
            "type": "identify",
            "userId": "maya",
            "traits": {"consent": {"sms": {"service": True}}},
            "messageId": "m2",
        },
    )

    with app.ctx.engine.connect() as conn:
        rows = conn.execute(select(consents.c.channel, consents.c.topic, consents.c.is_granted)).all()
    assert sorted(tuple(r) for r in rows) == [("email", "marketing", False), ("sms", "service", True)]


def test_replay_rebuilds_the_same_profiles_and_orders(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "page", "anonymousId": "laptop", "messageId": "m1"},
        {
            "type": "identify",
            "anonymousId": "laptop",
            "userId": "maya",
            "traits": {"email": "maya@shop.io", "phone": "+447911123456"},
            "messageId": "m2",
        },
        {"type": "identify", "anonymousId": "family", "userId": "tom", "messageId": "m3"},
        {"type": "identify", "anonymousId": "family", "userId": "maya", "messageId": "m4"},
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Completed",
            "properties": order_completed("1001"),
            "messageId": "m5",
        },
    )

    def snapshot() -> dict[str, Any]:
        with app.ctx.engine.connect() as conn:
            return {
                "customers": sorted(
                    conn.execute(select(customers.c.id, customers.c.email, customers.c.merged_into)).all()
                ),
                "identities": sorted(
                    conn.execute(
                        select(identities.c.customer_id, identities.c.kind, identities.c.value)
                    ).all()
                ),
                "links": sorted(
                    conn.execute(
                        select(identity_links.c.customer_id, identity_links.c.action, identity_links.c.reason)
                    ).all()
                ),
                "orders": sorted(
                    conn.execute(select(orders.c.id, orders.c.customer_id, orders.c.total_minor)).all()
                ),
                "events": sorted(
                    conn.execute(select(customer_events.c.log_id, customer_events.c.customer_id)).all()
                ),
            }

    before = snapshot()
    with app.ctx.engine.begin() as conn:
        emptied = reset_projections(conn, bus=app.ctx.bus, sources=["segment"], force=True)
    assert count(app.ctx.engine, customers) == 0
    drain_log(app)

    assert emptied[0] == "order_steps" and emptied[-1] == "customers"
    assert snapshot() == before


def test_domain_events_are_published_once_per_fact(app: AppUnderTest) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    for event_type in (
        "CustomerCreated",
        "CustomersMerged",
        "ConsentChanged",
        "OrderPlaced",
        "OrderCancelled",
        "OrderRefunded",
        "OrderUpdated",
    ):
        app.ctx.bus.subscribe(
            event_type, f"test.spy_{event_type}", lambda env, ctx: seen.append((env.event_type, env.payload))
        )
    calls = [
        {"type": "page", "anonymousId": "a1", "messageId": "m1"},
        {
            "type": "identify",
            "userId": "maya",
            "traits": {"email": "maya@shop.io", "sms_opt_in": True},
            "messageId": "m2",
        },
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "maya@shop.io"}, "messageId": "m3"},
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Completed",
            "properties": order_completed("1"),
            "messageId": "m4",
        },
        {
            "type": "track",
            "userId": "maya",
            "event": "Order Cancelled",
            "properties": {"order_id": "1"},
            "messageId": "m5",
        },
    ]
    send(app, *calls)
    send(app, *calls)  # the SDK retries the whole batch: stored once, so nothing is published twice

    maya = owner(app, "user_id", "maya")
    types = [t for t, _ in seen]
    assert types.count("CustomerCreated") == 2  # a1's anonymous profile, then Maya's
    assert [p["customer_id"] for t, p in seen if t == "CustomersMerged"] == [maya]
    assert types.count("CustomersMerged") == 1
    assert [(p["channel"], p["is_granted"]) for t, p in seen if t == "ConsentChanged"] == [("sms", True)]
    assert types.count("OrderPlaced") == 1 and types.count("OrderCancelled") == 1
    assert "OrderRefunded" not in types and "OrderUpdated" not in types


def test_a_merged_profile_id_leads_to_the_survivor(app: AppUnderTest) -> None:
    from doorstep.customers.queries import get_customer

    send(
        app,
        {"type": "page", "anonymousId": "a1", "messageId": "m1"},
        {"type": "identify", "userId": "maya", "messageId": "m2"},
        {"type": "identify", "userId": "maya", "anonymousId": "a1", "messageId": "m3"},
    )
    old_id = customer_id_for(Identifier(Kind.ANONYMOUS_ID, "a1"))
    with app.ctx.engine.connect() as conn:
        profile = get_customer(conn, old_id)

    assert profile.id == owner(app, "user_id", "maya")
    assert profile.merged_ids == [old_id]
    assert [link.action for link in profile.identity_links] == ["created", "created", "merged"]
    assert "merged profile" in profile.identity_links[-1].reason


def test_odd_but_accepted_calls_never_break_the_projection(app: AppUnderTest) -> None:
    odd = [
        {
            "type": "identify",
            "userId": "u1",
            "traits": {
                "email": 5,
                "phone": {"x": 1},
                "address": "10 Downing St",
                "name": ["a"],
                "consent": "yes",
                "preferred_channels": 3,
            },
        },
        {
            "type": "identify",
            "userId": "u2",
            "traits": {
                "email": "x" * 300 + "@shop.io",
                "phone": "9" * 40,
                "timezone": "Z" * 500,
                "locale": "l" * 100,
            },
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "properties": {"order_id": {"nested": True}, "total": "NaN"},
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "properties": {
                "order_id": "O" * 300,
                "total": 1e30,
                "currency": 7,
                "coupon": "C" * 500,
                "products": [
                    {"product_id": "P" * 300, "price": "abc", "quantity": -3, "name": "N" * 1000},
                    "junk",
                ],
                "shipping_address": {"country": "Narnia", "postal_code": "9" * 100},
                "delivery_promise": {"from": 5},
            },
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Refunded",
            "properties": {"order_id": "O" * 300, "total": "-5"},
        },
        {
            "type": "page",
            "anonymousId": "a1",
            "name": "P",
            "context": {"campaign": {"source": {"deep": 1}}, "sessionId": ["s"]},
        },
        {"type": "alias", "userId": "u3", "previousId": "undefined"},
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"email": "company@shop.io"}},
    ]
    send(app, *odd)

    with app.ctx.engine.connect() as conn:
        failures = conn.execute(
            select(outbox.c.event_type, outbox.c.last_error).where(outbox.c.status != "done")
        ).all()
        order = conn.execute(select(orders)).one()
    assert failures == []
    assert len(order.external_id) == 100 and order.coupon == "C" * 100
    assert order.currency == "USD" and order.total_minor == 0
    assert order.status == "refunded"  # a refund sent as -5 on a zero total refunds it all
    assert count(app.ctx.engine, customer_events) == len(odd)
    assert (
        count(app.ctx.engine, identities, identities.c.kind == "email") == 0
    )  # group traits are the company's


def test_find_by_identity_normalises_what_it_is_given(app: AppUnderTest) -> None:
    from doorstep.customers.queries import find_by_identity

    send(
        app,
        {"type": "identify", "userId": "maya", "traits": {"email": "maya@shop.io", "phone": "+447911123456"}},
    )
    maya = owner(app, "user_id", "maya")

    with app.ctx.engine.connect() as conn:
        assert find_by_identity(conn, "phone", "07911 123456", default_region="GB") == maya
        assert find_by_identity(conn, "email", " Maya@Shop.IO ") == maya
        assert find_by_identity(conn, "email", "lee@shop.io") is None


def test_seen_times_widen_with_out_of_order_calls(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "page", "anonymousId": "a1", "timestamp": "2026-11-23T08:00:00Z", "messageId": "m1"},
        {"type": "page", "anonymousId": "a1", "timestamp": "2026-11-23T08:30:00Z", "messageId": "m2"},
        {"type": "page", "anonymousId": "a1", "timestamp": "2026-11-23T07:00:00Z", "messageId": "m3"},
        {"type": "page", "anonymousId": "a1", "timestamp": "2026-11-23T08:10:00Z", "messageId": "m4"},
    )

    with app.ctx.engine.connect() as conn:
        row = conn.execute(select(customers.c.first_seen_at, customers.c.last_seen_at)).one()
    assert (row.first_seen_at.isoformat(), row.last_seen_at.isoformat()) == (
        "2026-11-23T07:00:00+00:00",
        "2026-11-23T08:30:00+00:00",
    )


def test_a_repeated_refusal_is_explained_once(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "identify", "anonymousId": "family-ipad", "userId": "maya", "messageId": "m1"},
        *[
            {
                "type": "track",
                "anonymousId": "family-ipad",
                "userId": "tom",
                "event": "Product Viewed",
                "messageId": f"t{n}",
            }
            for n in range(3)
        ],
        *[{"type": "page", "anonymousId": "null", "userId": "tom", "messageId": f"p{n}"} for n in range(3)],
    )

    with app.ctx.engine.connect() as conn:
        refusals = conn.execute(
            select(identity_links.c.kind, identity_links.c.value, identity_links.c.message_id)
            .where(identity_links.c.action == "refused")
            .order_by(identity_links.c.id)
        ).all()
    assert [tuple(r) for r in refusals] == [
        ("anonymous_id", "family-ipad", "t0"),
        ("anonymous_id", "null", "p0"),
    ]
    assert count(app.ctx.engine, customer_events) == 7


def test_alias_from_a_shared_devices_anonymous_id_does_not_join_two_accounts(app: AppUnderTest) -> None:
    send(
        app,
        {"type": "identify", "anonymousId": "family-ipad", "userId": "maya", "messageId": "m1"},
        {"type": "alias", "previousId": "family-ipad", "userId": "tom", "messageId": "m2"},
        {"type": "alias", "previousId": "maya", "userId": "maya-2024", "messageId": "m3"},
    )

    maya, tom = owner(app, "user_id", "maya"), owner(app, "user_id", "tom")
    assert maya and tom and maya != tom
    assert owner(app, "anonymous_id", "family-ipad") == maya
    assert owner(app, "user_id", "maya-2024") == maya  # an alias between userIds does join them


def test_replay_refuses_to_cascade_into_rows_the_log_cannot_rebuild(
    app: AppUnderTest, clock: FixedClock
) -> None:
    from doorstep.bus.admin import ReplayWouldDelete
    from doorstep.conversations.tables import conversations

    send(
        app,
        {"type": "identify", "userId": "maya", "messageId": "m1", "traits": {"email": "maya@example.com"}},
    )
    drain_log(app)
    maya = owner(app, "user_id", "maya")
    with app.ctx.engine.begin() as conn:
        conn.execute(
            conversations.insert().values(
                id="conv-1",
                customer_id=maya,
                channel="chat",
                status="bot",
                state={},
                opened_at=clock.now(),
                updated_at=clock.now(),
            )
        )

    with pytest.raises(ReplayWouldDelete) as refused, app.ctx.engine.begin() as conn:
        reset_projections(conn, bus=app.ctx.bus, sources=["segment"])

    assert refused.value.at_risk == {"conversations": 1}
    assert count(app.ctx.engine, customers) == 1 and count(app.ctx.engine, conversations) == 1
    with app.ctx.engine.begin() as conn:
        reset_projections(conn, bus=app.ctx.bus, sources=["segment"], force=True)
    assert count(app.ctx.engine, customers) == 0 and count(app.ctx.engine, conversations) == 0
