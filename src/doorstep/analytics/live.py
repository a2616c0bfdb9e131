"""The dashboard service: computes from the analytics replica with a small cache, and keeps the replica in
step with the store.

Change detection is cheap and server-side: on SQLite a dedicated read-only connection reads
`PRAGMA data_version` (it moves whenever another connection commits); on PostgreSQL the snapshot's xmax moves
with every writing transaction. A watcher thread polls it every `poll_s`; on a change it syncs the replica's
delta (analytics/replica.py) and then bumps `version`; SSE streams wait for the bump and push freshly computed
numbers (one computation per filter set and version, shared by every open browser).

The replica's initial build runs in the same thread, when the dashboard is first asked for (minutes at 1M
orders; `doorstep analytics sync` does it ahead of time): until it is done, `compute` waits up to
`warm_wait_s` and then raises ReplicaWarmingUp, which the page shows as "warming up" rather than hanging.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from doorstep.analytics.engine import sql_runner
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard, drill
from doorstep.analytics.replica import Replica, ReplicaWarmingUp, open_replica
from doorstep.clock import Clock
from doorstep.db.engine import normalise_url

log = logging.getLogger("doorstep.analytics")

CACHE_ENTRIES = 32
POLL_S = 0.2  # how often the store is checked for changes (a new event shows within ~poll + sync + compute)
WARM_WAIT_S = 2.0  # how long a request waits for the replica's initial build before answering "warming up"


class StoreWatcher:
    """Reads a value that changes whenever the store is written."""

    def __init__(self, database_url: str, read_engine: Engine):
        self.url = normalise_url(database_url)
        self.read_engine = read_engine
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def token(self) -> Any:
        with self._lock:
            if self.url.startswith("sqlite"):
                if self._conn is None:
                    path = make_url(self.url).database
                    if not path or path == ":memory:":
                        return 0  # nothing to watch (and DuckDB cannot read it either)
                    uri = f"file:{Path(path or '').resolve()}?mode=ro"
                    self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
                return self._conn.execute("PRAGMA data_version").fetchone()[0]
            with self.read_engine.connect() as conn:
                return conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")).scalar_one()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class DashboardService:
    def __init__(
        self,
        *,
        database_url: str,
        read_engine: Engine,
        clock: Clock,
        poll_s: float = POLL_S,
        var_dir: Path | None = None,
        warm_wait_s: float = WARM_WAIT_S,
        replica: Replica | None = None,
    ):
        self.clock = clock
        self.read_engine = read_engine
        self.replica = replica or open_replica(database_url, var_dir=var_dir)
        self.watcher = StoreWatcher(database_url, read_engine)
        self.poll_s = poll_s
        self.warm_wait_s = warm_wait_s
        self.version = 0
        self._last_token: Any = None
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._key_locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._wanted = threading.Event()  # the dashboard was asked for: build the replica if it is not there
        self._thread: threading.Thread | None = None
        self._options: tuple[float, dict[str, list[str]]] | None = None

    # ---- computing -----------------------------------------------------------------------------------

    def _ready(self) -> None:
        """Waits for the replica's initial build (syncing inline when no watcher runs, e.g. in a script)."""
        if self.replica.is_ready:
            return
        if self._thread is None:
            self.sync()
            return
        self._wanted.set()  # the watcher starts the initial build now
        deadline = time.monotonic() + self.warm_wait_s
        while not self.replica.is_ready and time.monotonic() < deadline:
            if self.replica.build.state == "failed":
                break
            time.sleep(0.05)
        if not self.replica.is_ready:
            raise ReplicaWarmingUp("the analytics replica is warming up", **self.replica.progress())

    def compute(self, f: Filters) -> dict[str, Any]:
        self._ready()
        key = (f.key(), self.version)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:  # one computation per (filters, version), however many browsers wait for it
            with self._cache_lock:
                hit = self._cache.get(key)
            if hit is not None:
                return hit
            with self.replica.runner() as runner:
                result = compute_dashboard(runner, f, now=self.clock.now())
            result["version"] = self.version
            with self._cache_lock:
                self._cache[key] = result
                while len(self._cache) > CACHE_ENTRIES:
                    old, _ = self._cache.popitem(last=False)
                    self._key_locks.pop(old, None)
        return result

    def drill(self, f: Filters, name: str, *, limit: int | None = None) -> tuple[str, list[dict[str, Any]]]:
        self._ready()
        with self.replica.runner() as runner:
            kind, rows = drill(runner, f, name, now=self.clock.now(), limit=limit)
        if kind == "customers":
            rows = self._with_contact_details(rows)
        return kind, rows

    def _with_contact_details(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adds names and emails from the store: the replica keeps no personal data beyond ids."""
        from doorstep.customers.tables import customers

        details: dict[str, dict[str, Any]] = {}
        ids = [r["id"] for r in rows]
        with self.read_engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                stmt = select(
                    customers.c.id, customers.c.email, customers.c.name, customers.c.last_seen_at
                ).where(customers.c.id.in_(chunk))
                details.update({r.id: dict(r._mapping) for r in conn.execute(stmt)})
        out = []
        for r in rows:
            d = details.get(r["id"])
            if d is None:  # erased since the replica last synced
                continue
            out.append(
                {
                    "id": r["id"],
                    "email": d["email"],
                    "name": d["name"],
                    "region": r["region"],
                    "first_seen_at": r["first_seen_at"],
                    "last_seen_at": d["last_seen_at"],
                }
            )
        return out

    def compute_plain(self, f: Filters) -> dict[str, Any]:
        """The same dashboard by plain SQL on the store (for comparison)."""
        with sql_runner(self.read_engine) as runner:
            return compute_dashboard(runner, f, now=self.clock.now())

    def options(self) -> dict[str, list[str]]:
        """Values offered in the filter menus (cached for a minute)."""
        if self._options and self._options[0] > time.monotonic():
            return self._options[1]
        self._ready()
        with self.replica.runner() as runner:

            def values(sql: str) -> list[str]:
                return [r["v"] for r in runner.rows(sql, {})]

            out = {
                "carrier": values(
                    "SELECT DISTINCT carrier AS v FROM shipments WHERE carrier IS NOT NULL ORDER BY 1"
                ),
                "region": values(
                    "SELECT DISTINCT ship_region AS v FROM orders WHERE ship_region IS NOT NULL ORDER BY 1"
                ),
                "channel": values(
                    "SELECT DISTINCT channel AS v FROM orders WHERE channel IS NOT NULL ORDER BY 1"
                ),
                "segment": ["new", "returning"],
            }
        self._options = (time.monotonic() + 60, out)
        return out

    # ---- keeping up with the store -------------------------------------------------------------------

    def sync(self) -> None:
        """Syncs the replica's delta; bumps the version when anything changed."""
        report = self.replica.sync()
        if report.initial or report.orders_recomputed or any(report.rows.values()) or report.deleted:
            with self._changed:
                self.version += 1
                self._changed.notify_all()

    def check(self) -> bool:
        """Polls once; True (replica synced, version bumped) when the store changed since the last poll."""
        token = self.watcher.token()
        if token == self._last_token:
            return False
        self._last_token = token
        self.sync()
        return True

    def wait_for_change(self, seen: int, timeout_s: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self._stop.is_set(), timeout=timeout_s)
            return self.version

    def _run(self) -> None:
        # A replica kept in a file is brought up to date at once; one that does not exist yet is built when the
        # dashboard is first asked for (or ahead of time by `doorstep analytics sync`), so a process that never
        # serves the dashboard never reads the whole store.
        while not self.replica.is_ready and not self._wanted.wait(self.poll_s):
            if self._stop.is_set():
                return
        if self._stop.is_set():
            return
        try:
            self._last_token = self.watcher.token()
            self.sync()  # the initial build (or, over a kept file, what changed while we were down)
        except Exception:
            log.exception("analytics replica sync failed")
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:
                log.exception("dashboard change check failed")

    def start(self) -> DashboardService:
        self._thread = threading.Thread(target=self._run, name="dashboard-watcher", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wanted.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.watcher.close()
        self.replica.close()


def now_of(service: DashboardService) -> datetime:
    return service.clock.now()
