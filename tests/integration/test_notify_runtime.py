"""The notifications schema migrates cleanly, and the background sender delivers without a hand-driven pass."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_notify import add_customer, add_order, messages, order_placed, publish
from tests.support_processes import wait_for

from doorstep.app import build_context, run_pipeline
from doorstep.clock import FixedClock
from doorstep.db.migrate import check, upgrade
from doorstep.notifications import services
from doorstep.notifications.services import UNWOKEN_IDLE_S, WOKEN_IDLE_S


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


@pytest.mark.parametrize(("with_worker", "idle_s"), [(True, WOKEN_IDLE_S), (False, UNWOKEN_IDLE_S)])
def test_a_sender_with_no_worker_beside_it_looks_for_work_more_often(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, with_worker: bool, idle_s: float
) -> None:
    """`doorstep worker --sender-only`: the worker that queues messages is in another process and its journey
    handler cannot wake this sender, so the sender polls every UNWOKEN_IDLE_S instead of WOKEN_IDLE_S."""
    made: list[services.Sender] = []

    class Recorded(services.Sender):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(services, "Sender", Recorded)
    ctx = build_context(make_settings(tmp_path, sqlite_url))
    stop = threading.Event()
    thread = threading.Thread(target=run_pipeline, args=(ctx, stop), kwargs={"with_worker": with_worker})
    thread.start()
    try:
        wait_for(lambda: bool(made), timeout_s=10, what="the pipeline's sender")
    finally:
        stop.set()
        thread.join(30)
        ctx.engine.dispose()
        ctx.read_engine.dispose()
    assert [sender.idle_s for sender in made] == [idle_s]
    assert UNWOKEN_IDLE_S < WOKEN_IDLE_S
