from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import make_settings
from tests.helpers import running_app

from doorstep.bus.tables import outbox, timers
from doorstep.bus.timers import cancel, fire_due, schedule
from doorstep.clock import FixedClock


def test_timer_fires_once_when_due_and_not_when_cancelled(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, database_url), clock) as app:
        ctx = app.ctx
        payload = {"order_id": "o1", "customer_id": "c1", "delivered_at": clock.now().isoformat()}
        with ctx.engine.begin() as conn:
            assert schedule(
                conn,
                key="order:o1",
                kind="FollowUpDue",
                due_at=clock.now() + timedelta(hours=1),
                payload=payload,
                dedupe_key="f:o1",
            )
            assert not schedule(
                conn,
                key="order:o1",
                kind="FollowUpDue",
                due_at=clock.now(),
                payload=payload,
                dedupe_key="f:o1",
            )
            schedule(
                conn,
                key="order:o2",
                kind="FollowUpDue",
                due_at=clock.now(),
                payload=payload | {"order_id": "o2"},
                dedupe_key="f:o2",
            )
            assert cancel(conn, dedupe_key="f:o2", now=clock.now())
            with pytest.raises(ValueError, match="not a known domain event"):
                schedule(conn, key="k", kind="NoSuchEvent", due_at=clock.now(), payload={}, dedupe_key="x")

        assert fire_due(ctx) == 0
        clock.advance(hours=1)
        assert fire_due(ctx) == 1
        assert fire_due(ctx) == 0
        with ctx.engine.connect() as conn:
            fired = conn.execute(select(timers.c.dedupe_key, timers.c.fired_at)).all()
            assert {r.dedupe_key: r.fired_at for r in fired} == {"f:o1": clock.now(), "f:o2": None}
            rows = conn.execute(select(outbox.c.event_type, outbox.c.handler, outbox.c.key)).all()
        assert ("FollowUpDue", "orders.chain_follow_up", "order:o1") in rows
