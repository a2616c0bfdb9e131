"""A fast bulk loader of benchmark data for the dashboard: 1,000,000 orders and 10,000,000 customer events.

It BYPASSES INGEST on purpose: rows are generated with numpy and written straight into the store's tables with
sqlite3 executemany (synchronous off while loading), so a store of this size builds in minutes instead of
hours. The shapes follow the projections the domains write (customer_events as the Segment projection,
orders/order_lines/order_steps, shipments, returns, conversations, feedback); the numbers are plausible, not
a simulation (the simulator's world replaces this when it lands).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from doorstep.db.migrate import upgrade

SOURCES = np.array(["google", "newsletter", "facebook", "instagram", "affiliate", ""], dtype=object)
CARRIERS = np.array(["dhl", "ups", "dpd", "gls", "royalmail"], dtype=object)
REGIONS = np.array(["north", "south", "east", "west", "london", "scotland", "wales"], dtype=object)
CATEGORIES = np.array(["shoes", "bags", "shirts", "coats", "accessories", "dresses"], dtype=object)
CHANNELS = np.array(["web", "app", "marketplace"], dtype=object)
EVENT_NAMES = np.array(
    ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", None], dtype=object
)
REASONS = np.array(
    ["wismo", "delivery_change", "return_status", "refund", "product_question", "invoice"], dtype=object
)
RETURN_REASONS = np.array(
    ["fit.too_small", "fit.too_large", "damaged.in_transit", "wrong_item", "changed_mind"], dtype=object
)
TOPICS = np.array(["delivery", "returns", "product", "service", "price", "other"], dtype=object)
CHUNK = 200_000


def _ts(base: datetime, seconds: np.ndarray) -> np.ndarray:
    """Seconds after `base` as SQLAlchemy's SQLite DATETIME text ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    b = np.datetime64(base.replace(tzinfo=None), "us")
    values = b + (seconds * 1_000_000).astype("int64").astype("timedelta64[us]")
    return np.char.replace(np.datetime_as_string(values, unit="us"), "T", " ").astype(object)


def _ts_or_null(base: datetime, seconds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = _ts(base, np.where(mask, seconds, 0.0))
    out[~mask] = None
    return out


def _uuids(prefix: str, n: int, offset: int = 0) -> np.ndarray:
    # deterministic, uuid-shaped, cheap: 8-4-4-4-12 from a counter
    return np.array(
        [f"{prefix}{i:07x}-0000-7000-8000-{i:012x}" for i in range(offset, offset + n)], dtype=object
    )


def build(
    path: Path,
    *,
    orders: int = 1_000_000,
    events: int = 10_000_000,
    days: int = 365,
    now: datetime | None = None,
    seed: int = 7,
    progress: Callable[[str, int], None] | None = None,
) -> None:
    """Creates (or replaces) a migrated SQLite store at `path` filled with benchmark data."""
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    upgrade(f"sqlite:///{path}")
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    say = progress or (lambda what, n: None)
    span = days * 86400.0

    n_cust = max(orders * 3 // 10, 10)
    cust_ids = _uuids("c", n_cust)
    first_seen = np.sort(rng.uniform(-30 * 86400, span, n_cust))
    cust_region = REGIONS[rng.integers(0, len(REGIONS), n_cust)]
    fs = _ts(start, first_seen)
    conn.executemany(
        "INSERT INTO customers (id, email, name, region, country, preferred_channels, traits, first_seen_at, "
        "last_seen_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'GB', '[\"email\"]', '{}', ?, ?, ?, ?)",
        (
            (cust_ids[i], f"c{i}@example.com", f"Customer {i}", cust_region[i], fs[i], fs[i], fs[i], fs[i])
            for i in range(n_cust)
        ),
    )
    conn.commit()
    say("customers", n_cust)

    for lo in range(0, orders, CHUNK):
        n = min(CHUNK, orders - lo)
        oid = _uuids("a", n, lo)
        cidx = rng.integers(0, n_cust, n)  # ~3 orders per customer on average, a few with many
        earliest = np.maximum(first_seen[cidx] + 60, 0.0)  # never before the customer was first seen
        placed_s = earliest + rng.random(n) * (span - 60 - earliest)
        total = rng.integers(1500, 25000, n)
        channel = CHANNELS[rng.integers(0, 3, n)]
        region = cust_region[cidx]
        cancelled = rng.random(n) < 0.02
        dispatch_h = rng.gamma(2.0, 7.0, n)
        promise_h = rng.choice([48.0, 72.0, 96.0], n)
        late = rng.random(n) < 0.12
        deliver_h = np.where(late, promise_h + rng.gamma(1.5, 20.0, n), promise_h - rng.uniform(1, 40, n))
        deliver_h = np.maximum(deliver_h, dispatch_h + 6)
        failed = rng.random(n) < 0.06
        first_attempt_h = np.where(failed, deliver_h - 24.0, deliver_h)
        is_dispatched = ~cancelled & (placed_s + dispatch_h * 3600 < span)
        is_delivered = is_dispatched & (placed_s + deliver_h * 3600 < span)
        lost = is_dispatched & ~is_delivered & (rng.random(n) < 0.01)
        placed = _ts(start, placed_s)
        promised = _ts(start, placed_s + promise_h * 3600)
        dispatched = _ts_or_null(start, placed_s + dispatch_h * 3600, is_dispatched)
        delivered = _ts_or_null(start, placed_s + deliver_h * 3600, is_delivered)
        attempted = _ts_or_null(start, placed_s + first_attempt_h * 3600, is_delivered)
        invoiced = _ts_or_null(start, placed_s + deliver_h * 3600 + 600, is_delivered)
        carrier = CARRIERS[rng.integers(0, len(CARRIERS), n)]
        category = CATEGORIES[rng.integers(0, len(CATEGORIES), n)]
        status = np.where(
            cancelled,
            "cancelled",
            np.where(is_delivered, "delivered", np.where(is_dispatched, "dispatched", "placed")),
        )
        conn.executemany(
            "INSERT INTO orders (id, external_id, customer_id, status, currency, total_minor, shipping_minor, "
            "tax_minor, discount_minor, channel, ship_region, ship_country, promised_to, placed_at, properties, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, 'EUR', ?, 0, 0, 0, ?, ?, 'GB', ?, ?, '{}', ?, ?)",
            (
                (
                    oid[i],
                    f"#{lo + i}",
                    cust_ids[cidx[i]],
                    status[i],
                    int(total[i]),
                    channel[i],
                    region[i],
                    promised[i],
                    placed[i],
                    placed[i],
                    placed[i],
                )
                for i in range(n)
            ),
        )
        conn.executemany(
            "INSERT INTO order_lines (order_id, line_no, product_id, category, quantity, unit_price_minor) "
            "VALUES (?, 1, ?, ?, 1, ?)",
            ((oid[i], f"p-{category[i]}-{i % 50}", category[i], int(total[i])) for i in range(n)),
        )
        conn.executemany(
            "INSERT INTO order_steps (order_id, step, occurred_at) VALUES (?, 'placed', ?)",
            ((oid[i], placed[i]) for i in range(n)),
        )
        conn.executemany(
            "INSERT INTO order_steps (order_id, step, occurred_at) VALUES (?, 'invoiced', ?)",
            ((oid[i], invoiced[i]) for i in range(n) if invoiced[i] is not None),
        )
        conn.executemany(
            "INSERT INTO shipments (id, order_id, carrier, tracking_number, is_return, status, subtag, "
            "destination_region, promised_to, dispatched_at, first_attempt_at, delivered_at, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    f"s{oid[i][1:]}",
                    oid[i],
                    carrier[i],
                    f"TN{lo + i:09d}",
                    "Delivered" if is_delivered[i] else ("Expired" if lost[i] else "InTransit"),
                    "lost" if lost[i] else None,
                    region[i],
                    promised[i],
                    dispatched[i],
                    attempted[i],
                    delivered[i],
                    placed[i],
                    placed[i],
                )
                for i in range(n)
                if not cancelled[i]
            ),
        )
        # after purchase: returns, contacts, feedback (only for delivered orders)
        ret = is_delivered & (rng.random(n) < 0.08)
        ret_at = _ts(start, np.minimum(placed_s + deliver_h * 3600 + rng.uniform(1, 10, n) * 86400, span - 1))
        ret_reason = RETURN_REASONS[rng.integers(0, len(RETURN_REASONS), n)]
        conn.executemany(
            "INSERT INTO returns (id, order_id, customer_id, status, resolution, method, reason_code, "
            "requested_at, updated_at, steps) VALUES (?, ?, ?, 'requested', 'refund', 'drop_off', ?, ?, ?, '[]')",
            (
                (f"r{oid[i][1:]}", oid[i], cust_ids[cidx[i]], ret_reason[i], ret_at[i], ret_at[i])
                for i in range(n)
                if ret[i]
            ),
        )
        contact_p = np.where(late, 0.35, 0.06) + np.where(failed, 0.2, 0.0)
        con = is_dispatched & (rng.random(n) < contact_p)
        con_at = _ts(start, np.minimum(placed_s + rng.uniform(24, 120, n) * 3600, span - 1))
        reason = np.where(late, "wismo", REASONS[rng.integers(0, len(REASONS), n)])
        conn.executemany(
            "INSERT INTO conversations (id, customer_id, channel, status, order_id, contact_reason, intent, "
            "is_verified, urgency, state, opened_at, updated_at) "
            "VALUES (?, ?, 'whatsapp', 'resolved', ?, ?, ?, 1, 0, '{}', ?, ?)",
            (
                (
                    f"v{oid[i][1:]}",
                    cust_ids[cidx[i]],
                    oid[i] if i % 3 else None,
                    reason[i],
                    reason[i],
                    con_at[i],
                    con_at[i],
                )
                for i in range(n)
                if con[i]
            ),
        )
        fb = is_delivered & (rng.random(n) < 0.25)
        fb_at = _ts(start, np.minimum(placed_s + deliver_h * 3600 + 3 * 86400, span - 1))
        score = np.clip(np.round(rng.normal(np.where(late, 2.6, 4.3), 0.9)), 1, 5).astype(int)
        nps = np.clip(score * 2 + rng.integers(-1, 1, n), 0, 10)
        topic = np.where(late, "delivery", TOPICS[rng.integers(0, len(TOPICS), n)])
        is_review = rng.random(n) < 0.4
        conn.executemany(
            "INSERT INTO feedback (id, customer_id, order_id, kind, csat, nps, rating, topic, source, "
            "submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'bench', ?)",
            (
                (
                    f"f{oid[i][1:]}",
                    cust_ids[cidx[i]],
                    oid[i],
                    "review" if is_review[i] else "survey",
                    None if is_review[i] else int(score[i]),
                    None if is_review[i] else int(nps[i]),
                    int(score[i]) if is_review[i] else None,
                    topic[i],
                    fb_at[i],
                )
                for i in range(n)
                if fb[i]
            ),
        )
        conn.commit()
        say("orders", n)

    # events: sessions of ~5 calls, spread over the year, by customers weighted like orders
    log_id = 0
    for lo in range(0, events, CHUNK * 5):
        n = min(CHUNK * 5, events - lo)
        n_sessions = n // 5 + 1
        sess_cust = rng.integers(0, n_cust, n_sessions)
        sess_from = np.maximum(first_seen[sess_cust], 0.0)
        sess_start = sess_from + rng.random(n_sessions) * (span - 600 - sess_from)
        sess_src = SOURCES[rng.integers(0, len(SOURCES), n_sessions)]
        idx = np.arange(n) // 5
        step = np.arange(n) % 5
        # funnel: view always, then add/checkout/complete with falling odds; a page call otherwise
        depth = rng.random(n_sessions)[idx]  # how far down the funnel this session goes
        keep = depth < np.array([1.0, 0.35, 0.2, 0.12, 1.0])[step]
        name = EVENT_NAMES[np.where(keep, np.where(step == 4, 4, step), 4)]
        kind = np.where(name == None, "page", "track")  # noqa: E711 - numpy elementwise comparison
        at = _ts(start, np.minimum(sess_start[idx] + step * 45.0, span - 1))
        sess = np.array([f"sess-{lo // 5 + i}" for i in range(n_sessions)], dtype=object)
        conn.executemany(
            "INSERT INTO customer_events (log_id, customer_id, type, name, occurred_at, session_id, "
            "campaign_source) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    log_id + i + 1,
                    cust_ids[sess_cust[idx[i]]],
                    kind[i],
                    name[i],
                    at[i],
                    sess[idx[i]],
                    sess_src[idx[i]] or None,
                )
                for i in range(n)
            ),
        )
        log_id += n
        conn.commit()
        say("events", n)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("ANALYZE")
    conn.close()


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT max(rowid) FROM {t}").fetchone()[0] or 0
            for t in ("orders", "customer_events", "customers", "shipments", "conversations", "feedback")
        }
    finally:
        conn.close()


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(size, n - lo)


__all__ = ["build", "counts", "uuid"]
