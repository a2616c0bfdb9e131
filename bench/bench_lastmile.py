"""Last-mile benchmark: tracking page renders, delivery changes (with slot booking and the queued carrier
webhook), proof of delivery through invoice, and the PDFs. SQLite in a temporary directory.

    PYTHONPATH=src:. .venv/bin/python -m bench.bench_lastmile
"""

from __future__ import annotations

import base64
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient

from doorstep.app import build_worker, create_app
from doorstep.clock import FixedClock
from doorstep.db.migrate import upgrade
from doorstep.orders.invoice import InvoiceData, InvoiceLine, render_invoice_pdf
from doorstep.returns.label import LabelData, render_label_pdf
from doorstep.settings import Settings
from doorstep.shipments.handlers_lastmile import assign_stops, change_delivery, create_slots, record_proof
from doorstep.shipments.routes_tracking_page import tracking_link

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _timed(fn, n: int) -> tuple[float, list[float]]:
    samples = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t)
    return time.perf_counter() - start, samples


def _report(name: str, n: int, total: float, samples: list[float]) -> None:
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p95 = samples[int(len(samples) * 0.95) - 1] * 1000
    print(f"{name:<38} {n:>6} ops  {n / total:>9.1f} ops/s  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")


def main(n: int = 300) -> None:
    from tests.factories import staff_user
    from tests.support_lastmile import order_with_shipment

    tmp = Path(tempfile.mkdtemp(prefix="bench_lastmile_"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    clock = FixedClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    settings = Settings(
        env="test",
        var_dir=tmp / "var",
        database_url=url,
        in_process_worker=False,
        log_json=False,
        secret_key="bench-secret-key-with-enough-length-0123456789",
    )
    app = create_app(settings, clock=clock, start_worker=False)
    with TestClient(app) as client:
        ctx = app.state.ctx
        worker = build_worker(ctx, name="bench")
        now = clock.now()
        orders = [
            order_with_shipment(ctx.engine, now=now, promised_to=now + timedelta(days=1)) for _ in range(n)
        ]
        create_slots(
            ctx,
            carrier="ups",
            region="London",
            windows=[
                (now + timedelta(days=1, hours=h), now + timedelta(days=1, hours=h + 2), n)
                for h in range(0, 12, 2)
            ],
        )
        from sqlalchemy import select

        from doorstep.shipments.tables import delivery_slots

        with ctx.engine.connect() as conn:
            slot_ids = conn.execute(select(delivery_slots.c.id)).scalars().all()
        links = [tracking_link(settings.secret_key, o["order_id"]) for o in orders]

        total, samples = _timed(lambda i: client.get(links[i]).raise_for_status(), n)
        _report("tracking page GET /t/{token}", n, total, samples)
        total, samples = _timed(
            lambda i: change_delivery(
                ctx,
                shipment_id=orders[i]["shipment_id"],
                kind="slot",
                detail={"slot_id": slot_ids[i % len(slot_ids)]},
                requested_by="customer",
            ),
            n,
        )
        _report("delivery change (slot booking)", n, total, samples)
        driver = staff_user(ctx.engine, now=now, role="driver")
        ids = assign_stops(
            ctx,
            driver_id=driver["id"],
            route_date=now.date(),
            shipment_ids=[o["shipment_id"] for o in orders],
        )
        total, samples = _timed(
            lambda i: record_proof(
                ctx,
                driver_id=driver["id"],
                assignment_id=ids[i],
                recipient_name="Maya",
                photo=PNG,
                signature_png=PNG,
                latitude=51.5,
                longitude=-0.1,
            ),
            n,
        )
        _report("proof of delivery recorded", n, total, samples)
        t = time.perf_counter()
        handled = worker.drain()
        elapsed = time.perf_counter() - t
        print(
            f"{'worker: proofs -> chain, invoice PDFs':<38} {n:>6} proofs {n / elapsed:>8.1f} /s   ({handled} outbox rows)"
        )

    data = InvoiceData(
        number="INV-1",
        brand="Shop",
        order_number="DS-1",
        issued_at=now,
        delivered_at=now,
        customer_name="Maya",
        address_lines=("1 Road", "London"),
        currency="GBP",
        lines=tuple(InvoiceLine(f"Item {i}", 1, Decimal("9.99")) for i in range(5)),
        shipping=Decimal("4.95"),
        tax=Decimal(0),
        discount=Decimal(0),
        total=Decimal("54.90"),
    )
    total, samples = _timed(lambda i: render_invoice_pdf(data), 200)
    _report("invoice PDF render", 200, total, samples)
    label = LabelData(
        "r1", "RT123456789012", "ups", "DS-1", ("Maya", "1 Road"), ("Returns", "Unit 4"), "drop_off"
    )
    total, samples = _timed(lambda i: render_label_pdf(label), 200)
    _report("return label PDF (QR) render", 200, total, samples)


if __name__ == "__main__":
    main()
