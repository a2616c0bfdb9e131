"""Dashboard benchmark: the whole dashboard over 1,000,000 orders and 10,000,000 events.

Measures, in one run on one store:
- the analytics replica (analytics/replica.py): its initial build from the store, a sync with nothing to do,
  and a sync of a typical delta (a few orders, shipments delivered, contacts, feedback, events);
- the dashboard from the replica: cold (a fresh DuckDB connection to the replica file, no cached results; the
  replica in sync) and again on the same connection;
- the same metrics as plain SQL on the store (SQLAlchemy text queries on SQLite), checked equal;
- live: new orders committed to the store -> the SSE `dashboard` event carrying each, through the real server
  (watcher poll, delta sync, recompute).

The data comes from bench/dashboard_data.py (a bulk loader that bypasses ingest). Usage:
    PYTHONPATH=src:. python -m bench.bench_dashboard [--orders N] [--events N] [--rebuild] [--periods 7,30]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sqlite3
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dashboard_data import build, counts
from doorstep.analytics.engine import sql_runner
from doorstep.analytics.live import POLL_S
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard
from doorstep.analytics.replica import Replica
from doorstep.db.engine import create_db_engine
from doorstep.db.migrate import upgrade

STORE = Path("var/bench/dashboard.db")
RESULTS = Path(__file__).parent / "RESULTS_dashboard.md"
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def replica_path(store: Path) -> Path:
    """Where the server started by measure_live finds it (settings.var_dir / analytics / replica.duckdb)."""
    return store.parent / "var" / "analytics" / "replica.duckdb"


def _load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.1f} / {b:.1f} / {c:.1f}"


def _same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    diffs = []
    for k, x in a["values"].items():
        y = b["values"][k]
        if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-6 * max(1.0, abs(x))):
            diffs.append(f"{k}: {x} vs {y}")
    return diffs


def measure_build(url: str, path: Path) -> dict[str, Any]:
    """The replica's initial build from scratch, then a sync with nothing to do."""
    for suffix in ("", ".wal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    replica = Replica(url, path=path)
    try:
        t = time.perf_counter()
        replica.sync(progress=lambda step, done, total: print(f"  build {done}/{total} {step}", flush=True))
        out: dict[str, Any] = {"build_s": time.perf_counter() - t, "build_load": _load()}
        t = time.perf_counter()
        replica.sync()
        out["noop_sync_s"] = time.perf_counter() - t
    finally:
        replica.close()
    out["replica_mb"] = path.stat().st_size / 1e6
    return out


def write_delta(store: Path, *, orders: int = 10, delivered: int = 10, events: int = 100) -> dict[str, int]:
    """A typical delta between two polls of a busy shop: new orders (with line, step, shipment), shipments that
    became delivered, a contact and a review, page/track events. Written like the app writes: updated_at and
    recorded_at are the wall clock."""
    now = datetime.now(UTC)
    ts = now.strftime(SQLITE_TS)
    placed = (now - timedelta(minutes=3)).strftime(SQLITE_TS)
    n = int(time.time() * 1000)
    conn = sqlite3.connect(store, timeout=30)
    try:
        customers = [r[0] for r in conn.execute("SELECT id FROM customers LIMIT ?", (orders,))]
        for i, customer in enumerate(customers):
            oid = f"delta-{n}-{i}"
            conn.execute(
                "INSERT INTO orders (id, external_id, customer_id, status, currency, total_minor, shipping_minor, "
                "tax_minor, discount_minor, channel, ship_region, placed_at, properties, created_at, updated_at) "
                "VALUES (?, ?, ?, 'placed', 'EUR', 5000, 0, 0, 0, 'web', 'north', ?, '{}', ?, ?)",
                (oid, f"#{oid}", customer, placed, placed, ts),
            )
            conn.execute(
                "INSERT INTO order_lines (order_id, line_no, product_id, category, quantity, unit_price_minor) "
                "VALUES (?, 1, 'p-shoes', 'shoes', 1, 5000)",
                (oid,),
            )
            conn.execute(
                "INSERT INTO order_steps (order_id, step, occurred_at, recorded_at) VALUES (?, 'placed', ?, ?)",
                (oid, placed, ts),
            )
            conn.execute(
                "INSERT INTO shipments (id, order_id, carrier, tracking_number, is_return, status, "
                "destination_region, created_at, updated_at) VALUES (?, ?, 'dhl', ?, 0, 'InfoReceived', "
                "'north', ?, ?)",
                (f"s-{oid}", oid, f"TN-{oid}", placed, ts),
            )
        conn.execute(
            "UPDATE shipments SET status = 'Delivered', delivered_at = ?, updated_at = ? WHERE id IN "
            "(SELECT id FROM shipments WHERE delivered_at IS NULL AND dispatched_at IS NOT NULL LIMIT ?)",
            (ts, ts, delivered),
        )
        conn.execute(
            "INSERT INTO conversations (id, customer_id, channel, status, contact_reason, intent, is_verified, "
            "urgency, state, opened_at, updated_at) VALUES (?, ?, 'whatsapp', 'bot', 'wismo', 'wismo', 1, 0, "
            "'{}', ?, ?)",
            (f"delta-conv-{n}", customers[0], ts, ts),
        )
        conn.execute(
            "INSERT INTO feedback (id, customer_id, order_id, kind, rating, topic, source, submitted_at, "
            "recorded_at) VALUES (?, ?, ?, 'review', 1, 'delivery', 'bench', ?, ?)",
            (f"delta-fb-{n}", customers[0], f"delta-{n}-0", ts, ts),
        )
        top = conn.execute("SELECT max(log_id) FROM customer_events").fetchone()[0] or 0
        conn.executemany(
            "INSERT INTO customer_events (log_id, customer_id, type, name, occurred_at, session_id, "
            "campaign_source) VALUES (?, ?, 'track', 'Product Viewed', ?, ?, 'google')",
            [
                (top + i + 1, customers[i % len(customers)], ts, f"delta-sess-{n}-{i // 5}")
                for i in range(events)
            ],
        )
        conn.commit()
    finally:
        conn.close()
    return {"orders": orders, "delivered": delivered, "conversations": 1, "feedback": 1, "events": events}


def measure_delta(url: str, store: Path, path: Path) -> dict[str, Any]:
    delta = write_delta(store)
    replica = Replica(url, path=path)
    try:
        t = time.perf_counter()
        report = replica.sync()
        return {"delta": delta, "delta_sync_s": time.perf_counter() - t, "report": report, "load": _load()}
    finally:
        replica.close()


def measure_compute(url: str, path: Path, f: Filters, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {"load": _load()}
    t = time.perf_counter()
    replica = Replica(url, path=path)  # a fresh DuckDB connection: nothing cached
    try:
        with replica.runner() as runner:
            duck_result = compute_dashboard(runner, f, now=now)
        out["duck_cold_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with replica.runner() as runner:
            compute_dashboard(runner, f, now=now)
        out["duck_again_s"] = time.perf_counter() - t
    finally:
        replica.close()
    engine = create_db_engine(url, for_reads=True)
    try:
        t = time.perf_counter()
        with sql_runner(engine) as runner:
            sql_result = compute_dashboard(runner, f, now=now)
        out["sql_s"] = time.perf_counter() - t
    finally:
        engine.dispose()
    out["diffs"] = _same(duck_result, sql_result)
    out["orders_in_period"] = duck_result["values"]["orders"]
    return out


def measure_live(
    path: Path, *, period: str = "7", repeats: int = 5, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Commit a new order, `repeats` times; time until the SSE stream delivers numbers that include it. The
    server finds the replica built by this run under its var_dir, so it starts warm."""
    import httpx
    import orjson
    import uvicorn

    from doorstep.app import create_app
    from doorstep.security.keys import create_key
    from doorstep.settings import Settings

    url = f"sqlite:///{path}"
    engine = create_db_engine(url)
    with engine.begin() as conn:
        key = create_key(conn, kind="secret", scopes=["analytics:read"], name="bench", now=datetime.now(UTC))
    engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        env="test",
        database_url=url,
        port=port,
        in_process_worker=False,
        log_json=False,
        var_dir=replica_path(path).parent.parent,
        secret_key="bench-secret-key-0123456789-0123456789",
    )
    app = create_app(settings, start_worker=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    result: dict[str, Any] = {"load": _load(), "commit_to_sse_s": []}
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=timeout_s) as client:
            t = time.perf_counter()
            while True:  # the server syncs what changed since the replica was built before answering
                response = client.get(f"/dashboard/data.json?period={period}")
                if response.status_code != 503:
                    break
                time.sleep(0.2)
            before = response.json()["values"]["orders"]
            result["first_request_s"] = time.perf_counter() - t
            with client.stream("GET", f"/dashboard/stream?period={period}") as stream:
                lines = stream.iter_lines()
                for line in lines:  # wait for hello: the stream is open
                    if line.startswith("event: hello"):
                        break
                for i in range(repeats):
                    time.sleep(1.0)  # let the watcher settle, as between two real orders
                    now = datetime.now(UTC)
                    conn = sqlite3.connect(path, timeout=30)
                    placed = (now - timedelta(minutes=5)).strftime(SQLITE_TS)
                    customer = conn.execute("SELECT id FROM customers LIMIT 1").fetchone()[0]
                    n = int(time.time() * 1000)
                    conn.execute(
                        "INSERT INTO orders (id, external_id, customer_id, status, currency, total_minor, "
                        "shipping_minor, tax_minor, discount_minor, channel, ship_region, placed_at, properties, "
                        "created_at, updated_at) VALUES (?, ?, ?, 'placed', 'EUR', 5000, 0, 0, 0, 'web', "
                        "'north', ?, '{}', ?, ?)",
                        (f"live-{n}", f"#live-{n}", customer, placed, placed, now.strftime(SQLITE_TS)),
                    )
                    conn.commit()
                    committed = time.perf_counter()
                    conn.close()
                    event = None
                    for line in lines:
                        if line.startswith("event: dashboard"):
                            event = "dashboard"
                        elif event and line.startswith("data: "):
                            data = orjson.loads(line[6:])
                            if data["values"]["orders"] == before + i + 1:
                                result["commit_to_sse_s"].append(time.perf_counter() - committed)
                                break
                            event = None
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    return result


def _write(rows: list[str], path: Path = RESULTS) -> None:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rebuild", action="store_true", help="build the store again")
    parser.add_argument("--keep-replica", action="store_true", help="do not time an initial build (reuse it)")
    parser.add_argument("--periods", default="7,30")
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the figures are written")
    args = parser.parse_args(argv or [])  # `python -m bench dashboard` calls main() with no arguments
    store: Path = args.store

    have = counts(store) if store.exists() else {}
    if args.rebuild or have.get("orders", 0) < args.orders or have.get("customer_events", 0) < args.events:
        t = time.perf_counter()
        build(
            store,
            orders=args.orders,
            events=args.events,
            progress=lambda what, n: print(f"  loaded {n:>9,} {what}", flush=True),
        )
        print(f"built {store} in {time.perf_counter() - t:.0f} s")
    url = f"sqlite:///{store}"
    upgrade(url)  # a store built before the replica's change tracking (0003_analytics) gets it
    rpath = replica_path(store)
    now = datetime.now(UTC)
    lines = [
        f"Run {now:%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores; shared with other "
        f"sessions: load average {_load()} at start). SQLite store {store.stat().st_size / 1e9:.1f} GB: "
        f"{counts(store)}.",
        "",
    ]
    if not args.keep_replica or not rpath.exists():
        print("replica: initial build ...", flush=True)
        b = measure_build(url, rpath)
        lines.append(
            f"- Replica initial build: {b['build_s']:.1f} s (load {b['build_load']} after it), file "
            f"{b['replica_mb']:.0f} MB; a sync with nothing to do: {b['noop_sync_s']:.2f} s."
        )
        print(lines[-1], flush=True)
    d = measure_delta(url, store, rpath)
    lines += [
        f"- Sync of a typical delta ({d['delta']}): {d['delta_sync_s']:.2f} s (load {d['load']}); "
        f"{sum(d['report'].rows.values())} rows read, {d['report'].orders_recomputed} orders' facts recomputed.",
        "",
        "| period | orders in period | replica cold | replica again (same connection) | plain SQL on SQLite "
        "| results equal | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines[-4:]), flush=True)
    for days in [int(p) for p in args.periods.split(",") if p.strip()]:
        f = Filters.last_days(days, now=now)
        print(f"period {days} days ...", flush=True)
        r = measure_compute(url, rpath, f, now)
        lines.append(
            f"| last {days} days | {r['orders_in_period']:,.0f} | {r['duck_cold_s']:.2f} s | "
            f"{r['duck_again_s']:.2f} s | {r['sql_s']:.2f} s | "
            f"{'yes' if not r['diffs'] else 'NO: ' + '; '.join(r['diffs'])} | {r['load']} |"
        )
        print(lines[-1], flush=True)
        _write(lines, args.results)
    if not args.no_live:
        print("live update ...", flush=True)
        live = measure_live(store)
        times = live["commit_to_sse_s"]
        lines += [
            "",
            f"Live (last 7 days, real server, SSE client, load {live['load']}): first request "
            f"{live.get('first_request_s', 0):.2f} s; new order committed -> SSE event with it, "
            f"{len(times)} orders: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
            f"({', '.join(f'{x:.2f}' for x in times)}; watcher polls every {POLL_S} s, syncs the delta, recomputes)."
            if times
            else "Live: no SSE event carried the new order.",
        ]
        print(lines[-1], flush=True)
    _write(lines, args.results)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
