"""Inbound channel messages end to end: log row -> conversation -> assistant -> reply queued once."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_assistant import PHONE, drain, inbound, seed_order

from doorstep.clock import FixedClock
from doorstep.conversations.handlers import perform_pending_actions, receive_message
from doorstep.conversations.tables import conversations, messages, verification_attempts
from doorstep.customers.tables import customers
from doorstep.db.migrate import check, upgrade
from doorstep.notifications.tables import notifications
from doorstep.orders.tables import orders
from doorstep.shipments.tables import shipments


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock):  # type: ignore[no-untyped-def]
    with running_app(make_settings(tmp_path, database_url), clock) as running:
        yield running


def test_migrations_are_complete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'check.db'}"
    upgrade(url)
    check(url)


def test_whatsapp_message_from_the_customers_number_is_answered_from_live_data(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="hi, where is my parcel?", provider_id="wamid.1")
    drain(app)
    with engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
        sent = conn.execute(select(notifications)).all()
        msgs = conn.execute(select(messages).order_by(messages.c.created_at, messages.c.id)).all()
    assert conv.channel == "whatsapp" and conv.customer_id == "cust-1" and conv.is_verified
    assert conv.status == "bot" and conv.first_reply_at == clock.now()
    assert [m.author for m in msgs] == ["customer", "bot"]
    assert msgs[1].body.startswith("Order DS-10293 is on its way with DHL (tracking JD0293).")
    assert "Leipzig hub" in msgs[1].body
    assert len(sent) == 1
    assert (
        sent[0].channel == "whatsapp"
        and sent[0].to_address == PHONE
        and sent[0].trigger == "conversation_reply"
    )
    assert sent[0].body_text == msgs[1].body


def test_redelivered_message_is_answered_once(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    assert inbound(engine, now=clock.now(), text="where is my order", provider_id="SM1", channel="sms") == 1
    assert inbound(engine, now=clock.now(), text="where is my order", provider_id="SM1", channel="sms") == 0
    drain(app)
    # The worker may run a projection twice (at-least-once): the second run must change nothing.
    with app.ctx.uow() as uow:
        again = receive_message(
            uow,
            channel="sms",
            address=PHONE,
            text="where is my order",
            provider_message_id="SM1",
            now=clock.now(),
        )
        uow.commit()
    assert again is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(notifications)).scalar() == 1


def test_unknown_sender_must_verify_and_nothing_is_disclosed(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    stranger = "+447700900999"
    inbound(engine, now=clock.now(), text="where is order DS-10293", provider_id="w1", sender=stranger)
    inbound(engine, now=clock.now(), text="nobody@example.com", provider_id="w2", sender=stranger)
    drain(app)
    with engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
        bodies = [
            m.body
            for m in conn.execute(
                select(messages)
                .where(messages.c.author == "bot")
                .order_by(messages.c.created_at, messages.c.id)
            )
        ]
        attempts = conn.execute(select(verification_attempts)).all()
    assert conv.customer_id is None and not conv.is_verified
    assert "email address or the delivery postcode" in bodies[0]
    assert bodies[1].startswith("Sorry, those details don't match")
    assert not any("Leipzig" in b or "DHL" in b for b in bodies)
    assert sorted(a.key for a in attempts) == [f"address:whatsapp:{stranger}", "order:DS-10293"]
    assert not any(a.is_success for a in attempts)


def test_verification_attempts_are_rate_limited_across_conversations(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    for i in range(5):
        inbound(
            engine,
            now=clock.now(),
            text=f"where is order DS-10293, my email is guess{i}@example.com",
            provider_id=f"g{i}",
            channel="sms",
            sender=f"+4477009001{i:02d}",
        )
    drain(app)
    # A new number, with the right email: the order is locked for an hour.
    inbound(
        engine,
        now=clock.now(),
        text="where is order DS-10293, my email is maya@example.com",
        provider_id="g-right",
        channel="sms",
        sender="+447700900177",
    )
    drain(app)
    with engine.connect() as conn:
        last = conn.execute(
            select(conversations).where(conversations.c.channel_address == "+447700900177")
        ).one()
        bodies = [
            m.body
            for m in conn.execute(
                select(messages).where(messages.c.conversation_id == last.id, messages.c.author == "bot")
            )
        ]
    assert last.status == "waiting" and last.handoff_reason == "verification_locked"
    assert not last.is_verified
    assert not any("DHL" in b for b in bodies)
    clock.advance(hours=1, minutes=1)
    inbound(
        engine,
        now=clock.now(),
        text="where is order DS-10293, my email is maya@example.com",
        provider_id="g-later",
        channel="sms",
        sender="+447700900178",
    )
    drain(app)
    with engine.connect() as conn:
        later = conn.execute(
            select(conversations).where(conversations.c.channel_address == "+447700900178")
        ).one()
    assert later.is_verified


def test_handoff_stops_the_bot_and_records_the_measures(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="my item arrived damaged", provider_id="d1")
    drain(app)
    clock.advance(minutes=1)
    inbound(engine, now=clock.now(), text="hello?", provider_id="d2")
    drain(app)
    with engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
        bot = conn.execute(
            select(func.count()).select_from(messages).where(messages.c.author == "bot")
        ).scalar()
    assert conv.status == "waiting" and conv.handoff_reason == "sensitive:damaged" and conv.urgency == 2
    assert conv.is_contained is False and conv.contact_reason == "report_problem"
    assert conv.summary.startswith("Handoff: sensitive:damaged.")
    assert bot == 1  # only the handoff message; the second message waits for a person


def test_messages_are_erased_with_the_customer(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="where is my order", provider_id="e1")
    drain(app)
    with engine.begin() as conn:  # what an erasure does to the customer's rows
        conn.execute(delete(shipments))
        conn.execute(delete(orders))
        conn.execute(delete(notifications))
        conn.execute(delete(customers).where(customers.c.id == "cust-1"))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(conversations)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 0


class RecordingActions:
    def __init__(self) -> None:
        self.requests: list[object] = []

    def perform(self, request, *, now):  # type: ignore[no-untyped-def]
        from doorstep.conversations.ports import ActionResult

        self.requests.append(request)
        return ActionResult(True, "the delivery of order DS-10293 is moved to Tue 24 Nov, 12:00–17:00.")


def bot_bodies(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [
            m.body
            for m in conn.execute(
                select(messages)
                .where(messages.c.author == "bot")
                .order_by(messages.c.created_at, messages.c.id)
            )
        ]


def test_action_is_confirmed_before_and_after(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    actions = RecordingActions()
    app.ctx.services["assistant_actions"] = actions
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="can you deliver next tuesday afternoon instead?", provider_id="r1")
    drain(app)
    assert actions.requests == []
    assert bot_bodies(engine)[-1] == (
        "Shall I move the delivery of order DS-10293 to Tue 24 Nov, 12:00–17:00? Please answer yes or no."
    )
    clock.advance(seconds=30)
    inbound(engine, now=clock.now(), text="yes", provider_id="r2")
    drain(app)
    assert actions.requests == []  # not inside the inbound projection's transaction
    assert perform_pending_actions(app.ctx) == 1
    assert perform_pending_actions(app.ctx) == 0  # once
    assert [r.kind for r in actions.requests] == ["reschedule"]  # type: ignore[attr-defined]
    assert bot_bodies(engine)[-1] == (
        "Done: the delivery of order DS-10293 is moved to Tue 24 Nov, 12:00–17:00. "
        "Anything else I can help with?"
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(notifications)).scalar() == 2


def test_a_confirmed_cancel_before_dispatch_cancels_the_order_through_the_last_mile_command(
    app, clock
) -> None:  # type: ignore[no-untyped-def]
    from doorstep.orders.tables import orders

    engine = app.ctx.engine
    seed_order(engine, now=clock.now(), status="paid", with_shipment=False)
    inbound(engine, now=clock.now(), text="please cancel my order", provider_id="c1")
    drain(app)
    perform_pending_actions(app.ctx)
    with engine.connect() as conn:  # nothing happens before the customer confirms
        assert conn.execute(select(orders.c.status)).scalar_one() == "paid"
    inbound(engine, now=clock.now(), text="yes", provider_id="c2")
    drain(app)
    perform_pending_actions(app.ctx)
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.status)).scalar_one() == "cancelled"
        conv = conn.execute(select(conversations)).one()
    assert conv.handoff_reason is None


def test_contained_conversation_measures(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    opened = clock.now()
    inbound(engine, now=clock.now(), text="where is my order", provider_id="m1")
    drain(app)
    clock.advance(minutes=1)
    inbound(engine, now=clock.now(), text="great, bye", provider_id="m2")
    drain(app)
    clock.advance(minutes=1)
    inbound(engine, now=clock.now(), text="4", provider_id="m3")
    drain(app)
    with engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
    assert conv.status == "resolved" and conv.is_contained is True
    assert conv.first_reply_at == opened and conv.resolved_at == clock.now()
    assert conv.satisfaction == 4 and conv.contact_reason == "track_order" and conv.handoff_reason is None


def test_reschedule_over_whatsapp_books_the_slot_through_the_tracking_page_command(app, clock) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime as dt

    from sqlalchemy import insert

    from doorstep.shipments.tables import delivery_changes, delivery_slots, slot_bookings

    engine = app.ctx.engine
    seed_order(engine, now=clock.now())  # the fixed clock is Monday 23 Nov 2026, 09:00 UTC
    with engine.begin() as conn:
        conn.execute(
            insert(delivery_slots),
            [
                {
                    "id": "slot-am",
                    "carrier": "dhl",
                    "region": "London",
                    "starts_at": dt(2026, 11, 24, 8, tzinfo=UTC),
                    "ends_at": dt(2026, 11, 24, 10, tzinfo=UTC),
                    "capacity": 5,
                    "booked": 0,
                },
                {
                    "id": "slot-pm",
                    "carrier": "dhl",
                    "region": "London",
                    "starts_at": dt(2026, 11, 24, 14, tzinfo=UTC),
                    "ends_at": dt(2026, 11, 24, 16, tzinfo=UTC),
                    "capacity": 5,
                    "booked": 0,
                },
            ],
        )
        conn.execute(shipments.update().values(destination_region="London"))
    inbound(
        engine,
        now=clock.now(),
        text="I'm out tomorrow morning, can you come tomorrow afternoon?",
        provider_id="s1",
    )
    drain(app)
    assert bot_bodies(engine)[-1] == (
        "Shall I move the delivery of order DS-10293 to Tue 24 Nov, 14:00–16:00? Please answer yes or no."
    )
    inbound(engine, now=clock.now(), text="yes please", provider_id="s2")
    drain(app)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(delivery_changes)).scalar() == 0
    assert perform_pending_actions(app.ctx) == 1
    with engine.connect() as conn:
        change = conn.execute(select(delivery_changes)).one()
        booking = conn.execute(select(slot_bookings)).one()
    assert (change.kind, change.requested_by, change.detail["slot_id"]) == ("slot", "assistant", "slot-pm")
    assert booking.slot_id == "slot-pm"
    assert bot_bodies(engine)[-1] == (
        "Done: Delivery slot Tue 24 Nov, 14:00–16:00 for order DS-10293; the "
        "carrier has been told. Anything else I can help with?"
    )


def test_safe_place_goes_through_the_delivery_command(app, clock) -> None:  # type: ignore[no-untyped-def]
    from doorstep.shipments.tables import delivery_changes

    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="if I'm out please leave it in the garage", provider_id="p1")
    inbound(engine, now=clock.now(), text="yes", provider_id="p2")
    drain(app)
    perform_pending_actions(app.ctx)
    with engine.connect() as conn:
        change = conn.execute(select(delivery_changes)).one()
    assert (change.kind, change.detail["place"], change.requested_by) == ("safe_place", "garage", "assistant")
    assert bot_bodies(engine)[-1].startswith("Done: Leave in a safe place: garage for order DS-10293")


def test_refused_command_is_explained_not_hidden(app, clock) -> None:  # type: ignore[no-untyped-def]
    from doorstep.shipments.tables import delivery_changes

    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="leave it in the shed please", provider_id="q1")
    inbound(engine, now=clock.now(), text="yes", provider_id="q2")
    drain(app)
    with engine.begin() as conn:  # the parcel is delivered before the action runs
        conn.execute(shipments.update().values(status="Delivered"))
    perform_pending_actions(app.ctx)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(delivery_changes)).scalar() == 0
        conv = conn.execute(select(conversations)).one()
    assert bot_bodies(engine)[-1].startswith("Sorry, I couldn't do that: the parcel is already delivered")
    assert conv.status == "bot"


def test_email_reply_is_read_without_the_quoted_history(app, clock) -> None:  # type: ignore[no-untyped-def]
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    body = (
        "Where is order DS-10293 please?\n\nOn Mon, 23 Nov 2026 at 08:00, Shop <shop@example.com> wrote:\n"
        "> Your order is confirmed. Cancel anytime.\n"
    )
    inbound(engine, now=clock.now(), text=body, provider_id="e-1", channel="email", sender="maya@example.com")
    drain(app)
    with engine.connect() as conn:
        customer_msg = conn.execute(select(messages).where(messages.c.author == "customer")).one()
        queued = conn.execute(select(notifications)).one()
    assert customer_msg.body == "Where is order DS-10293 please?"
    assert customer_msg.intent == "track_order"
    # The sender's address is the order's email: order number + email verify.
    assert queued.channel == "email" and queued.to_address == "maya@example.com"
    assert queued.body_text.startswith("Order DS-10293 is on its way with DHL")


def test_messenger_sender_known_to_notifications_is_the_customer(app, clock) -> None:  # type: ignore[no-untyped-def]
    from doorstep.notifications import tables as notification_tables

    table = getattr(notification_tables, "channel_identities", None)
    if table is None:
        pytest.skip("needs the notifications domain's channel_identities table (notify branch)")
    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    with engine.begin() as conn:
        conn.execute(
            table.insert().values(
                customer_id="cust-1",
                channel="messenger",
                address="psid-42",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    inbound(
        engine,
        now=clock.now(),
        text="where's my parcel",
        provider_id="m.1",
        channel="messenger",
        sender="psid-42",
    )
    drain(app)
    with engine.connect() as conn:
        conv = conn.execute(select(conversations)).one()
    assert conv.customer_id == "cust-1" and conv.is_verified


def test_unlinked_conversations_are_purged_after_the_retention(app, clock) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from doorstep.conversations.handlers import purge_unlinked

    engine = app.ctx.engine
    seed_order(engine, now=clock.now())
    inbound(engine, now=clock.now(), text="hello", provider_id="u1", sender="+447700900555")  # a stranger
    inbound(engine, now=clock.now(), text="hello", provider_id="u2")  # the customer's own number
    drain(app)
    clock.advance(days=31)
    with app.ctx.uow() as uow:
        assert purge_unlinked(uow, older_than=timedelta(days=30), now=clock.now()) == 1
        uow.commit()
    with engine.connect() as conn:
        left = conn.execute(select(conversations.c.customer_id)).scalars().all()
        assert left == ["cust-1"]
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 2
