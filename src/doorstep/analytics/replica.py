"""The analytics replica: a DuckDB database that mirrors what the dashboard reads, kept up to date incrementally.

Why: computing the dashboard through DuckDB's scanners read the whole store on every run (the sqlite scanner
pushes no filter down: 10M customer_events per computation) and re-aggregated every order's facts each time,
about 20 s at 1M orders (bench/RESULTS_dashboard.md). The replica keeps, in DuckDB's own columnar tables:

- mirrors of the columns the metrics read, minus personal data (no email, name or free text; a feedback
  comment is kept only as `mentions_invoice`, evaluated by the store so LIKE follows the store's rules);
  customer_events holds only page/track calls, sorted by time at the initial build so zone maps prune a period;
- `order_facts`: one row per order with every data-only fact (`sql.order_facts_select`, the very SQL the plain
  path runs), so a computation reads the period's rows instead of aggregating shipments, steps, returns,
  feedback, lines and contacts;
- `contact_links`: each conversation with the order it is about (the ASOF join, done once per change).
- causes: `contact_links.upstream_cause` and `feedback_causes` (each review with its cause), the dashboard's
  cause CASE over the linked order's facts, which depends on the contact or review and its order only (not on
  the period, the filters or now); recomputed with the order's facts.
- `order_facts.has_earlier` / `has_later`: whether the order's customer has an order before / after it (the
  repeat-purchase rate and downstream), recomputed for every order of a customer whose orders changed.
- the day rollup of sessions: `sessions.rolled_day` is the UTC day on which all the calls of a session id fall
  (every customer's; NULL across midnight), and `session_days` counts those sessions per day and source, so a
  period's events metrics add whole days from it and read only the rest row by row (sql.session_events_select);
  the touched session ids' rows and days are recomputed when calls arrive or a customer is erased.
- ART indexes on order_facts(id) and orders(customer_id), for the sync's lookups of a few keys (INDEXES).

What depends on `now` or on the filters (fall_off, dispatch_late, periods, cuts) stays at query time.

Sync reads only what changed, through the store's own SQL (PostgreSQL: `postgres_query` on the store attached
READ_ONLY; SQLite: Python's sqlite3 opened read-only, and for the initial build DuckDB's sqlite scanner in a
child process, see analytics/export.py), so the store's indexes select the rows and nothing can be written to
it: rows whose
`updated_at` / `recorded_at` is at or after the last watermark minus `OVERLAP` (a row committed late, with an
older timestamp, is still read), and ids above the last id minus `OVERLAP_IDS` for append-only tables. Rows are
compared first with the rows the last sync read (`seen_<table>`: what it read was applied), then only the others
with the replica (EXCEPT), so re-reading the overlap changes nothing and costs no scan of a mirror's keys;
changed rows are replaced by key.
The orders a changed row feeds have their facts recomputed; customers whose orders or conversations changed
have their contact links recomputed (a new order can become the order an old contact is linked to).

A known limit of `updated_at` as the change marker (the issue asked for it, and it is indexed for it): it is
the writer's clock, and some writers stamp a business time, e.g. orders/handlers_chain.py sets an order's
updated_at to the step's `at`. A row written with an updated_at older than the watermark minus OVERLAP (a
replay of old events, an import of history) is not read until `doorstep analytics sync --rebuild`. order_steps
and feedback use `recorded_at`, the wall clock set by SQLAlchemy on every insert and update; moving the other
tables to such a column (set in upserts' SET clauses too) would remove the limit.

Deletions (customer erasure cascades through the store's foreign keys) leave no marker, so after each sync
the replica compares row counts of customers, orders, conversations and feedback with the store; on a
difference it reads that table's keys and deletes what is gone, cascading as the store does.

One sync runs at a time and in one DuckDB transaction: a reader sees the replica before or after it, never
half-way. Readers use their own cursors (DuckDB connections to the same database) for their temp tables.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from doorstep.analytics.engine import DuckRunner, extension_directory
from doorstep.analytics.errors import AnalyticsError
from doorstep.analytics.sql import (
    SESSION_FLAGS,
    Dialect,
    contact_cause_sql,
    contact_links_select,
    feedback_cause_sql,
    order_facts_select,
    session_rollup,
)
from doorstep.db.engine import normalise_url

log = logging.getLogger("doorstep.analytics.replica")

OVERLAP = timedelta(
    minutes=5
)  # a writer's transaction committing later than this after its timestamp is missed
OVERLAP_IDS = (
    5_000  # append-only ids: PostgreSQL sequences hand ids out before commit, so they land out of order
)
REPLICA_DIALECT = Dialect("duckdb", materialised=True)
SCHEMA_VERSION = 8  # bump when the replica's tables change: an older file is rebuilt

Progress = Callable[[str, int, int], None]  # (step, done, total)
# SQLite stores at least this big are first read by a child process (analytics/export.py); smaller ones row by
# row in this process, which is quicker than starting a process for them
EXPORT_MIN_ROWS = 200_000


@dataclass(frozen=True)
class Mirror:
    """One store table as the replica keeps it."""

    table: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type), in the replica table's order
    marker: str  # the store column that says a row changed
    marker_is_time: bool = True
    where: str = ""  # store-side filter on the rows kept
    exprs: dict[str, str] = field(default_factory=dict)  # store-side expression of a column, when not itself
    order_key: str | None = None  # the column naming the order whose facts the row feeds
    customer_key: str | None = None  # the column naming the customer whose contact links the row affects
    immutable: bool = False  # rows never change once written (only new keys matter)
    sort: str | None = None  # order of rows at the initial build (zone maps prune by it)


TS = "TIMESTAMP"
MIRRORS: tuple[Mirror, ...] = (
    Mirror(
        "customers",
        ("id",),
        (
            ("id", "VARCHAR"),
            ("region", "VARCHAR"),
            ("first_seen_at", TS),
            ("merged_into", "VARCHAR"),
            ("updated_at", TS),
        ),
        "updated_at",
        customer_key="id",
    ),
    Mirror(
        "orders",
        ("id",),
        (
            ("id", "VARCHAR"),
            ("external_id", "VARCHAR"),
            ("customer_id", "VARCHAR"),
            ("status", "VARCHAR"),
            ("currency", "VARCHAR"),
            ("total_minor", "BIGINT"),
            ("channel", "VARCHAR"),
            ("ship_region", "VARCHAR"),
            ("promised_to", TS),
            ("placed_at", TS),
            ("updated_at", TS),
        ),
        "updated_at",
        order_key="id",
        customer_key="customer_id",
    ),
    Mirror(
        "shipments",
        ("id",),
        (
            ("id", "VARCHAR"),
            ("order_id", "VARCHAR"),
            ("carrier", "VARCHAR"),
            ("dispatched_at", TS),
            ("promised_to", TS),
            ("delivered_at", TS),
            ("first_attempt_at", TS),
            ("status", "VARCHAR"),
            ("subtag", "VARCHAR"),
            ("is_return", "BOOLEAN"),
            ("updated_at", TS),
        ),
        "updated_at",
        order_key="order_id",
    ),
    Mirror(
        "order_steps",
        ("order_id", "step"),
        (("order_id", "VARCHAR"), ("step", "VARCHAR"), ("occurred_at", TS), ("recorded_at", TS)),
        "recorded_at",
        order_key="order_id",
    ),
    Mirror(
        "returns",
        ("id",),
        (
            ("id", "VARCHAR"),
            ("order_id", "VARCHAR"),
            ("requested_at", TS),
            ("reason_code", "VARCHAR"),
            ("updated_at", TS),
        ),
        "updated_at",
        order_key="order_id",
    ),
    Mirror(
        "order_lines",
        ("id",),
        (("id", "BIGINT"), ("order_id", "VARCHAR"), ("category", "VARCHAR")),
        "id",
        marker_is_time=False,
        order_key="order_id",
    ),
    Mirror(
        "feedback",
        ("id",),
        (
            ("id", "VARCHAR"),
            ("customer_id", "VARCHAR"),
            ("order_id", "VARCHAR"),
            ("kind", "VARCHAR"),
            ("csat", "INTEGER"),
            ("nps", "INTEGER"),
            ("rating", "INTEGER"),
            ("topic", "VARCHAR"),
            ("submitted_at", TS),
            ("mentions_invoice", "BOOLEAN"),
            ("recorded_at", TS),
        ),
        "recorded_at",
        exprs={"mentions_invoice": "CASE WHEN comment LIKE '%invoice%' THEN 1 ELSE 0 END"},
        order_key="order_id",
    ),
    Mirror(
        "conversations",
        ("id",),
        (
            ("id", "VARCHAR"),
            ("customer_id", "VARCHAR"),
            ("order_id", "VARCHAR"),
            ("opened_at", TS),
            ("contact_reason", "VARCHAR"),
            ("intent", "VARCHAR"),
            ("cause", "VARCHAR"),
            ("cause_owner", "VARCHAR"),
            ("updated_at", TS),
        ),
        "updated_at",
        order_key="order_id",
        customer_key="customer_id",
    ),
    Mirror(
        "customer_events",
        ("log_id",),
        (
            ("log_id", "BIGINT"),
            ("customer_id", "VARCHAR"),
            ("type", "VARCHAR"),
            ("name", "VARCHAR"),
            ("session_id", "VARCHAR"),
            ("campaign_source", "VARCHAR"),
            ("occurred_at", TS),
        ),
        "log_id",
        marker_is_time=False,
        where="type IN ('page', 'track')",
        immutable=True,
        sort="occurred_at",
    ),
)
BY_NAME = {m.table: m for m in MIRRORS}
# ART indexes for the sync's lookups of a few keys among a million (DuckDB uses them for IN lists and small
# semi joins): deleting and re-reading a handful of orders' facts scanned every row's 36-character id (0.1-0.4 s
# a statement); a contact's customer's orders likewise
INDEXES = (("order_facts", "id"), ("orders", "customer_id"))
# Deletions are found by counting these (erasure cascades from customers; conversations are also purged alone)
COUNTED = ("customers", "orders", "conversations", "feedback")
# What goes when a row goes, as in the store's foreign keys: table -> [(child table, child column)]
CASCADES = {
    "customers": [
        ("orders", "customer_id"),
        ("conversations", "customer_id"),
        ("feedback", "customer_id"),
        ("customer_events", "customer_id"),
    ],
    "orders": [
        ("shipments", "order_id"),
        ("order_steps", "order_id"),
        ("returns", "order_id"),
        ("order_lines", "order_id"),
    ],
}


class ReplicaWarmingUp(AnalyticsError):
    """The replica's initial build has not finished: the dashboard cannot be computed yet."""

    status = 503


@dataclass
class SyncReport:
    initial: bool
    seconds: float
    rows: dict[str, int]  # changed rows read per table
    deleted: dict[str, int]
    orders_recomputed: int


@dataclass
class BuildState:
    """What the dashboard shows while the replica warms up."""

    state: str = "empty"  # empty | building | ready | failed
    step: str = ""
    done: int = 0
    total: int = 0
    error: str = ""


class Replica:
    """The replica database (a DuckDB file, or in memory) and its sync from the store.

    `path=None` keeps it in memory (rebuilt when the process starts). A file survives restarts, so only the
    delta is read then; DuckDB lets one process hold a file, so with several API processes the first takes
    the file and the others fall back to memory (`open_replica`)."""

    def __init__(
        self,
        database_url: str,
        *,
        path: Path | None = None,
        threads: int | None = None,
        export_min_rows: int = EXPORT_MIN_ROWS,
    ):
        self.export_min_rows = export_min_rows
        self.database_url = normalise_url(database_url)
        self.path = path
        self.is_sqlite = self.database_url.startswith("sqlite")
        self.threads = threads
        self._db_conn: Any = None
        self._connect_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._store_attached = False
        self._store_conn: sqlite3.Connection | None = None
        self._store_path: Path | None = None
        self._exported: Path | None = None  # SQLite initial build: the Parquet files read from the store
        self.build = BuildState()
        self._looked = False  # whether a kept file was checked for a finished build
        self.last_sync: SyncReport | None = None

    @property
    def _db(self) -> Any:
        """The DuckDB database, opened on first use: a process that never serves the dashboard (a CLI command,
        a worker) opens nothing, holds no file lock and runs no DuckDB threads (which a later fork would
        inherit)."""
        if self._db_conn is None:
            with self._connect_lock:
                if self._db_conn is None:
                    self._db_conn = self._connect()
        return self._db_conn

    def _connect(self) -> Any:
        import duckdb

        config: dict[str, Any] = {
            "extension_directory": extension_directory(),
            "autoinstall_known_extensions": False,
        }
        if self.threads:
            config["threads"] = self.threads
        if self.path is None:
            return duckdb.connect(":memory:", config=config)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.path), config=config)
        except duckdb.IOException as exc:  # "Could not set lock on file": another process holds it
            if "lock" not in str(exc).lower():
                raise
            log.warning("analytics replica %s is held by another process: keeping one in memory", self.path)
            self.path = None
            return duckdb.connect(":memory:", config=config)

    # ---- reading -------------------------------------------------------------------------------------

    @property
    def is_ready(self) -> bool:
        if not self._looked and self.build.state == "empty":
            self._looked = True
            if self.path is not None and self.path.exists() and self._is_built():
                self.build.state = "ready"  # kept from an earlier run: usable at once, synced by the watcher
        return self.build.state == "ready"

    @contextmanager
    def runner(self) -> Iterator[DuckRunner]:
        """A runner over the replica on its own cursor (its temp tables vanish with it)."""
        if not self.is_ready:
            raise ReplicaWarmingUp("the analytics replica is warming up", **self.progress())
        cur = self._db.cursor()
        try:
            yield DuckRunner(cur, dialect=REPLICA_DIALECT)
        finally:
            cur.close()

    def progress(self) -> dict[str, Any]:
        b = self.build
        return {"state": b.state, "step": b.step, "done": b.done, "total": b.total}

    def close(self) -> None:
        if (
            self._db_conn is not None and self._write_lock.locked()
        ):  # a sync (the initial build?) runs: stop it
            self._db_conn.interrupt()
        with self._write_lock:
            if self._db_conn is not None:
                self._db_conn.close()
                self._db_conn = None
            if self._store_conn is not None:
                self._store_conn.close()

    def drop(self) -> None:
        """Forgets everything: the next sync builds the replica again from the store."""
        with self._write_lock:
            cur = self._db.cursor()  # one cursor per use: a DuckDB connection is not shared across threads
            try:
                cur.execute("DROP TABLE IF EXISTS replica_meta")
            finally:
                cur.close()
            self.build = BuildState()

    # ---- syncing -------------------------------------------------------------------------------------

    def _is_built(self) -> bool:
        cur = self._db.cursor()
        try:
            meta = dict(cur.execute("SELECT name, value FROM replica_meta").fetchall())
        except Exception:  # no replica_meta: never built
            return False
        finally:
            cur.close()
        return meta.get("schema_version") == str(SCHEMA_VERSION) and meta.get("store") == self._store_id()

    def _store_id(self) -> str:
        """Which store the file mirrors (a file built from another store is rebuilt, not synced)."""
        url = make_url(self.database_url)
        return hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]

    def _attach(self, con: Any) -> None:
        """PostgreSQL: DuckDB's postgres scanner, attached READ_ONLY. SQLite: Python's own sqlite3 (the copy of
        SQLite the app uses), opened read-only; DuckDB's sqlite scanner only ever runs in a child process
        (analytics/export.py says why)."""
        if self._store_attached:
            return
        url = make_url(self.database_url)
        if self.is_sqlite:
            path = url.database
            if not path or path == ":memory:":
                raise AnalyticsError("the replica cannot read an in-memory SQLite store: use a file database")
            self._store_path = Path(path).resolve()
            self._store_conn = sqlite3.connect(
                f"file:{self._store_path}?mode=ro", uri=True, check_same_thread=False, timeout=30
            )
        else:
            parts = {
                "host": url.host,
                "port": url.port,
                "dbname": url.database,
                "user": url.username,
                "password": url.password,
            }
            dsn = " ".join(f"{k}={v}" for k, v in parts.items() if v)
            con.execute("LOAD postgres")
            con.execute(f"ATTACH '{_quote(dsn)}' AS store (TYPE postgres, READ_ONLY)")
        self._store_attached = True

    def _store_size(self) -> int:
        """Rows in the two largest tables the replica reads (max rowid: no scan)."""
        return sum(
            int(self._store_rows(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}")[0][0])
            for table in ("orders", "customer_events")
        )

    def _store_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of `sql` run by the store itself (SQLite: in this process, read-only)."""
        assert self._store_conn is not None
        return self._store_conn.execute(sql).fetchall()

    def _scalar(self, con: Any, sql: str) -> int:
        if self.is_sqlite:
            return int(self._store_rows(sql)[0][0])
        return int(con.execute(f"SELECT CAST(n AS BIGINT) FROM {self._store_query(sql)} t(n)").fetchone()[0])

    def _load_rows(
        self, con: Any, table: str, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]
    ) -> None:
        """Creates temp `table` typed as `columns` from Python rows, handed to DuckDB as NumPy object columns
        (a scan: ~30 ms for 10,000 rows). Not executemany: one statement per row, ~3 ms each, made a sync of
        10,000 overlap rows take 30 s; nor list parameters (2 s to bind 10,000 values). Values go in as text and
        are cast by DuckDB (the store's timestamps are already ISO text on SQLite)."""
        import numpy as np

        data = {
            name: np.array([None if r[i] is None else str(r[i]) for r in rows], dtype=object)
            for i, (name, _) in enumerate(columns)
        }
        casts = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in columns)
        view = f"{table}_rows"
        con.register(view, data)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {casts} FROM {view}")
        finally:
            con.unregister(view)

    def _export(self, progress: Progress | None, total: int) -> Path:
        """SQLite: every mirror's rows into Parquet files, by DuckDB's scanner in a child process."""
        out = Path(tempfile.mkdtemp(prefix="doorstep-replica-", dir=self.path.parent if self.path else None))
        spec = {
            "store": str(self._store_path),
            "dir": str(out),
            "tables": [[m.table, self._store_select(m, m.where, fn="sqlite_query")] for m in MIRRORS],
        }
        # the child imports this very doorstep package (a worktree's src may shadow an installed one)
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        }
        with subprocess.Popen(
            [sys.executable, "-m", "doorstep.analytics.export"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(spec))
            proc.stdin.close()
            for i, line in enumerate(proc.stdout):
                self._step(progress, f"read {line.strip()}", i + 1, total)
        if proc.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            raise AnalyticsError(f"reading the store for the replica failed (exit {proc.returncode})")
        return out

    def _store_query(self, sql: str) -> str:
        """PostgreSQL: a table function running `sql` in the store itself (its indexes, its dialect)."""
        return f"postgres_query('store', '{_quote(sql)}')"

    def _store_sql(self, m: Mirror, where: str) -> str:
        """The store-side SELECT of `m`'s columns (in the store's dialect)."""
        exprs = []
        for name, kind in m.columns:
            expr = m.exprs.get(name, name)
            if kind == TS and not self.is_sqlite:
                expr = f"({expr}) AT TIME ZONE 'UTC'"  # timestamptz -> UTC wall time, as SQLite stores it
            exprs.append(f"{expr} AS {name}")
        sql = f"SELECT {', '.join(exprs)} FROM {m.table}"
        return f"{sql} WHERE {where}" if where else sql

    def _store_select(self, m: Mirror, where: str, *, fn: str = "postgres_query") -> str:
        """A DuckDB SELECT running `_store_sql` in the store through a scanner, cast to the replica's types."""
        casts = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in m.columns)
        return f"SELECT {casts} FROM {fn}('store', '{_quote(self._store_sql(m, where))}')"

    def _literal(self, m: Mirror, value: Any) -> str:
        if not m.marker_is_time:
            return str(int(value))
        if self.is_sqlite:
            return f"'{value:%Y-%m-%d %H:%M:%S.%f}'"
        return f"TIMESTAMPTZ '{value:%Y-%m-%d %H:%M:%S.%f}+00'"

    def sync(self, *, progress: Progress | None = None) -> SyncReport:
        """Brings the replica up to date with the store: the whole store the first time, then what changed."""
        with self._write_lock:
            initial = not self._is_built()
            if initial:
                self.build = BuildState(state="building", step="starting", total=len(MIRRORS) + 2)
            try:
                report = self._sync(initial, progress)
            except Exception as exc:
                if initial:
                    self.build = BuildState(state="failed", error=str(exc))
                raise
            self.build = BuildState(state="ready")
            self.last_sync = report
            return report

    def _step(self, progress: Progress | None, step: str, done: int, total: int) -> None:
        self.build.step, self.build.done, self.build.total = step, done, total
        if progress:
            progress(step, done, total)

    def _sync(self, initial: bool, progress: Progress | None) -> SyncReport:
        started = time.perf_counter()
        con = self._db.cursor()
        try:
            self._attach(con)
            if initial and self.is_sqlite and self._store_size() >= self.export_min_rows:
                self._exported = self._export(progress, len(MIRRORS) + 2)
            con.execute("BEGIN")
            if initial:
                self._drop_all(con)
            con.execute("CREATE OR REPLACE TEMP TABLE t_orders (id VARCHAR)")
            con.execute("CREATE OR REPLACE TEMP TABLE t_customers (id VARCHAR)")
            con.execute("CREATE OR REPLACE TEMP TABLE t_conversations (id VARCHAR)")
            con.execute("CREATE OR REPLACE TEMP TABLE t_feedback (id VARCHAR)")
            rows: dict[str, int] = {}
            total = len(MIRRORS) + 2
            for i, m in enumerate(MIRRORS):
                self._step(progress, m.table, i, total)
                rows[m.table] = self._pull(con, m, initial)
            deleted = {} if initial else self._reconcile_deletes(con)
            self._step(progress, "contact_links", len(MIRRORS), total)
            self._relink(con, initial)
            self._step(progress, "order_facts", len(MIRRORS) + 1, total)
            recomputed = self._refacts(con, initial)
            self._recause(con, initial)
            if initial:
                con.execute(
                    "CREATE TABLE replica_meta AS SELECT * FROM (VALUES ('schema_version', ?), ('store', ?)) "
                    "t(name, value)",
                    [str(SCHEMA_VERSION), self._store_id()],
                )
            con.execute("COMMIT")
            self._step(progress, "done", total, total)
        except Exception:
            with suppress(Exception):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()
            if self._exported is not None:
                shutil.rmtree(self._exported, ignore_errors=True)
                self._exported = None
        return SyncReport(initial, time.perf_counter() - started, rows, deleted, recomputed)

    def _drop_all(self, con: Any) -> None:
        for name in [
            *(m.table for m in MIRRORS),
            "order_facts",
            "contact_links",
            "feedback_causes",
            "customer_orders",
            "sessions",
            "session_days",
            "sync_state",
            "replica_meta",
        ]:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        for m in MIRRORS:
            con.execute(f"DROP TABLE IF EXISTS seen_{m.table}")
        con.execute("CREATE TABLE sync_state (mirror VARCHAR PRIMARY KEY, marker VARCHAR)")

    def _watermark(self, con: Any, m: Mirror) -> Any:
        row = con.execute("SELECT marker FROM sync_state WHERE mirror = ?", [m.table]).fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.fromisoformat(row[0]) if m.marker_is_time else int(row[0])

    def _pull(self, con: Any, m: Mirror, initial: bool) -> int:
        """Reads the rows of `m` changed since its watermark into the replica; returns how many changed."""
        started_at = datetime.now(UTC).replace(tzinfo=None)
        where = [m.where] if m.where else []
        mark = None if initial else self._watermark(con, m)
        if mark is not None:
            low = mark - OVERLAP if m.marker_is_time else mark - OVERLAP_IDS
            where.append(f"{m.marker} >= {self._literal(m, low)}")
        select = self._source(con, m, " AND ".join(where))
        key_eq = " AND ".join(f"t.{k} = c.{k}" for k in m.key)
        if initial:
            order = f" ORDER BY {m.sort}" if m.sort else ""
            con.execute(f"CREATE TABLE {m.table} AS {select}{order}")
            changed = con.execute(f"SELECT count(*) FROM {m.table}").fetchone()[0]
            src = m.table
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE delta AS {select}")
            if m.immutable:
                # rows never change: a row is new unless the last sync read it (`seen_<table>`, its whole read:
                # a row in this overlap that existed then was in that read too). After the initial build, which
                # keeps no such record, compare the overlap with the mirror (its ids are not sorted: a scan of
                # every id, ~0.1 s for 10M)
                (k,) = m.key
                seen = f"seen_{m.table}"
                if self._exists(con, seen):
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE changed AS SELECT * FROM delta "
                        f"WHERE {k} NOT IN (SELECT {k} FROM {seen})"
                    )
                else:
                    low = self._literal(m, mark - OVERLAP_IDS) if mark is not None else None
                    within = f" WHERE {k} >= {low}" if low is not None else ""
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE changed AS SELECT * FROM delta "
                        f"WHERE {k} NOT IN (SELECT {k} FROM {m.table}{within})"
                    )
                    con.execute(f"CREATE TABLE {seen} ({k} {dict(m.columns)[k]})")
                con.execute(f"DELETE FROM {seen}")
                con.execute(f"INSERT INTO {seen} SELECT {k} FROM delta")
            else:
                # the overlap re-reads up to thousands of rows that the last sync already applied: first drop
                # those identical to what it read (`seen_<table>`, a few thousand rows), and compare only the
                # rest with the mirror (a semi join scanning its million keys, ~0.1 s a table)
                seen = f"seen_{m.table}"
                con.execute(f"CREATE TABLE IF NOT EXISTS {seen} AS SELECT * FROM {m.table} LIMIT 0")
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE fresh AS SELECT * FROM delta EXCEPT SELECT * FROM {seen}"
                )
                if self._any(con, "fresh"):
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE changed AS SELECT * FROM fresh EXCEPT "
                        f"SELECT t.* FROM {m.table} t SEMI JOIN fresh c ON {key_eq}"
                    )
                else:
                    con.execute("CREATE OR REPLACE TEMP TABLE changed AS SELECT * FROM fresh")
                con.execute(f"DELETE FROM {seen}")
                con.execute(f"INSERT INTO {seen} SELECT * FROM delta")
            changed = con.execute("SELECT count(*) FROM changed").fetchone()[0]
            src = "changed"
            if changed:
                if not m.immutable:
                    # the replaced rows' order and customer are touched too (a row can move to another order)
                    self._touch(con, m, f"(SELECT t.* FROM {m.table} t SEMI JOIN changed c ON {key_eq})")
                    con.execute(f"DELETE FROM {m.table} t USING changed c WHERE {key_eq}")
                con.execute(f"INSERT INTO {m.table} SELECT * FROM changed")
        if changed and not initial:
            self._touch(con, m, src)
        if m.table == "customers" and changed and not initial:
            self._follow_merges(con)
        if m.table == "customer_events":
            self._roll_up_sessions(con, initial, changed)
        hi = con.execute(f"SELECT max({m.marker}) FROM {'delta' if not initial else m.table}").fetchone()[0]
        if (
            hi is None
            and mark is None
            and m.marker_is_time
            and (initial or changed or self._any(con, "delta"))
        ):
            # rows written before their table had a change marker (recorded_at NULL): they are all read now,
            # and anything written later is stamped after this moment (wall clock, like recorded_at)
            hi = started_at
        if hi is not None and (mark is None or hi > mark):
            value = hi.isoformat() if m.marker_is_time else str(hi)
            con.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)", [m.table, value])
        return int(changed)

    def _source(self, con: Any, m: Mirror, where: str) -> str:
        """A DuckDB SELECT of `m`'s rows matching `where`, typed as the replica keeps them."""
        if not self.is_sqlite:
            return self._store_select(m, where)
        if self._exported is not None:  # the initial build: read by the child process
            return f"SELECT * FROM read_parquet('{_quote(str(self._exported / m.table))}.parquet')"
        self._load_rows(con, "delta_in", list(m.columns), self._store_rows(self._store_sql(m, where)))
        return "SELECT * FROM delta_in"

    def _roll_up_sessions(self, con: Any, initial: bool, changed: int) -> None:
        """Keeps `sessions` (calls per session and customer) up to date: new calls are rolled up and merged
        with their session's row (calls never change once logged, so merging is exact). Then the day rollup
        (`session_days`) of the days those sessions were or are on."""
        if initial:
            con.execute(
                f"CREATE TABLE sessions AS {_with_rolled_day(session_rollup('customer_events'))} "
                "ORDER BY first_at"
            )
            con.execute(f"CREATE TABLE session_days AS {session_days_select('TRUE')} ORDER BY day")
            return
        if not changed:
            return
        con.execute(f"CREATE OR REPLACE TEMP TABLE s_new AS {session_rollup('changed')}")
        con.execute("CREATE OR REPLACE TEMP TABLE s_ids AS SELECT DISTINCT session_id FROM s_new")
        flags = ", ".join(f"MAX({k}) AS {k}" for k in SESSION_FLAGS)
        # every customer's row of the touched session ids: a session's day is that of all its calls
        self._reroll_sessions(
            con,
            "SELECT session_id, customer_id, MIN(first_at) AS first_at, MAX(last_at) AS last_at, "
            "MIN(campaign_source) AS campaign_source, "
            f"SUM(product_views) AS product_views, {flags} FROM ("
            "SELECT * EXCLUDE (rolled_day) FROM sessions WHERE session_id IN (SELECT session_id FROM s_ids) "
            "UNION ALL SELECT * FROM s_new) GROUP BY session_id, customer_id",
        )

    def _follow_merges(self, con: Any) -> None:
        """Profiles merged since the last sync: the store moved their calls to the survivor (customers'
        `move_merged`) without a change marker on the calls, so the replica moves them too, and re-rolls their
        sessions under the survivor. Chains (a into b, b into c) end at the last survivor."""
        con.execute(
            "CREATE OR REPLACE TEMP TABLE moved AS SELECT id AS loser, merged_into AS survivor FROM changed "
            "WHERE merged_into IS NOT NULL"
        )
        if not self._any(con, "moved"):
            return
        for _ in range(5):
            con.execute(
                "UPDATE moved SET survivor = c.merged_into FROM customers c "
                "WHERE moved.survivor = c.id AND c.merged_into IS NOT NULL AND c.merged_into <> moved.loser"
            )
        con.execute(
            "UPDATE customer_events SET customer_id = m.survivor FROM moved m "
            "WHERE customer_events.customer_id = m.loser"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE s_ids AS SELECT DISTINCT session_id FROM sessions "
            "WHERE customer_id IN (SELECT loser FROM moved)"
        )
        if self._any(con, "s_ids"):
            flags = ", ".join(f"MAX({k}) AS {k}" for k in SESSION_FLAGS)
            self._reroll_sessions(
                con,
                "SELECT session_id, customer_id, MIN(first_at) AS first_at, MAX(last_at) AS last_at, "
                f"MIN(campaign_source) AS campaign_source, SUM(product_views) AS product_views, {flags} FROM ("
                "SELECT s.* EXCLUDE (rolled_day, customer_id), COALESCE(m.survivor, s.customer_id) AS customer_id "
                "FROM sessions s LEFT JOIN moved m ON s.customer_id = m.loser "
                "WHERE s.session_id IN (SELECT session_id FROM s_ids)) GROUP BY session_id, customer_id",
            )
        con.execute("INSERT INTO t_customers SELECT survivor FROM moved")

    def _reroll_sessions(self, con: Any, rows: str) -> None:
        """Replaces the `sessions` rows of the session ids in `s_ids` with `rows` (their new rows, without
        rolled_day) and brings `session_days` up to date for the days they were and are rolled up on."""
        con.execute(
            "CREATE OR REPLACE TEMP TABLE s_dirty AS SELECT DISTINCT rolled_day AS day FROM sessions "
            "WHERE session_id IN (SELECT session_id FROM s_ids) AND rolled_day IS NOT NULL"
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE s_final AS {_with_rolled_day(rows)}")
        con.execute("DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM s_ids)")
        con.execute("INSERT INTO sessions SELECT * FROM s_final")
        con.execute(
            "INSERT INTO s_dirty SELECT DISTINCT rolled_day FROM s_final WHERE rolled_day IS NOT NULL"
        )
        if self._any(con, "s_dirty"):
            con.execute("DELETE FROM session_days WHERE day IN (SELECT day FROM s_dirty)")
            con.execute(
                f"INSERT INTO session_days {session_days_select('rolled_day IN (SELECT day FROM s_dirty)')}"
            )

    @staticmethod
    def _exists(con: Any, table: str) -> bool:
        return bool(
            con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [table]
            ).fetchone()[0]
        )

    @staticmethod
    def _any(con: Any, table: str) -> bool:
        return con.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]

    def _touch(self, con: Any, m: Mirror, rows: str) -> None:
        if m.order_key:
            con.execute(
                f"INSERT INTO t_orders SELECT {m.order_key} FROM {rows} WHERE {m.order_key} IS NOT NULL"
            )
        if m.customer_key:
            con.execute(
                f"INSERT INTO t_customers SELECT {m.customer_key} FROM {rows} WHERE {m.customer_key} IS NOT NULL"
            )
        if m.table == "conversations":
            con.execute(f"INSERT INTO t_conversations SELECT id FROM {rows}")
        if m.table == "feedback":
            con.execute(f"INSERT INTO t_feedback SELECT id FROM {rows}")

    def _reconcile_deletes(self, con: Any) -> dict[str, int]:
        """Deletes from the replica what the store no longer has (found by counting, then by keys)."""
        deleted: dict[str, int] = {}
        for table in COUNTED:
            m = BY_NAME[table]
            theirs = self._scalar(con, f"SELECT count(*) AS n FROM {table}")
            ours = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if theirs == ours:
                continue
            key = m.key[0]
            if self.is_sqlite:  # the keys compared in Python: loading 1M keys into DuckDB row by row is slow
                live = {r[0] for r in self._store_rows(f"SELECT {key} FROM {table}")}
                gone = [
                    r[0] for r in con.execute(f"SELECT {key} FROM {table}").fetchall() if r[0] not in live
                ]
                self._load_rows(con, "gone_keys", [(key, "VARCHAR")], [(g,) for g in gone])
            else:
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE live AS SELECT CAST({key} AS VARCHAR) AS {key} "
                    f"FROM {self._store_query(f'SELECT {key} FROM {table}')}"
                )
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE gone_keys AS SELECT t.{key} FROM {table} t "
                    f"ANTI JOIN live l ON l.{key} = t.{key}"
                )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE gone AS SELECT t.* FROM {table} t "
                f"SEMI JOIN gone_keys g ON g.{key} = t.{key}"
            )
            deleted[table] = self._delete_gone(con, m, "gone")
        return {k: v for k, v in deleted.items() if v}

    def _delete_gone(self, con: Any, m: Mirror, gone: str) -> int:
        n = con.execute(f"SELECT count(*) FROM {gone}").fetchone()[0]
        if not n:
            return 0
        self._touch(con, m, gone)
        key = m.key[0]
        for child, column in CASCADES.get(m.table, []):
            c = BY_NAME[child]
            name = f"gone_{child}"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT t.* FROM {child} t "
                f"WHERE t.{column} IN (SELECT {key} FROM {gone})"
            )
            self._delete_gone(con, c, name)
        if m.table == "customers":  # their sessions go with their calls; a shared session id keeps the rest
            con.execute(
                "CREATE OR REPLACE TEMP TABLE s_ids AS SELECT DISTINCT session_id FROM sessions "
                f"WHERE customer_id IN (SELECT {key} FROM {gone})"
            )
            if self._any(con, "s_ids"):
                self._reroll_sessions(
                    con,
                    "SELECT * EXCLUDE (rolled_day) FROM sessions WHERE session_id IN (SELECT session_id FROM "
                    f"s_ids) AND (customer_id IS NULL OR customer_id NOT IN (SELECT {key} FROM {gone}))",
                )
        con.execute(f"DELETE FROM {m.table} WHERE {key} IN (SELECT {key} FROM {gone})")
        return int(n)

    def _relink(self, con: Any, initial: bool) -> None:
        """Contact links of every conversation of a touched customer, and of every touched conversation."""
        d = REPLICA_DIALECT
        if initial:  # upstream_cause is filled in by _recause, once the orders' facts are there
            con.execute(
                f"CREATE TABLE contact_links AS SELECT *, CAST(NULL AS VARCHAR) AS upstream_cause "
                f"FROM ({contact_links_select(d)})"
            )
            return
        con.execute("CREATE OR REPLACE TEMP TABLE t_recause (id VARCHAR)")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE relink AS SELECT id FROM conversations "
            "WHERE customer_id IN (SELECT id FROM t_customers) UNION SELECT id FROM t_conversations"
        )
        if not con.execute("SELECT count(*) FROM relink").fetchone()[0]:
            return
        con.execute("INSERT INTO t_recause SELECT id FROM relink")
        con.execute(
            "INSERT INTO t_orders SELECT order_id FROM contact_links "
            "WHERE id IN (SELECT id FROM relink) AND order_id IS NOT NULL"
        )
        con.execute("DELETE FROM contact_links WHERE id IN (SELECT id FROM relink)")
        con.execute(
            f"INSERT INTO contact_links BY NAME {contact_links_select(d, scope='SELECT id FROM relink')}"
        )
        con.execute(
            "INSERT INTO t_orders SELECT order_id FROM contact_links "
            "WHERE id IN (SELECT id FROM relink) AND order_id IS NOT NULL"
        )

    def _refacts(self, con: Any, initial: bool) -> int:
        """Recomputes the facts of touched orders, and the order span of touched customers."""
        d = REPLICA_DIALECT
        span = "SELECT customer_id, MIN(placed_at) AS first_placed_at, MAX(placed_at) AS last_placed_at FROM orders"
        if initial:
            con.execute(f"CREATE TABLE customer_orders AS {span} GROUP BY customer_id")
            facts = order_facts_select(d, "1 = 1", None, join_customers=False)
            con.execute(
                f"CREATE TABLE order_facts AS {_with_customer_span(facts, 'customer_orders')} ORDER BY placed_at"
            )
            return int(con.execute("SELECT count(*) FROM order_facts").fetchone()[0])
        if self._any(con, "t_customers"):  # (an empty IN list still scans the tables)
            con.execute("DELETE FROM customer_orders WHERE customer_id IN (SELECT id FROM t_customers)")
            con.execute(
                f"INSERT INTO customer_orders {span} WHERE customer_id IN (SELECT id FROM t_customers) "
                "GROUP BY customer_id"
            )
        con.execute("CREATE OR REPLACE TEMP TABLE refacts AS SELECT DISTINCT id FROM t_orders")
        if self._any(con, "t_customers"):
            # a customer's new (or gone) order changes whether their other orders have an earlier or later one:
            # those orders' kept facts are copied with the two flags recomputed (found by the indexes; their
            # facts and causes are otherwise unchanged)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE reflag_ids AS SELECT id FROM orders WHERE customer_id IN "
                "(SELECT id FROM t_customers) EXCEPT SELECT id FROM refacts"
            )
            con.execute(
                "CREATE OR REPLACE TEMP TABLE reflag AS SELECT f.* REPLACE ("
                "CAST(COALESCE(co.first_placed_at < f.placed_at, FALSE) AS INTEGER) AS has_earlier, "
                "CAST(COALESCE(co.last_placed_at > f.placed_at, FALSE) AS INTEGER) AS has_later) "
                "FROM (SELECT * FROM order_facts WHERE id IN (SELECT id FROM reflag_ids)) f "
                "JOIN (SELECT * FROM customer_orders WHERE customer_id IN (SELECT id FROM t_customers)) co "
                "ON co.customer_id = f.customer_id "
                "WHERE f.has_earlier <> CAST(COALESCE(co.first_placed_at < f.placed_at, FALSE) AS INTEGER) "
                "OR f.has_later <> CAST(COALESCE(co.last_placed_at > f.placed_at, FALSE) AS INTEGER)"
            )
            if self._any(con, "reflag"):
                con.execute("DELETE FROM order_facts WHERE id IN (SELECT id FROM reflag)")
                con.execute("INSERT INTO order_facts SELECT * FROM reflag")
        n = con.execute("SELECT count(*) FROM refacts").fetchone()[0]
        if n:
            con.execute("DELETE FROM order_facts WHERE id IN (SELECT id FROM refacts)")
            scope = "SELECT id FROM refacts"
            facts = order_facts_select(d, f"o.id IN ({scope})", scope, join_customers=False)
            spans = (
                "(SELECT * FROM customer_orders WHERE customer_id IN "
                f"(SELECT customer_id FROM orders WHERE id IN ({scope})))"
            )
            con.execute(f"INSERT INTO order_facts {_with_customer_span(facts, spans)}")
        return int(n)

    def _recause(self, con: Any, initial: bool) -> None:
        """The cause of each contact (`contact_links.upstream_cause`) and of each review (`feedback_causes`): the
        dashboard's cause CASE over the linked order's facts. It depends on the contact's own row and its order's
        facts only, so it is recomputed for relinked contacts, changed reviews, and those of recomputed orders."""
        d = REPLICA_DIALECT
        contact = contact_cause_sql(d)
        review = feedback_cause_sql(d)
        fb_cols = "x.id, x.customer_id, x.order_id, x.kind, x.csat, x.nps, x.rating, x.topic, x.submitted_at"
        if initial:
            con.execute(
                "CREATE OR REPLACE TABLE contact_links AS SELECT x.* EXCLUDE (upstream_cause), "
                f"{contact} AS upstream_cause FROM contact_links x LEFT JOIN order_facts f ON f.id = x.order_id "
                "ORDER BY x.opened_at"
            )
            con.execute(
                f"CREATE TABLE feedback_causes AS SELECT {fb_cols}, {review} AS cause FROM feedback x "
                "LEFT JOIN order_facts f ON f.id = x.order_id ORDER BY x.submitted_at"
            )
            for table, column in INDEXES:
                con.execute(f"CREATE INDEX ix_{table}_{column} ON {table} ({column})")
            return
        if not any(self._any(con, t) for t in ("refacts", "t_feedback", "t_recause")):
            return
        # contacts: relinked ones (t_recause), and those linked to an order whose facts were recomputed. The
        # rows in scope and their orders' facts are selected first (order_facts by its index): joining
        # contact_links to the million order facts and filtering afterwards took 0.15-0.2 s a statement
        con.execute(
            "CREATE OR REPLACE TEMP TABLE recause AS SELECT * FROM contact_links WHERE id IN ("
            "SELECT id FROM t_recause UNION SELECT id FROM contact_links WHERE order_id IN (SELECT id FROM refacts))"
        )
        if self._any(con, "recause"):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE recaused AS SELECT x.id, {contact} AS cause FROM recause x "
                "LEFT JOIN (SELECT * FROM order_facts WHERE id IN (SELECT order_id FROM recause)) f "
                "ON f.id = x.order_id"
            )
            con.execute(
                "UPDATE contact_links SET upstream_cause = c.cause FROM recaused c WHERE contact_links.id = c.id"
            )
        # reviews: changed or gone ones (t_feedback), and those about an order whose facts were recomputed (a
        # review that moved off an order is in t_feedback)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE refb AS SELECT * FROM feedback WHERE id IN (SELECT id FROM t_feedback) "
            "OR order_id IN (SELECT id FROM refacts)"
        )
        con.execute(
            "DELETE FROM feedback_causes WHERE id IN (SELECT id FROM t_feedback UNION SELECT id FROM refb)"
        )
        if self._any(con, "refb"):
            con.execute(
                f"INSERT INTO feedback_causes SELECT {fb_cols}, {review} AS cause FROM refb x "
                "LEFT JOIN (SELECT * FROM order_facts WHERE id IN (SELECT order_id FROM refb)) f "
                "ON f.id = x.order_id"
            )

    # ---- checks --------------------------------------------------------------------------------------

    def count(self, table: str, where: str = "1 = 1") -> int:
        """Rows of a replica table (for checks and tests)."""
        cur = self._db.cursor()
        try:
            row = cur.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
            return int(row[0]) if row else 0
        finally:
            cur.close()


def open_replica(database_url: str, *, var_dir: Path | None, threads: int | None = None) -> Replica:
    """The replica in a file under var_dir (`analytics/replica.duckdb`); in memory when var_dir is None or
    when another process holds the file (one writer per DuckDB file: with `doorstep serve --workers N` the
    first process keeps the file, the others build their own copy in memory; see Replica._connect)."""
    path = None if var_dir is None else Path(var_dir) / "analytics" / "replica.duckdb"
    return Replica(database_url, path=path, threads=threads)


def _with_customer_span(facts: str, spans: str) -> str:
    """Order facts with whether the customer has an earlier order (`has_earlier`: the repeat-purchase rate) and a
    later one (`has_later`: downstream), from their first and last order (`spans`, rows of customer_orders): the
    same answers as the plain path's EXISTS over all the customer's orders, kept per order by the sync (every
    order of a customer whose orders changed is recomputed) instead of a join by customer per computation."""
    return f"""
        SELECT x.*, CAST(COALESCE(co.first_placed_at < x.placed_at, FALSE) AS INTEGER) AS has_earlier,
               CAST(COALESCE(co.last_placed_at > x.placed_at, FALSE) AS INTEGER) AS has_later
        FROM ({facts}) x LEFT JOIN {spans} co ON co.customer_id = x.customer_id"""


def _with_rolled_day(rows: str) -> str:
    """`rows` (sessions rows) with `rolled_day`: the UTC day all the calls of the session id fall on (every
    customer's rows of it), NULL when they span two days."""
    return f"""
        WITH r AS ({rows})
        SELECT r.*, g.rolled_day FROM r JOIN (
          SELECT session_id, CASE WHEN CAST(MIN(first_at) AS DATE) = CAST(MAX(last_at) AS DATE)
                                  THEN CAST(MIN(first_at) AS DATE) END AS rolled_day
          FROM r GROUP BY session_id) g ON g.session_id = r.session_id"""


def session_days_select(where: str) -> str:
    """The day rollup of sessions: per UTC day and campaign source, the session ids rolled up on that day (see
    sql.session_events_select), what the events metrics count of them. A session id's source is the least of
    its customers' rows, as `sessions_by_source` takes it."""
    flags = ", ".join(f"MAX({k}) AS {k}" for k in SESSION_FLAGS)
    return f"""
        SELECT rolled_day AS day, campaign_source AS source, COUNT(*) AS sessions,
               CAST(SUM(product_views) AS BIGINT) AS product_views,
               CAST(SUM(has_view) AS BIGINT) AS view_sessions, CAST(SUM(has_add) AS BIGINT) AS add_sessions,
               CAST(SUM(has_checkout) AS BIGINT) AS checkout_sessions,
               CAST(SUM(has_complete) AS BIGINT) AS completed_sessions
        FROM (SELECT session_id, rolled_day, MIN(campaign_source) AS campaign_source,
                     SUM(product_views) AS product_views, {flags}
              FROM sessions WHERE rolled_day IS NOT NULL AND {where} GROUP BY session_id, rolled_day) q
        GROUP BY 1, 2"""


def _quote(value: str) -> str:
    return value.replace("'", "''")
