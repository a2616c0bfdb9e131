"""The notifications schema migrates cleanly, and the background sender delivers without a hand-driven pass."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_notify import add_customer, add_order, messages, order_placed, publish

from doorstep.clock import FixedClock
from doorstep.db.migrate import check, upgrade


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    check(url)  # raises if notifications/tables.py and the migration disagree


def test_background_sender_delivers_what_the_in_process_worker_queues(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, sqlite_url, in_process_worker=True)
    with running_app(settings, clock) as app:
        assert app.ctx.services["notification_sender"].thread.is_alive()
        customer_id = add_customer(app.ctx.engine)
        order_id = add_order(app.ctx.engine, customer_id)
        publish(
            app.ctx,
            order_placed(order_id, customer_id, at=clock.now(), external_id="#5", total="5.00"),
        )
        app.drain()  # the worker queues; the background sender (started with the app) sends
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = messages(app.ctx.engine)
            if rows and rows[0].status == "sent":
                break
            time.sleep(0.05)
        [row] = messages(app.ctx.engine)
        assert (row.trigger, row.status, row.channel) == ("order_confirmed", "sent", "outbox")
    assert not app.ctx.services["notification_sender"].thread.is_alive()  # closed with the app
