"""Tracking benchmark: carrier scans end to end on SQLite, and ETA prediction latency.

    PYTHONPATH=src .venv/bin/python -m bench.bench_tracking [--shipments 2000] [--scans 5] [--webhooks 1000]

End to end = HTTP request received (signature checked, body validated, appended to the event log), then the
worker's projection: scans stored (deduplicated), shipment status and milestones, a prediction, and the
domain events written to the outbox, one row per subscribed handler (the real subscribers: notification
journeys, the order chain, returns; a no-op one for any shipment event nobody subscribes to). Outbox delivery
is not timed. Runs in one process with Starlette's
TestClient (no network), on a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from doorstep.app import build_worker, create_app
from doorstep.bus.messages import EVENT_TYPES
from doorstep.bus.tables import outbox
from doorstep.clock import FixedClock
from doorstep.customers.tables import customers
from doorstep.db.migrate import upgrade
from doorstep.orders.tables import orders
from doorstep.security.signatures import hmac_sha256_b64, timestamped_signature
from doorstep.settings import Settings
from doorstep.shipments import eta
from doorstep.shipments.simulated import generate
from doorstep.shipments.tables import shipments, tracking_events

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET = "bench-secret"
STEPS = [
    ("InfoReceived", None),
    ("InTransit", "InTransit_002"),
    ("InTransit", "InTransit_003"),
    ("InTransit", "InTransit_007"),
    ("OutForDelivery", None),
    ("Delivered", "Delivered_001"),
]
SHIPMENT_EVENTS = [
    "ShipmentCreated",
    "ShipmentStatusChanged",
    "ShipmentDispatched",
    "ShipmentOutForDelivery",
    "ShipmentDelivered",
    "ShipmentPredictedLate",
    "DeliveryAttemptFailed",
]


def _trained_model(var: Path) -> None:
    """The projection predicts with a trained model (as in production after `doorstep models train eta`)."""
    cached = Path(tempfile.gettempdir()) / "doorstep-bench-tracking-eta.json"
    if not cached.exists():
        model = eta.train(generate(2000, seed=21), now=NOW).model
        eta.save_model(model, cached.parent / "doorstep-bench-tracking-var")
        (cached.parent / "doorstep-bench-tracking-var" / "models" / "eta.json").replace(cached)
    (var / "models").mkdir(parents=True, exist_ok=True)
    (var / "models" / "eta.json").write_bytes(cached.read_bytes())


def _app(tmp: Path, var: Path) -> tuple[TestClient, Any]:
    _trained_model(var)
    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    settings = Settings(
        env="test",
        var_dir=var,
        database_url=url,
        in_process_worker=False,
        log_json=False,
        aftership_webhook_secret=SECRET,
        tracking_webhook_secret=SECRET,
        shipment_check_interval_s=0,
        worker_batch_size=100,
        secret_key="bench-secret-key-with-enough-length-0123456789",
    )
    app = create_app(settings, clock=FixedClock(NOW), start_worker=False)
    bus = app.state.ctx.bus
    for name in SHIPMENT_EVENTS:  # events nobody subscribes to would not reach the outbox: count them anyway
        if not bus.handlers_for(name):
            bus.subscribe(EVENT_TYPES[name], f"bench.{name}", lambda env, ctx: None)
    return TestClient(app), app.state.ctx


def _orders(ctx: Any, n: int, prefix: str) -> None:
    customer_rows, order_rows = [], []
    for i in range(n):
        cid = str(uuid.uuid4())
        customer_rows.append(
            {
                "id": cid,
                "preferred_channels": [],
                "traits": {},
                "first_seen_at": NOW,
                "last_seen_at": NOW,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        order_rows.append(
            {
                "id": str(uuid.uuid4()),
                "external_id": f"{prefix}{i}",
                "customer_id": cid,
                "status": "placed",
                "currency": "GBP",
                "total_minor": 1000,
                "placed_at": NOW,
                "properties": {},
                "created_at": NOW,
                "updated_at": NOW,
                "ship_region": "GB-LDS",
                "promised_to": NOW + timedelta(days=3),
            }
        )
    with ctx.engine.begin() as conn:
        conn.execute(insert(customers), customer_rows)
        conn.execute(insert(orders), order_rows)


def _count(ctx: Any, table: Any) -> int:
    with ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _project(ctx: Any) -> float:
    worker = build_worker(ctx, name="bench")
    started = time.perf_counter()
    cpu = time.process_time()
    while worker.project_log_batch() > 0:
        pass
    ctx.cache["projection_cpu_s"] = time.process_time() - cpu
    return time.perf_counter() - started


def bench_generic(n_shipments: int, n_scans: int, batch: int, *, grouped: bool = False) -> dict[str, Any]:
    """Interleaved feed (live): each request carries one scan of `batch` different shipments. Grouped (an
    import of history): each request carries all scans of batch/n_scans shipments."""
    with tempfile.TemporaryDirectory() as tmp:
        client, ctx = _app(Path(tmp), Path(tmp) / "var")
        with client:
            _orders(ctx, n_shipments, "G")
            events = []
            for step in range(n_scans):
                status, subtag = STEPS[step % len(STEPS)]
                for i in range(n_shipments):
                    at = NOW - timedelta(hours=(n_scans - step) * 6, minutes=i % 60)
                    events.append(
                        {
                            "carrier": "dhl",
                            "tracking_number": f"GEN{i:07d}",
                            "occurred_at": at.isoformat(),
                            "status": status,
                            "subtag": subtag,
                            "message": f"{status} scan",
                            "location": {"city": "Leeds", "country": "GB"},
                            "order_id": f"G{i}",
                        }
                    )
            if grouped:
                events.sort(key=lambda e: e["tracking_number"])
            bodies = [orjson.dumps({"events": events[i : i + batch]}) for i in range(0, len(events), batch)]
            ts = int(NOW.timestamp())
            started = time.perf_counter()
            cpu = time.process_time()
            for body in bodies:
                response = client.post(
                    "/api/v1/tracking-events",
                    content=body,
                    headers={
                        "x-doorstep-timestamp": str(ts),
                        "x-doorstep-signature": timestamped_signature(SECRET, ts, body),
                        "content-type": "application/json",
                    },
                )
                assert response.status_code == 200, response.text
            http_s = time.perf_counter() - started
            http_cpu_s = time.process_time() - cpu
            project_s = _project(ctx)
            total_s = time.perf_counter() - started
            total_cpu_s = http_cpu_s + ctx.cache["projection_cpu_s"]
            stored = _count(ctx, tracking_events)
            result = {
                "cpu_s": round(total_cpu_s, 3),
                "http_cpu_s": round(http_cpu_s, 3),
                "projection_cpu_s": round(ctx.cache["projection_cpu_s"], 3),
                "events_per_cpu_s_end_to_end": round(len(events) / total_cpu_s),
                "events": len(events),
                "requests": len(bodies),
                "stored_scans": stored,
                "shipments": _count(ctx, shipments),
                "outbox_rows": _count(ctx, outbox),
                "http_s": round(http_s, 3),
                "projection_s": round(project_s, 3),
                "total_s": round(total_s, 3),
                "events_per_s_end_to_end": round(len(events) / total_s),
                "events_per_s_projection": round(len(events) / project_s),
                "predictor": ctx.services["eta"].source,
            }
            assert stored == len(events)
            return result


def _aftership_bodies(n_webhooks: int) -> list[bytes]:
    per_shipment = 4
    n_shipments = max(n_webhooks // per_shipment, 1)
    bodies = []
    for step in range(per_shipment):
        for i in range(n_shipments):
            checkpoints = []
            for k in range(step + 1):
                status, subtag = STEPS[k + 1]
                at = NOW - timedelta(hours=(per_shipment - k) * 5, minutes=i % 60)
                checkpoints.append(
                    {
                        "checkpoint_time": at.isoformat(),
                        "tag": status,
                        "subtag": subtag or f"{status}_001",
                        "message": f"{status} scan",
                        "city": "Leeds",
                        "country_region": "GBR",
                        "raw_tag": f"R{k}",
                        "coordinate": {"latitude": 53.8, "longitude": -1.55},
                    }
                )
            msg = {
                "slug": "dhl",
                "tracking_number": f"AS{i:07d}",
                "order_number": f"A{i}",
                "tag": checkpoints[-1]["tag"],
                "checkpoints": checkpoints,
            }
            bodies.append(
                orjson.dumps(
                    {
                        "event": "tracking_update",
                        "event_id": str(uuid.uuid4()),
                        "is_tracking_first_tag": False,
                        "msg": msg,
                        "ts": int(NOW.timestamp()),
                    }
                )
            )
    return bodies


def bench_aftership(n_webhooks: int) -> dict[str, Any]:
    """One webhook per request, as AfterShip sends them: each repeats the tracking's earlier checkpoints
    (skipped as duplicates) and adds one new one."""
    with tempfile.TemporaryDirectory() as tmp:
        client, ctx = _app(Path(tmp), Path(tmp) / "var")
        with client:
            _orders(ctx, max(n_webhooks // 4, 1), "A")
            bodies = _aftership_bodies(n_webhooks)
            started = time.perf_counter()
            cpu = time.process_time()
            for body in bodies:
                response = client.post(
                    "/webhooks/aftership",
                    content=body,
                    headers={
                        "aftership-hmac-sha256": hmac_sha256_b64(SECRET, body),
                        "content-type": "application/json",
                    },
                )
                assert response.status_code == 200, response.text
            http_s = time.perf_counter() - started
            http_cpu_s = time.process_time() - cpu
            project_s = _project(ctx)
            total_s = time.perf_counter() - started
            total_cpu_s = http_cpu_s + ctx.cache["projection_cpu_s"]
            stored = _count(ctx, tracking_events)
            return {
                "cpu_s": round(total_cpu_s, 3),
                "http_cpu_s": round(http_cpu_s, 3),
                "projection_cpu_s": round(ctx.cache["projection_cpu_s"], 3),
                "webhooks_per_cpu_s_end_to_end": round(len(bodies) / total_cpu_s),
                "webhooks": len(bodies),
                "new_scans": stored,
                "outbox_rows": _count(ctx, outbox),
                "http_s": round(http_s, 3),
                "projection_s": round(project_s, 3),
                "total_s": round(total_s, 3),
                "webhooks_per_s_end_to_end": round(len(bodies) / total_s),
                "webhooks_per_s_projection": round(len(bodies) / project_s),
                "http_ms_per_webhook": round(http_s / len(bodies) * 1000, 3),
            }


def bench_aftership_batched_projection(n_webhooks: int) -> dict[str, Any]:
    """What a worker that hands a whole log batch (100 rows) to handlers.project_log_rows would do with the
    same single-webhook deliveries. Not how the worker is wired today: see RESULTS_tracking.md."""
    from sqlalchemy import update

    from doorstep.bus.registry import HandlerContext
    from doorstep.db.uow import UnitOfWork
    from doorstep.ingest.tables import event_log, log_offsets
    from doorstep.shipments.handlers import project_log_rows

    with tempfile.TemporaryDirectory() as tmp:
        client, ctx = _app(Path(tmp), Path(tmp) / "var")
        with client:
            _orders(ctx, max(n_webhooks // 4, 1), "A")
            bodies = _aftership_bodies(n_webhooks)
            for body in bodies:
                client.post(
                    "/webhooks/aftership",
                    content=body,
                    headers={
                        "aftership-hmac-sha256": hmac_sha256_b64(SECRET, body),
                        "content-type": "application/json",
                    },
                )
            started = time.perf_counter()
            cpu = time.process_time()
            position = 0
            while True:
                with ctx.engine.connect() as conn, conn.begin():
                    rows = conn.execute(
                        select(event_log).where(event_log.c.id > position).order_by(event_log.c.id).limit(100)
                    ).all()
                    if not rows:
                        break
                    uow = UnitOfWork(None, bus=ctx.bus, clock=ctx.clock, conn=conn)
                    project_log_rows(
                        rows,
                        HandlerContext(
                            uow=uow, clock=ctx.clock, settings=ctx.settings, services=ctx.services
                        ),
                    )
                    uow.flush_events()
                    position = rows[-1].id
                    conn.execute(update(log_offsets).values(position=position))
            wall_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu
            return {
                "webhooks": len(bodies),
                "new_scans": _count(ctx, tracking_events),
                "outbox_rows": _count(ctx, outbox),
                "projection_s": round(wall_s, 3),
                "projection_cpu_s": round(cpu_s, 3),
                "webhooks_per_s_projection": round(len(bodies) / wall_s),
                "webhooks_per_cpu_s_projection": round(len(bodies) / cpu_s),
            }


def bench_prediction(history_size: int) -> dict[str, Any]:
    history = generate(history_size, seed=11)
    started = time.perf_counter()
    result = eta.train(history, now=NOW)
    train_s = time.perf_counter() - started
    model = result.model
    probes = generate(500, seed=12, start=datetime(2026, 10, 1, tzinfo=UTC))
    cases = [(s, s.timeline[min(2, len(s.timeline) - 1)].occurred_at) for s in probes]
    timings = []
    for s, at in cases * 4:
        t = time.perf_counter_ns()
        model.predict(s, at)
        timings.append((time.perf_counter_ns() - t) / 1000)
    baseline_timings = []
    for s, at in cases * 4:
        t = time.perf_counter_ns()
        model.baseline.predict(s, at)
        baseline_timings.append((time.perf_counter_ns() - t) / 1000)
    timings.sort()
    baseline_timings.sort()
    return {
        "history_shipments": history_size,
        "train_s": round(train_s, 2),
        "report": result.report,
        "model_predict_us_p50": round(statistics.median(timings), 1),
        "model_predict_us_p99": round(timings[int(len(timings) * 0.99)], 1),
        "baseline_predict_us_p50": round(statistics.median(baseline_timings), 1),
        "model_trees": sum(len(m.trees) for m in model.quantile_models),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, default=2000)
    parser.add_argument("--scans", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--history", type=int, default=3000)
    args = parser.parse_args(argv)
    results = {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "generic_interleaved": bench_generic(args.shipments, args.scans, args.batch),
        "generic_grouped": bench_generic(args.shipments, args.scans, args.batch, grouped=True),
        "aftership_single": bench_aftership(args.webhooks),
        "aftership_batched_projection": bench_aftership_batched_projection(args.webhooks),
        "prediction": bench_prediction(args.history),
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
