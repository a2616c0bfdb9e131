"""Periodic checks with an injected clock: stalled and probably lost, each recorded once per silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import make_settings
from tests.helpers import running_app
from tests.support_tracking import (
    add_order,
    aftership_body,
    aftership_headers,
    aftership_tracking,
    checkpoint,
    tracking_settings,
)

from doorstep.bus.messages import EVENT_TYPES, Envelope
from doorstep.clock import FixedClock
from doorstep.shipments.handlers import run_checks
from doorstep.shipments.model import DetectionPolicy

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_stalled_then_lost_from_the_periodic_check(tmp_path: Path, sqlite_url: str) -> None:
    clock = FixedClock(NOW)
    with running_app(make_settings(tmp_path, sqlite_url, **tracking_settings()), clock) as app:
        # only the silence rule here (the estimate rule has its own test below)
        app.ctx.services["detection_policy"] = DetectionPolicy(lost_after_estimate_h=10_000)
        seen: list[Envelope] = []
        for name in ("ShipmentStalled", "ShipmentProbablyLost", "ShipmentPredictedLate"):
            app.ctx.bus.subscribe(EVENT_TYPES[name], f"test.{name}", lambda env, ctx: seen.append(env))
        add_order(app.ctx.engine, external_id="7001", now=NOW, promised_to=NOW + timedelta(days=5))
        body = aftership_body(
            aftership_tracking(
                "ST1", [checkpoint(NOW - timedelta(hours=1), "InTransit")], order_number="7001"
            ),
            ts=NOW,
        )
        assert (
            app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body)).status_code
            == 200
        )
        app.drain()
        assert seen == []  # two days of transit fit a five-day promise

        clock.advance(hours=46)  # 47 h since the scan
        assert run_checks(app.ctx) == {"checked": 1, "events": 0}
        clock.advance(hours=1)  # 48 h without a scan while InTransit
        assert run_checks(app.ctx)["events"] == 1
        app.drain()
        assert [e.event_type for e in seen] == ["ShipmentStalled"]
        assert seen[0].payload["hours_since_scan"] == 48.0

        run_checks(app.ctx)  # the same silence is not reported twice
        app.drain()
        assert [e.event_type for e in seen] == ["ShipmentStalled"]

        clock.at = NOW + timedelta(days=7, hours=-2)  # not quite a week of silence
        run_checks(app.ctx)
        app.drain()
        assert [e.event_type for e in seen] == ["ShipmentStalled"]
        clock.at = NOW + timedelta(days=7, hours=-1)  # a week of silence
        run_checks(app.ctx)
        app.drain()
        kinds = [e.event_type for e in seen]
        assert kinds.count("ShipmentProbablyLost") == 1, kinds
        lost = next(e for e in seen if e.event_type == "ShipmentProbablyLost")
        assert "no scan for 7.0 days" in lost.payload["reason"]
        assert kinds.count("ShipmentStalled") == 1


def test_probably_lost_two_days_past_the_estimate(tmp_path: Path, sqlite_url: str) -> None:
    clock = FixedClock(NOW)
    with running_app(make_settings(tmp_path, sqlite_url, **tracking_settings()), clock) as app:
        seen: list[Envelope] = []
        app.ctx.bus.subscribe(
            EVENT_TYPES["ShipmentProbablyLost"], "test.lost", lambda env, ctx: seen.append(env)
        )
        body = aftership_body(
            aftership_tracking("ST2", [checkpoint(NOW, "InTransit")], order_number="7002"), ts=NOW
        )
        app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body))
        app.drain()
        with app.ctx.engine.connect() as conn:
            from doorstep.shipments.repository import ShipmentRepository

            predicted_to = ShipmentRepository(conn).get_by_tracking("ST2").predicted_to  # type: ignore[union-attr]
        assert predicted_to == NOW + timedelta(hours=96)  # untrained prior: q90 of 96 h from dispatch
        clock.at = predicted_to + timedelta(hours=47)
        run_checks(app.ctx)
        app.drain()
        assert seen == []
        clock.at = predicted_to + timedelta(hours=48)
        run_checks(app.ctx)
        app.drain()
        assert len(seen) == 1 and "48 hours past the predicted window" in seen[0].payload["reason"]
