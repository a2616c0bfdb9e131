"""The dashboard service: computes through DuckDB with a small cache, and notices when the store changes.

Change detection is cheap and server-side: on SQLite a dedicated read-only connection reads
`PRAGMA data_version` (it moves whenever another connection commits); on PostgreSQL the snapshot's xmax moves
with every writing transaction. A watcher thread polls it every `poll_s` and bumps `version`; SSE streams
wait for the bump and push freshly computed numbers (one computation per filter set and version, shared by
every open browser).
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

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from doorstep.analytics.engine import DuckEngine, sql_runner
from doorstep.analytics.model import Filters
from doorstep.analytics.queries import compute_dashboard, drill
from doorstep.clock import Clock
from doorstep.db.engine import normalise_url

log = logging.getLogger("doorstep.analytics")

CACHE_ENTRIES = 32
POLL_S = 0.5  # how often the store is checked for changes (a new event shows within ~poll + compute)


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
    def __init__(self, *, database_url: str, read_engine: Engine, clock: Clock, poll_s: float = POLL_S):
        self.clock = clock
        self.read_engine = read_engine
        self.duck = DuckEngine(database_url)
        self.watcher = StoreWatcher(database_url, read_engine)
        self.poll_s = poll_s
        self.version = 0
        self._last_token: Any = None
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._key_locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._options: tuple[float, dict[str, list[str]]] | None = None

    # ---- computing -----------------------------------------------------------------------------------

    def compute(self, f: Filters) -> dict[str, Any]:
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
            with self.duck.runner() as runner:
                result = compute_dashboard(runner, f, now=self.clock.now())
            result["version"] = self.version
            with self._cache_lock:
                self._cache[key] = result
                while len(self._cache) > CACHE_ENTRIES:
                    old, _ = self._cache.popitem(last=False)
                    self._key_locks.pop(old, None)
        return result

    def drill(self, f: Filters, name: str, *, limit: int | None = None) -> tuple[str, list[dict[str, Any]]]:
        with self.duck.runner() as runner:
            return drill(runner, f, name, now=self.clock.now(), limit=limit)

    def compute_plain(self, f: Filters) -> dict[str, Any]:
        """The same dashboard by plain SQL on the store (for comparison)."""
        with sql_runner(self.read_engine) as runner:
            return compute_dashboard(runner, f, now=self.clock.now())

    def options(self) -> dict[str, list[str]]:
        """Values offered in the filter menus (cached for a minute)."""
        if self._options and self._options[0] > time.monotonic():
            return self._options[1]
        with self.duck.runner() as runner:
            d = runner.dialect
            out = {
                "carrier": [
                    r["v"]
                    for r in runner.rows(
                        f"SELECT DISTINCT carrier AS v FROM {d.t('shipments')} WHERE carrier IS NOT NULL ORDER BY 1",
                        {},
                    )
                ],
                "region": [
                    r["v"]
                    for r in runner.rows(
                        f"SELECT DISTINCT ship_region AS v FROM {d.t('orders')} WHERE ship_region IS NOT NULL "
                        "ORDER BY 1",
                        {},
                    )
                ],
                "channel": [
                    r["v"]
                    for r in runner.rows(
                        f"SELECT DISTINCT channel AS v FROM {d.t('orders')} WHERE channel IS NOT NULL ORDER BY 1",
                        {},
                    )
                ],
                "segment": ["new", "returning"],
            }
        self._options = (time.monotonic() + 60, out)
        return out

    # ---- watching the store ------------------------------------------------------------------------

    def check(self) -> bool:
        """Polls once; True (and version bumped) when the store changed since the last poll."""
        token = self.watcher.token()
        if self._last_token is None:
            self._last_token = token
            return False
        if token == self._last_token:
            return False
        self._last_token = token
        with self._changed:
            self.version += 1
            self._changed.notify_all()
        return True

    def wait_for_change(self, seen: int, timeout_s: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self._stop.is_set(), timeout=timeout_s)
            return self.version

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:
                log.exception("dashboard change check failed")

    def start(self) -> DashboardService:
        try:
            self._last_token = self.watcher.token()
        except Exception:
            log.exception("dashboard change check failed")
        self._thread = threading.Thread(target=self._run, name="dashboard-watcher", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.watcher.close()
        self.duck.close()


def now_of(service: DashboardService) -> datetime:
    return service.clock.now()
