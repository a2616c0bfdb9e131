"""Journeys end to end on the real store: domain event -> outbox -> journey handler -> queued message ->
sender -> outbox channel (no provider configured). Runs on SQLite, and PostgreSQL when configured."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_notify import (
    NOW,
    add_customer,
    add_order,
    add_shipment,
    messages,
    order_placed,
    publish,
    set_shipment_status,
)

from doorstep.clock import FixedClock
from doorstep.customers.events import ConsentChanged
from doorstep.customers.tables import consents
from doorstep.notifications.api import queue_reply
from doorstep.notifications.services import send_due
from doorstep.orders.events import OrderPlaced
from doorstep.shipments.events import DriverDeparted, ShipmentDelivered, ShipmentPredictedLate

UTC = dt.UTC


def _placed(order_id: str, customer_id: str, at: dt.datetime) -> OrderPlaced:
    return order_placed(order_id, customer_id, at=at, external_id="#1042", total="89.90")


def _late(
    shipment_id: str, order_id: str, customer_id: str, at: dt.datetime, *, delay_hours: float
) -> ShipmentPredictedLate:
    return ShipmentPredictedLate(
        occurred_at=at,
        shipment_id=shipment_id,
        order_id=order_id,
        customer_id=customer_id,
        promised_to=at + dt.timedelta(hours=10),
        predicted_from=at + dt.timedelta(hours=24),
        predicted_to=at + dt.timedelta(hours=10 + delay_hours),
        delay_hours=delay_hours,
        confidence=0.8,
    )


def test_same_event_three_times_yields_one_message(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with running_app(
        make_settings(tmp_path, database_url, public_base_url="https://track.example"), clock
    ) as app:
        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id, external_id="#1042")
        for _ in range(3):  # redelivered by the shop's SDK / re-emitted by a replay: new event ids, same fact
            publish(app.ctx, _placed(order_id, customer_id, clock.now()))
        app.drain()

        assert send_due(app.ctx, clock.now()) == 1
        assert send_due(app.ctx, clock.now()) == 0

        [message] = messages(app.ctx.engine)
        assert message.trigger == "order_confirmed"
        assert message.dedupe_key == f"order_confirmed:{order_id}"
        assert message.channel == "outbox"  # no provider configured
        assert message.status == "sent"
        assert message.to_address == "maya@example.com"
        assert "Order #1042 is confirmed" in message.body_text
        assert "https://track.example/t/" in message.body_text


def test_condition_only_sends_predicted_late_over_four_hours(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id)
        shipment_id = add_shipment(app.ctx.engine, order_id)

        publish(app.ctx, _late(shipment_id, order_id, customer_id, clock.now(), delay_hours=3))
        app.drain()
        assert messages(app.ctx.engine) == []

        publish(app.ctx, _late(shipment_id, order_id, customer_id, clock.now(), delay_hours=26))
        app.drain()
        send_due(app.ctx, clock.now())
        [message] = messages(app.ctx.engine)
        assert message.trigger == "predicted_late"
        assert "running late" in message.body_text
        assert "?action=reschedule" in message.body_text and "?action=pickup_point" in message.body_text


def test_delayed_message_is_cancelled_when_the_reason_is_gone(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id)
        shipment_id = add_shipment(app.ctx.engine, order_id)
        # 23:30 in Berlin: the "late" message waits for quiet hours to end ...
        clock.at = dt.datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
        publish(app.ctx, _late(shipment_id, order_id, customer_id, clock.now(), delay_hours=12))
        app.drain()
        send_due(app.ctx, clock.now())
        [held] = messages(app.ctx.engine)
        assert held.status == "queued" and held.suppression_reason == "quiet_hours"

        # ... and by morning the parcel was delivered: no "running late" after "delivered"
        set_shipment_status(app.ctx.engine, shipment_id, "Delivered")
        clock.at = dt.datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
        send_due(app.ctx, clock.now())
        [message] = messages(app.ctx.engine)
        assert message.status == "suppressed"
        assert message.suppression_reason == "cancelled_reason_gone"
        assert message.sent_at is None


def test_message_due_at_2330_local_goes_out_when_quiet_hours_end(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine, timezone="America/New_York")
        order_id = add_order(app.ctx.engine, customer_id)
        clock.at = dt.datetime(2026, 11, 24, 4, 30, tzinfo=UTC)  # 23:30 in New York (EST, UTC-5)
        publish(app.ctx, _placed(order_id, customer_id, clock.now()))
        app.drain()

        send_due(app.ctx, clock.now())
        [held] = messages(app.ctx.engine)
        assert held.status == "queued"
        assert held.suppression_reason == "quiet_hours"
        assert held.scheduled_for == dt.datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 08:00 New York

        clock.at = dt.datetime(2026, 11, 24, 12, 59, tzinfo=UTC)
        assert send_due(app.ctx, clock.now()) == 0
        assert messages(app.ctx.engine)[0].status == "queued"

        clock.at = dt.datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
        send_due(app.ctx, clock.now())
        [sent] = messages(app.ctx.engine)
        assert sent.status == "sent"
        assert sent.sent_at == dt.datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
        assert sent.suppression_reason is None


def test_driver_departed_is_urgent_and_ignores_quiet_hours(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id)
        shipment_id = add_shipment(app.ctx.engine, order_id, status="OutForDelivery")
        clock.at = dt.datetime(2026, 11, 23, 20, 30, tzinfo=UTC)  # 21:30 Berlin, inside quiet hours
        publish(
            app.ctx,
            DriverDeparted(
                occurred_at=clock.now(),
                shipment_id=shipment_id,
                order_id=order_id,
                customer_id=customer_id,
                eta_from=clock.now() + dt.timedelta(minutes=20),
                eta_to=clock.now() + dt.timedelta(minutes=60),
            ),
        )
        app.drain()
        send_due(app.ctx, clock.now())
        [message] = messages(app.ctx.engine)
        assert message.status == "sent"
        assert "Mon 23 Nov, 21:50–22:30" in message.body_text  # the ETA window in the customer's time zone


def test_daily_cap_suppresses_the_message_over_the_cap(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        app.client.app  # noqa: B018
        from doorstep.notifications.repository import NotificationRepository

        with app.ctx.engine.begin() as conn:
            NotificationRepository(conn).save_preferences(
                customer_id=customer_id, now=clock.now(), daily_cap=2
            )
        order_ids = [add_order(app.ctx.engine, customer_id) for _ in range(3)]
        for order_id in order_ids:
            publish(app.ctx, _placed(order_id, customer_id, clock.now()))
        app.drain()
        send_due(app.ctx, clock.now())

        rows = messages(app.ctx.engine)
        assert sorted(r.status for r in rows) == ["sent", "sent", "suppressed"]
        assert [r.suppression_reason for r in rows if r.status == "suppressed"] == ["daily_cap"]


def test_opted_out_customer_gets_nothing_and_the_reason_is_recorded(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine, channels=["email"], phone=None)
        with app.ctx.engine.begin() as conn:
            conn.execute(
                consents.insert().values(
                    customer_id=customer_id,
                    channel="email",
                    topic="service",
                    is_granted=False,
                    source="test",
                    updated_at=clock.now(),
                )
            )
        order_id = add_order(app.ctx.engine, customer_id)
        publish(app.ctx, _placed(order_id, customer_id, clock.now()))
        app.drain()
        send_due(app.ctx, clock.now())

        [message] = messages(app.ctx.engine)
        assert (message.status, message.suppression_reason) == ("suppressed", "opted_out")
        assert message.body_text is None


def test_delivered_after_delay_rule_and_unknown_customer_is_ignored(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        publish(
            app.ctx,
            ShipmentDelivered(
                occurred_at=clock.now(),
                shipment_id="s-unknown",
                order_id=None,
                customer_id=None,
                delivered_at=clock.now(),
                is_late=False,
                delay_hours=0,
            ),
        )
        app.drain()
        with app.ctx.engine.connect() as conn:
            from doorstep.notifications.tables import notifications

            assert conn.execute(select(func.count()).select_from(notifications)).scalar_one() == 0


def test_conversation_reply_is_delivered_and_not_held_by_quiet_hours(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        clock.at = dt.datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # midnight in Berlin
        with app.ctx.engine.begin() as conn:
            queue_reply(
                conn,
                customer_id=customer_id,
                channel="whatsapp",
                to_address="+4915112345678",
                text="Your return arrived on Monday.",
                dedupe_key="reply:conv1:1",
                now=clock.now(),
            )
        send_due(app.ctx, clock.now())
        [message] = messages(app.ctx.engine)
        assert message.status == "sent"
        assert message.body_text == "Your return arrived on Monday."


def test_consent_changed_events_are_not_journey_triggers(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        publish(
            app.ctx,
            ConsentChanged(
                occurred_at=clock.now(),
                customer_id=customer_id,
                channel="sms",
                topic="marketing",
                is_granted=True,
                source="test",
            ),
        )
        app.drain()
        assert messages(app.ctx.engine) == []


def test_chat_reply_is_handed_to_the_chat_channel(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        customer_id = add_customer(app.ctx.engine)
        with app.ctx.engine.begin() as conn:
            queue_reply(
                conn,
                customer_id=customer_id,
                channel="chat",
                to_address="chat-session-1",
                text="Hello!",
                dedupe_key="reply:chat:1",
                now=clock.now(),
            )
        send_due(app.ctx, clock.now())
        [message] = messages(app.ctx.engine)
        assert (message.channel, message.status, message.provider_message_id) == (
            "chat",
            "sent",
            f"chat:{message.id}",
        )


def test_message_for_a_merged_profile_goes_to_the_surviving_profile(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        survivor = add_customer(app.ctx.engine, email="maya.s@example.com")
        old = add_customer(app.ctx.engine, email="old@example.com")
        order_id = add_order(app.ctx.engine, old)
        publish(app.ctx, _placed(order_id, old, clock.now()))
        app.drain()
        from doorstep.customers.tables import customers

        with app.ctx.engine.begin() as conn:  # merged after the message was queued
            conn.execute(customers.update().where(customers.c.id == old).values(merged_into=survivor))
        send_due(app.ctx, clock.now())
        [message] = messages(app.ctx.engine)
        assert (message.status, message.to_address) == ("sent", "maya.s@example.com")


def test_the_daily_cap_reads_only_the_customers_own_messages(sqlite_url: str) -> None:
    """The sender looks up what each customer of a batch was sent today on every pass: through the
    customer's index, not by reading every message ever sent (SQLite picked the due index for `status IN`)."""
    from sqlalchemy import event

    from doorstep.db.engine import create_db_engine
    from doorstep.notifications.repository import NotificationRepository

    engine = create_db_engine(sqlite_url)
    customer_id = add_customer(engine)
    statements: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3])))
    with engine.connect() as conn:
        others = [f"c{n}" for n in range(99)]  # a sender batch: up to 100 customers
        NotificationRepository(conn).sent_times_since([customer_id, *others], NOW - dt.timedelta(hours=26))
        [(statement, parameters)] = [(s, p) for s, p in statements if "FROM notifications" in s]
        plan = " ".join(
            str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        )
    engine.dispose()
    assert "ix_notifications_customer" in plan
    assert "ix_notifications_due" not in plan


def test_the_stop_by_number_lookup_stays_on_its_key(sqlite_url: str) -> None:
    """Each sender pass looks up whether its customers' numbers texted STOP before a profile held them: a search
    on address_optouts' key, not a scan of every number that ever texted STOP."""
    from sqlalchemy import event

    from doorstep.db.engine import create_db_engine
    from doorstep.notifications.repository import NotificationRepository

    engine = create_db_engine(sqlite_url)
    customer_id = add_customer(engine, phone="+447700900555")
    statements: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3])))
    with engine.connect() as conn:
        NotificationRepository(conn).profiles([customer_id])
        [(statement, parameters)] = [(s, p) for s, p in statements if "FROM address_optouts" in s]
        plan = " ".join(
            str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        )
    engine.dispose()
    assert "SEARCH address_optouts" in plan and "SCAN" not in plan, plan


def test_a_sender_pass_writes_twice_a_claim_and_a_record(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    """Two write transactions a pass, however many messages: on SQLite every writer of every process waits
    for the one write lock, and a sent message's row is written once, with its decision and its outcome."""
    from sqlalchemy import event

    from doorstep.notifications.services import sender_of

    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        for n in range(3):
            customer_id = add_customer(app.ctx.engine, email=f"c{n}@example.com")
            order_id = add_order(app.ctx.engine, customer_id, external_id=f"#20{n}")
            publish(app.ctx, _placed(order_id, customer_id, clock.now()))
        app.drain()
        commits: list[int] = []
        event.listen(app.ctx.engine, "commit", lambda conn: commits.append(1))

        assert sender_of(app.ctx).send_due(now=clock.now()) == 3

        assert len(commits) == 2
        assert [(m.status, m.channel) for m in messages(app.ctx.engine)] == [("sent", "outbox")] * 3
        assert all("is confirmed" in m.body_text for m in messages(app.ctx.engine))
