"""Sustained Segment ingest through POST /v1/batch, against the raw insert rate of the same rows.

For each store (SQLite always; PostgreSQL at DOORSTEP_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/doorstep_bench, created and emptied by the bench):
  1. start `doorstep serve` as a subprocess, with its in-process worker projecting the log as in production;
  2. from this process (the load generator) send 100-event batches over several keep-alive connections on
     loopback as fast as they are answered: events/s at maximum load;
  3. send at half that rate, open loop (a request is sent on schedule whether or not earlier ones returned):
     client-side latency per batch, p50/p99, and the server's own time per batch (Server-Timing header);
  4. insert the same rows straight into event_log (executemany, a transaction per 100 rows, as the server
     commits) on a fresh database: the raw rate, and the ratio HTTP / raw.

Options (environment): BENCH_SECONDS (per phase, default 10), BENCH_CONNECTIONS (default 8),
BENCH_SERVE_WORKERS (API processes, default 1), BENCH_STORES (sqlite,postgres).
"""

from __future__ import annotations

import asyncio
import base64
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
BATCH_EVENTS = 100
WRITE_KEY = "wk_bench_0123456789abcdefghijklmnopqrstuvwxyz"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/doorstep_bench"


@dataclass
class Result:
    store: str
    max_events_s: float = 0.0
    max_requests: int = 0
    errors: int = 0
    half_rate_events_s: float = 0.0
    half_achieved_events_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_p50_ms: float = 0.0
    server_p99_ms: float = 0.0
    raw_events_s: float = 0.0
    log_lag_after: int = 0
    server_cpu_ms_per_batch: float = 0.0  # user+system CPU of the server process per 100-event batch
    client_cpu_ms_per_batch: float = 0.0
    load_average: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.max_events_s / self.raw_events_s if self.raw_events_s else 0.0


def _event(batch: int, i: int) -> dict[str, Any]:
    user = (batch * 7 + i) % 5000
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"@@B@@-{i:03d}",
        "anonymousId": f"anon-{user}",
        "userId": f"user-{user}" if i % 3 == 0 else None,
        "timestamp": "2026-11-23T08:59:00.000Z",
        "properties": {
            "product_id": f"p{i % 50}",
            "sku": f"SKU-{i % 50:04d}",
            "category": "Shoes",
            "name": "Trail runner",
            "price": 89.5,
            "currency": "EUR",
            "position": i % 10,
        },
        "context": {
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0",
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "page": {"path": "/p/trail-runner", "url": "https://shop.example/p/trail-runner"},
        },
    }


def _template() -> bytes:
    events = [{k: v for k, v in _event(0, i).items() if v is not None} for i in range(BATCH_EVENTS)]
    return orjson.dumps({"batch": events, "sentAt": "2026-11-23T08:59:00.500Z"})


class Bodies:
    """Batch bodies with unique messageIds, cheap to make while the load runs."""

    def __init__(self, tag: str):
        self.template = _template()
        self.tag = tag
        self.n = 0

    def next(self) -> bytes:
        self.n += 1
        return self.template.replace(b"@@B@@", f"{self.tag}{self.n:08d}".encode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(database_url: str, var_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "DOORSTEP_DATABASE_URL": database_url,
        "DOORSTEP_ENV": "test",
        "DOORSTEP_VAR_DIR": str(var_dir),
        "DOORSTEP_PORT": str(port),
        "DOORSTEP_LOG_LEVEL": "WARNING",
        "DOORSTEP_IN_PROCESS_WORKER": "true",
        "DOORSTEP_BROKER_URL": "",
        "DOORSTEP_DEMO": "false",
        "DOORSTEP_SECRET_KEY": "bench-secret-key-bench-secret-key-0123456789",
    }


def _prepare(database_url: str) -> None:
    """A migrated, empty database holding the bench write key."""
    import sqlalchemy as sa

    from doorstep.db.engine import create_db_engine, normalise_url
    from doorstep.db.migrate import upgrade
    from doorstep.security.keys import create_key

    if database_url.startswith("postgres"):
        url = sa.engine.make_url(normalise_url(database_url))
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if (
                conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
                ).first()
                is None
            ):
                conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    upgrade(database_url)
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        create_key(conn, kind="write", scopes=[], name="bench", now=datetime.now(UTC), key=WRITE_KEY)
    engine.dispose()


def _start_server(database_url: str, var_dir: Path, port: int) -> subprocess.Popen[bytes]:
    workers = os.environ.get("BENCH_SERVE_WORKERS", "1")
    log = open(var_dir / "serve.log", "wb")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [sys.executable, "-m", "doorstep", "serve", "--skip-migrate", "--no-demo", "--workers", workers],
        env=_env(database_url, var_dir, port),
        cwd=var_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(var_dir / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError("server did not come up in 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (`serve --workers N`), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(_cpu_s(int(child)) for child in children.read_text().split())
    return total


def _server_ms(response: httpx.Response) -> float | None:
    for part in response.headers.get("server-timing", "").split(","):
        name, _, rest = part.strip().partition(";")
        if name == "app" and rest.startswith("dur="):
            return float(rest[4:])
    return None


async def _max_load(base: str, bodies: Bodies, seconds: float, connections: int) -> tuple[int, int, float]:
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    done = errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
        stop_at = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal done, errors
            while time.monotonic() < stop_at:
                try:
                    response = await client.post("/v1/batch", content=bodies.next())
                except httpx.HTTPError as exc:
                    errors += 1
                    print(f"    request failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                if response.status_code == 200 and response.json().get("accepted") == BATCH_EVENTS:
                    done += 1
                else:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return done, errors, elapsed


async def _paced_load(
    base: str, bodies: Bodies, seconds: float, rate_rps: float, connections: int
) -> tuple[list[float], list[float], int, float]:
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    latencies: list[float] = []
    server: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections * 4, max_keepalive_connections=connections * 4)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:

        async def one(body: bytes) -> None:
            nonlocal errors
            sent = time.perf_counter()
            try:
                response = await client.post("/v1/batch", content=body)
            except httpx.HTTPError as exc:
                errors += 1
                print(f"    request failed: {type(exc).__name__}: {exc}", flush=True)
                return
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 200:
                errors += 1
            ms = _server_ms(response)
            if ms is not None:
                server.append(ms)

        tasks = []
        interval = 1.0 / rate_rps
        started = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - started < seconds:
            due = started + n * interval
            if now < due:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(bodies.next())))
            n += 1
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return latencies, server, errors, elapsed


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _log_lag(database_url: str) -> int:
    from sqlalchemy import func, select

    from doorstep.db.engine import create_db_engine
    from doorstep.ingest.tables import event_log, log_offsets

    engine = create_db_engine(database_url, for_reads=True)
    with engine.connect() as conn:
        last = conn.execute(select(func.max(event_log.c.id))).scalar() or 0
        done = conn.execute(
            select(log_offsets.c.position).where(log_offsets.c.consumer == "projector")
        ).scalar()
    engine.dispose()
    return int(last) - int(done or 0)


def _raw_insert_rate(database_url: str, batches: int) -> float:
    """The same rows the edge stores, inserted with executemany, one durable transaction per batch."""
    from sqlalchemy import insert

    from doorstep.db.engine import create_db_engine
    from doorstep.ingest.segment import validate_event
    from doorstep.ingest.tables import event_log

    _prepare(database_url)
    received_at = datetime.now(UTC)
    template = orjson.loads(_template())
    from datetime import timedelta

    rows_per_batch = []
    for b in range(batches):
        rows = []
        for i, raw in enumerate(template["batch"]):
            event = dict(raw, messageId=f"raw{b:08d}-{i:03d}")
            accepted = validate_event(
                event, index=i, received_at=received_at, max_future_skew=timedelta(days=1)
            )
            rows.append(
                {
                    "source": "segment",
                    "message_id": accepted.message_id,
                    "type": accepted.type,  # type: ignore[union-attr]
                    "name": accepted.name,
                    "partition_key": accepted.partition_key,  # type: ignore[union-attr]
                    "received_at": received_at,
                    "occurred_at": accepted.occurred_at,  # type: ignore[union-attr]
                    "payload": accepted.payload,  # type: ignore[union-attr]
                }
            )
        rows_per_batch.append(rows)
    engine = create_db_engine(database_url)
    started = time.perf_counter()
    for rows in rows_per_batch:
        with engine.begin() as conn:
            conn.execute(insert(event_log), rows)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return batches * BATCH_EVENTS / elapsed


def _per_core(result: Result) -> float:
    ms = result.server_cpu_ms_per_batch
    return BATCH_EVENTS * 1000 / ms if ms else 0.0


def run_store(store: str, database_url: str, seconds: float, connections: int) -> Result:
    result = Result(store)
    var_dir = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{store}-"))
    try:
        _prepare(database_url)
        port = _free_port()
        server = _start_server(database_url, var_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            bodies = Bodies("w")
            asyncio.run(_max_load(base, bodies, 2.0, connections))  # warm up
            bodies = Bodies("m")
            cpu_before, client_before = _cpu_s(server.pid), time.process_time()
            done, errors, elapsed = asyncio.run(_max_load(base, bodies, seconds, connections))
            if done:
                result.server_cpu_ms_per_batch = (_cpu_s(server.pid) - cpu_before) * 1000 / done
                result.client_cpu_ms_per_batch = (time.process_time() - client_before) * 1000 / done
            result.load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            result.max_requests, result.errors = done, errors
            result.max_events_s = done * BATCH_EVENTS / elapsed
            print(
                f"  [{store}] max load: {result.max_events_s:,.0f} events/s "
                f"({done} batches in {elapsed:.1f} s, {errors} errors); server CPU "
                f"{result.server_cpu_ms_per_batch:.2f} ms/batch (= {_per_core(result):,.0f} events/s per busy "
                f"core), client CPU {result.client_cpu_ms_per_batch:.2f} ms/batch; load average "
                f"{result.load_average}",
                flush=True,
            )
            time.sleep(2)
            half_rps = result.max_events_s / 2 / BATCH_EVENTS
            result.half_rate_events_s = half_rps * BATCH_EVENTS
            latencies, server_ms, errors, elapsed = asyncio.run(
                _paced_load(base, Bodies("h"), seconds, half_rps, connections)
            )
            result.errors += errors
            result.half_achieved_events_s = len(latencies) * BATCH_EVENTS / elapsed
            result.p50_ms, result.p99_ms = _pct(latencies, 0.5), _pct(latencies, 0.99)
            result.server_p50_ms, result.server_p99_ms = _pct(server_ms, 0.5), _pct(server_ms, 0.99)
            print(
                f"  [{store}] half load ({result.half_rate_events_s:,.0f} events/s): client p50 "
                f"{result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms; server p50 {result.server_p50_ms:.1f} "
                f"ms p99 {result.server_p99_ms:.1f} ms",
                flush=True,
            )
            time.sleep(1)
            result.log_lag_after = _log_lag(database_url)
        finally:
            _stop(server)
        raw_batches = max(50, min(2000, result.max_requests))
        raw_url = f"sqlite:///{var_dir / 'raw.db'}" if store == "sqlite" else database_url  # a fresh store
        result.raw_events_s = _raw_insert_rate(raw_url, raw_batches)
        print(
            f"  [{store}] raw executemany: {result.raw_events_s:,.0f} events/s; "
            f"HTTP/raw = {result.ratio:.2f}",
            flush=True,
        )
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    return result


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "8"))
    stores = os.environ.get("BENCH_STORES", "sqlite,postgres").split(",")
    print(
        f"ingest bench: {seconds:g} s per phase, {connections} connections, {BATCH_EVENTS} events per batch, "
        f"nproc {os.cpu_count()}, {platform.machine()} {platform.processor() or ''}".rstrip(),
        flush=True,
    )
    results = []
    for store in stores:
        if store == "sqlite":
            path = Path(tempfile.mkdtemp(prefix="bench-sqlite-")) / "doorstep.db"
            url = f"sqlite:///{path}"
        else:
            url = os.environ.get("DOORSTEP_BENCH_POSTGRES_URL", DEFAULT_PG)
        try:
            results.append(run_store(store, url, seconds, connections))
        except Exception as exc:  # a store that is not reachable is reported, the others still run
            print(f"  [{store}] failed: {type(exc).__name__}: {exc}", flush=True)
    targets = {"sqlite": 20_000, "postgres": 10_000}
    print()
    print(
        "| store | events/s at max load | target | batch p99 at half load (client / server) | raw executemany "
        "events/s | HTTP/raw | server CPU per batch | events/s per busy server core | log lag after | load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.store} | {r.max_events_s:,.0f} | {targets.get(r.store, 0):,} | {r.p99_ms:.1f} / "
            f"{r.server_p99_ms:.1f} ms | {r.raw_events_s:,.0f} | {r.ratio:.2f} | "
            f"{r.server_cpu_ms_per_batch:.2f} ms | {_per_core(r):,.0f} | {r.log_lag_after:,} | {r.load_average} |"
        )
    if any(r.errors for r in results):
        print("errors:", {r.store: r.errors for r in results})


if __name__ == "__main__":
    main()
