"""The last mile's commands for confirmed customer actions (reschedule, redirect, start a return, cancel,
resend the invoice), called as a conversation or the tracking page calls them: with a connection, inside a
savepoint, answering in words for the customer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_lastmile import order_with_shipment, slot

from doorstep.clock import FixedClock
from doorstep.conversations.ports import ActionResult
from doorstep.errors import DoorstepError
from doorstep.orders.tables import invoices, order_steps, orders
from doorstep.returns.tables import returns
from doorstep.shipments import actions_lastmile
from doorstep.shipments.tables import delivery_changes, delivery_slots

COMMANDS = {
    "reschedule": actions_lastmile.reschedule_for_order,
    "redirect": actions_lastmile.redirect_for_order,
    "start_return": actions_lastmile.start_return_for_order,
    "cancel": actions_lastmile.cancel_before_dispatch,
    "resend_invoice": actions_lastmile.resend_invoice,
}


def _perform(app, action: str, order: dict, **params) -> ActionResult:
    with app.ctx.engine.begin() as conn:
        try:
            with conn.begin_nested():  # a refused command leaves nothing behind
                detail = COMMANDS[action](
                    conn,
                    order_id=order["order_id"],
                    requested_by="assistant",
                    now=app.ctx.clock.now(),
                    **params,
                )
        except DoorstepError as exc:
            return ActionResult(False, exc.detail)
    return ActionResult(True, str(detail))


def test_reschedule_and_redirect(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    now = clock.now()
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        s = order_with_shipment(app.ctx.engine, now=now)
        morning = slot(app.ctx.engine, starts_at=(now + timedelta(days=2)).replace(hour=9), capacity=1)
        slot(app.ctx.engine, starts_at=(now + timedelta(days=2)).replace(hour=14), capacity=1)
        day = (now + timedelta(days=2)).date().isoformat()

        result = _perform(
            app,
            "reschedule",
            s,
            date=day,
            window_from=f"{day}T08:00:00+00:00",
            window_to=f"{day}T12:00:00+00:00",
            part_of_day="morning",
        )
        assert result.is_done and "09:00–11:00" in result.detail
        none_free = _perform(app, "reschedule", s, date=(now + timedelta(days=5)).date().isoformat())
        assert (
            not none_free.is_done
            and "no free delivery slot" in none_free.detail
            and "14:00" in none_free.detail
        )

        neighbour = _perform(
            app, "redirect", s, kind="neighbour", instructions="please leave it with Mr Patel at number 12"
        )
        assert neighbour.is_done and "Mr Patel (12)" in neighbour.detail
        vague = _perform(app, "redirect", s, kind="neighbour", instructions="leave it next door")
        assert not vague.is_done and "house number" in vague.detail
        address = _perform(app, "redirect", s, kind="address", address="1 New Street, Leeds")
        assert not address.is_done

        with app.ctx.engine.connect() as conn:
            changes = conn.execute(select(delivery_changes.c.kind, delivery_changes.c.requested_by)).all()
            assert sorted(changes) == [("neighbour", "assistant"), ("slot", "assistant")]
            assert (
                conn.execute(
                    select(delivery_slots.c.booked).where(delivery_slots.c.id == morning)
                ).scalar_one()
                == 1
            )


def test_return_cancel_and_invoice(tmp_path: Path, sqlite_url: str, clock: FixedClock) -> None:
    from doorstep.shipments.actions_lastmile import resend_invoice, start_return_for_order

    now = clock.now()
    settings = make_settings(tmp_path, sqlite_url, public_base_url="https://track.example.com")
    with running_app(settings, clock) as app:
        delivered = order_with_shipment(
            app.ctx.engine, now=now, status="Delivered", delivered_at=now - timedelta(days=1)
        )
        waiting = order_with_shipment(app.ctx.engine, now=now, status="InfoReceived")
        moving = order_with_shipment(app.ctx.engine, now=now, status="InTransit")

        # as DomainActions calls it (plus settings, which the service reads from the environment)
        with app.ctx.engine.begin() as conn:
            text = start_return_for_order(
                conn,
                order_id=delivered["order_id"],
                requested_by="assistant",
                now=now,
                resolution="exchange",
                reason_code="fit.too_big",
                note="too big",
                settings=settings,
            )
        assert text.startswith(
            "your return is approved. Print the label here: https://track.example.com/returns/"
        )
        with app.ctx.engine.connect() as conn:
            assert conn.execute(
                select(returns.c.reason_code, returns.c.status, returns.c.resolution)
            ).all() == [("fit.too_large", "label_issued", "exchange")]
        again = _perform(app, "start_return", delivered, resolution="refund", reason_code="other", note="")
        assert not again.is_done and "already being returned" in again.detail

        cancelled = _perform(app, "cancel", waiting)
        assert cancelled.is_done and "cancelled" in cancelled.detail
        refused = _perform(app, "cancel", moving)
        assert not refused.is_done and "left our warehouse" in refused.detail
        with app.ctx.engine.connect() as conn:
            statuses = dict(conn.execute(select(orders.c.id, orders.c.status)).all())
            assert statuses[waiting["order_id"]] == "cancelled" and statuses[moving["order_id"]] == "placed"
            steps = (
                conn.execute(select(order_steps.c.step).where(order_steps.c.order_id == waiting["order_id"]))
                .scalars()
                .all()
            )
            assert steps == ["cancelled"]

        no_invoice = _perform(app, "resend_invoice", delivered, email="maya@example.com")
        assert not no_invoice.is_done and "no invoice yet" in no_invoice.detail
        with app.ctx.engine.begin() as conn:
            conn.execute(
                invoices.insert().values(
                    id="inv1",
                    order_id=delivered["order_id"],
                    number="INV-X",
                    path="/nowhere",
                    total_minor=1,
                    currency="GBP",
                    issued_at=now,
                )
            )
        with app.ctx.engine.connect() as conn:
            text = resend_invoice(
                conn, order_id=delivered["order_id"], requested_by="assistant", now=now, settings=settings
            )
        assert text.startswith("here is invoice INV-X: https://track.example.com/orders/")


def test_events_reach_the_outbox_without_a_unit_of_work(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    from doorstep.bus.tables import outbox
    from doorstep.orders.events import OrderPlaced
    from doorstep.shipments.actions_lastmile import _Outbox

    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        with app.ctx.engine.begin() as conn:
            publish = _Outbox(conn, None, clock.now())
            publish(
                OrderPlaced(
                    occurred_at=clock.now(),
                    order_id="o1",
                    customer_id="c1",
                    external_id="X",
                    total="0",
                    currency="GBP",
                )
            )
            publish.done()
        with app.ctx.engine.connect() as conn:
            handlers = set(
                conn.execute(select(outbox.c.handler).where(outbox.c.event_type == "OrderPlaced")).scalars()
            )
        assert "orders.chain_placed" in handlers and handlers == set(app.ctx.bus.handlers_for("OrderPlaced"))
