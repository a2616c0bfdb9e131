"""Dashboard benchmark: the whole dashboard over 1,000,000 orders and 10,000,000 events.

Measures, in one run on one store:
- DuckDB over the store (sqlite scanner, attached READ_ONLY): cold (new engine, new connection) and again on
  the same connection;
- the same metrics as plain SQL on the store (SQLAlchemy text queries on SQLite), checked equal;
- live: a new order committed to the store -> the SSE `dashboard` event carrying it, through the real server.

The data comes from bench/dashboard_data.py (a bulk loader that bypasses ingest). Usage:
    PYTHONPATH=src:. python -m bench.bench_dashboard [--orders N] [--events N] [--rebuild] [--periods 7,30]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dashboard_data import build, counts
from doorstep.analytics.engine import DuckEngine, sql_runner
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard
from doorstep.db.engine import create_db_engine

STORE = Path("var/bench/dashboard.db")
RESULTS = Path(__file__).parent / "RESULTS_dashboard.md"


def _same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    diffs = []
    for k, x in a["values"].items():
        y = b["values"][k]
        if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-6 * max(1.0, abs(x))):
            diffs.append(f"{k}: {x} vs {y}")
    return diffs


def measure_compute(url: str, f: Filters, now: datetime, *, pushdown: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    duck = DuckEngine(url, pushdown=pushdown)
    try:
        t = time.perf_counter()
        with duck.runner() as runner:
            duck_result = compute_dashboard(runner, f, now=now)
        out["duck_cold_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with duck.runner() as runner:
            compute_dashboard(runner, f, now=now)
        out["duck_again_s"] = time.perf_counter() - t
    finally:
        duck.close()
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


def measure_copy(url: str, f: Filters, now: datetime) -> dict[str, float]:
    """An experiment, not a feature: copy every column the dashboard reads into DuckDB's own tables once,
    then compute from the copy. It bounds what a live columnar replica could give (the copy would then have
    to be kept in sync, which is not built)."""
    from doorstep.analytics.sql import SOURCE_COLUMNS, Dialect

    duck = DuckEngine(url)
    out: dict[str, float] = {}
    try:
        with duck.runner() as runner:
            t = time.perf_counter()
            for table, cols in SOURCE_COLUMNS.items():
                runner.execute(
                    f"CREATE OR REPLACE TEMP TABLE src_{table} AS SELECT {cols} FROM store.{table}", {}
                )
            out["copy_s"] = time.perf_counter() - t
            runner.dialect = Dialect("duckdb", "src_")
            t = time.perf_counter()
            compute_dashboard(runner, f, now=now)
            out["compute_s"] = time.perf_counter() - t
            t = time.perf_counter()
            compute_dashboard(runner, f, now=now)
            out["compute_again_s"] = time.perf_counter() - t
    finally:
        duck.close()
    return out


def measure_live(path: Path, *, period: str = "7", timeout_s: float = 120.0) -> dict[str, float]:
    """Commit one new order; time until the SSE stream delivers numbers that include it."""
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
        var_dir=path.parent / "var",
        secret_key="bench-secret-key-0123456789-0123456789",
    )
    app = create_app(settings, start_worker=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    result: dict[str, float] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=timeout_s) as client:
            t = time.perf_counter()
            before = client.get(f"/dashboard/data.json?period={period}").json()["values"]["orders"]
            result["first_request_s"] = time.perf_counter() - t
            with client.stream("GET", f"/dashboard/stream?period={period}") as stream:
                lines = stream.iter_lines()
                for line in lines:  # wait for hello: the stream is open
                    if line.startswith("event: hello"):
                        break
                now = datetime.now(UTC)
                conn = sqlite3.connect(path, timeout=30)
                ts = (now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f")
                customer = conn.execute("SELECT id FROM customers LIMIT 1").fetchone()[0]
                n = int(time.time() * 1000)
                conn.execute(
                    "INSERT INTO orders (id, external_id, customer_id, status, currency, total_minor, "
                    "shipping_minor, tax_minor, discount_minor, channel, ship_region, placed_at, properties, "
                    "created_at, updated_at) VALUES (?, ?, ?, 'placed', 'EUR', 5000, 0, 0, 0, 'web', 'north', "
                    "?, '{}', ?, ?)",
                    (f"live-{n}", f"#live-{n}", customer, ts, ts, ts),
                )
                committed = time.perf_counter()
                conn.commit()
                conn.close()
                event = None
                for line in lines:
                    if line.startswith("event: dashboard"):
                        event = "dashboard"
                    elif event and line.startswith("data: "):
                        data = orjson.loads(line[6:])
                        if data["values"]["orders"] == before + 1:
                            result["commit_to_sse_s"] = time.perf_counter() - committed
                            break
                        event = None
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return result


def _write(rows: list[str], path: Path = RESULTS) -> None:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--periods", default="7,30")
    parser.add_argument(
        "--pushdown", action="store_true", help="also measure DuckDB with sqlite_query pushdown"
    )
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument(
        "--copy-experiment",
        action="store_true",
        help="also time computing from a full DuckDB-native copy (copy time apart)",
    )
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--results", type=Path, default=RESULTS)
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
    now = datetime.now(UTC)
    load = os.getloadavg()
    lines = [
        "# Dashboard benchmark",
        "",
        f"Run {now:%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, nproc; shared with other "
        f"sessions: load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start). SQLite store "
        f"{store.stat().st_size / 1e9:.1f} GB: {counts(store)}. Data from bench/dashboard_data.py "
        "(bulk loader that bypasses ingest; 365 days of history).",
        "",
        "| period | orders in period | DuckDB cold | DuckDB again (same connection) | plain SQL on SQLite "
        "| results equal |",
        "|---|---|---|---|---|---|",
    ]
    for days in [int(p) for p in args.periods.split(",") if p.strip()]:
        f = Filters.last_days(days, now=now)
        print(f"period {days} days ...", flush=True)
        r = measure_compute(url, f, now)
        lines.append(
            f"| last {days} days | {r['orders_in_period']:,.0f} | {r['duck_cold_s']:.2f} s | "
            f"{r['duck_again_s']:.2f} s | {r['sql_s']:.2f} s | "
            f"{'yes' if not r['diffs'] else 'NO: ' + '; '.join(r['diffs'])} |"
        )
        print(lines[-1], flush=True)
        if args.pushdown:
            p = measure_compute(url, f, now, pushdown=True)
            lines.append(
                f"| last {days} days, DuckDB with sqlite_query pushdown | | {p['duck_cold_s']:.2f} s | "
                f"{p['duck_again_s']:.2f} s | | {'yes' if not p['diffs'] else 'NO'} |"
            )
            print(lines[-1], flush=True)
        if args.copy_experiment:
            c = measure_copy(url, f, now)
            lines.append(
                f"| last {days} days, experiment: from a DuckDB-native copy (copy took {c['copy_s']:.1f} s, "
                f"not counted) | | {c['compute_s']:.2f} s | {c['compute_again_s']:.2f} s | | |"
            )
            print(lines[-1], flush=True)
        _write(lines, args.results)
    if not args.no_live:
        print("live update ...", flush=True)
        live = measure_live(store)
        lines += [
            "",
            f"Live (last 7 days, real server, SSE client): first request {live.get('first_request_s', 0):.2f} s; "
            f"new order committed -> SSE event with it: {live.get('commit_to_sse_s', float('nan')):.2f} s "
            "(watcher polls every 0.5 s, then one DuckDB computation).",
        ]
        print(lines[-1], flush=True)
    _write(lines, args.results)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
