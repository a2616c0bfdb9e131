"""How fast the worker projects Segment calls into profiles and orders (the Segment projection).

Appends a realistic mix straight to the log (per shopper: 3 page views, 2 product views, an identify that
links the anonymous id to a userId, email and phone, and for every third shopper an Order Completed), then
times the worker draining it. Run: `PYTHONPATH=src python -m bench.bench_ingest_projection [--shoppers N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from doorstep.app import build_context, build_worker
from doorstep.db.migrate import upgrade
from doorstep.ingest.log import LogEntry, append
from doorstep.settings import Settings


def calls(n_shoppers: int, start: datetime) -> list[LogEntry]:
    out: list[LogEntry] = []
    at = start
    for s in range(n_shoppers):
        anon, user = f"anon-{s}", f"user-{s}"

        def add(kind: str, name: str | None, body: dict[str, object], key: str) -> None:
            nonlocal at
            at += timedelta(milliseconds=10)
            message_id = f"bench-{len(out)}"
            payload = {"type": kind, "messageId": message_id, "timestamp": at.isoformat(), **body}
            out.append(LogEntry("segment", message_id, kind, name, key, at, payload))

        for page in range(3):
            add("page", f"Page {page}", {"anonymousId": anon, "name": f"Page {page}",
                                         "context": {"campaign": {"source": "newsletter"}}}, f"anon:{anon}")
        for product in range(2):
            add("track", "Product Viewed", {"anonymousId": anon, "event": "Product Viewed",
                                            "properties": {"product_id": f"p{product}", "price": 10}}, f"anon:{anon}")
        add("identify", None, {"anonymousId": anon, "userId": user,
                               "traits": {"email": f"{user}@shop.io", "phone": f"+4479111{s % 100000:05d}",
                                          "name": f"Shopper {s}"}}, f"user:{user}")
        if s % 3 == 0:
            add("track", "Order Completed", {"userId": user, "event": "Order Completed", "properties": {
                "order_id": f"o-{s}", "total": "42.50", "currency": "EUR",
                "products": [{"product_id": "p0", "price": "20.00", "quantity": 2}]}}, f"user:{user}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shoppers", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        settings = Settings(env="test", var_dir=Path(tmp), database_url=url, in_process_worker=False, log_json=False,
                            worker_batch_size=500)
        ctx = build_context(settings)
        entries = calls(args.shoppers, datetime(2026, 11, 23, tzinfo=UTC))
        with ctx.engine.begin() as conn:
            for start in range(0, len(entries), 1000):
                append(conn, entries[start : start + 1000], received_at=datetime.now(UTC))
        worker = build_worker(ctx, name="bench")
        began = time.perf_counter()
        worker.drain()
        elapsed = time.perf_counter() - began
        rate = len(entries) / elapsed
        print(f"projected {len(entries)} Segment calls ({args.shoppers} shoppers) on SQLite in {elapsed:.2f} s: "
              f"{rate:,.0f} calls/s (nproc {os.cpu_count()})")
        ctx.engine.dispose()
        ctx.read_engine.dispose()


if __name__ == "__main__":
    main()
