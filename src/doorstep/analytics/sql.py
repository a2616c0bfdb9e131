"""The dashboard's SQL, written once and rendered for three dialects.

`duckdb` (materialised) runs over the analytics replica (analytics/replica.py); `sqlite` and `postgresql` run
the same statements as plain SQL on the store itself, for the comparison benchmark and as a cross-check in
tests. Only small helpers differ per dialect (time arithmetic, integer division, temporary tables); every
metric's logic is the same text. Where the replica keeps a result instead of recomputing it (per-order facts,
contact links, customers' first and last orders, sessions), the text reads that table instead, and the
replica builds the table with the very same SQL (`order_facts_select`, `contact_links_select`,
`session_rollup`); the tests compare both paths on every metric. Over the replica the events metrics also add
whole days from the day rollup of sessions (`session_days`, see session_events_select), and the repeat and
downstream metrics read per-order flags the sync keeps (`has_earlier`, `has_later`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from doorstep.analytics.model import (
    DISPATCH_SLA_H,
    FAILED_ATTEMPT_WINDOW_H,
    FIRST_ATTEMPT_GRACE_H,
    UNHAPPY_MAX_SCORE,
    WISMO_REASONS,
    Filters,
)

SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite


@dataclass(frozen=True)
class Dialect:
    name: str  # duckdb | sqlite | postgresql
    prefix: str = ""
    # True over the analytics replica: per-order facts and contact links are tables kept up to date by the
    # sync (analytics/replica.py), not aggregated per computation
    materialised: bool = False

    def t(self, table: str) -> str:
        return f"{self.prefix}{table}"

    def p(self, name: str) -> str:
        return f"${name}" if self.name == "duckdb" else f":{name}"

    def bind(self, value: Any) -> Any:
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
            if self.name == "sqlite":
                return value.strftime(SQLITE_TS)
            if self.name == "duckdb":
                return value.replace(tzinfo=None)
        return value

    def hours(self, a: str, b: str) -> str:
        """Hours from b to a (a - b), as a float."""
        if self.name == "duckdb":
            return f"(date_diff('microsecond', {b}, {a}) / 3600000000.0)"
        if self.name == "sqlite":
            return f"((julianday({a}) - julianday({b})) * 24.0)"
        return f"(EXTRACT(EPOCH FROM ({a} - {b})) / 3600.0)"

    def greatest(self, a: str, b: str) -> str:
        return f"MAX({a}, {b})" if self.name == "sqlite" else f"GREATEST({a}, {b})"

    def intdiv(self, a: str, b: str) -> str:
        return f"(({a}) // ({b}))" if self.name == "duckdb" else f"(({a}) / ({b}))"

    def week(self, col: str) -> str:
        if self.name == "duckdb":
            return f"strftime(date_trunc('week', {col}), '%Y-%m-%d')"
        if self.name == "sqlite":
            return f"date({col}, 'weekday 0', '-6 days')"
        return f"to_char(date_trunc('week', {col}), 'YYYY-MM-DD')"

    def is_false(self, col: str) -> str:
        return f"CAST({col} AS INTEGER) = 0"

    def create_temp(self, name: str, select: str, *, view: bool = False) -> list[str]:
        """Statements staging `select` as `name`. `view` (DuckDB): a temp view instead of a table, for a SELECT
        that reads the replica's tables cheaply (zone maps prune it) and that a table would only copy: writing
        150,000 wide rows into a temp table took 0.5-0.9 s, reading the columns a query needs ~10 ms. A view
        takes no parameters, so DuckRunner writes their values into the text (engine.inline_params)."""
        if self.name == "duckdb":
            kind = "VIEW" if view else "TABLE"
            return [f"CREATE OR REPLACE TEMP {kind} {name} AS {select}"]
        if self.name == "sqlite":
            return [f"DROP TABLE IF EXISTS temp.{name}", f"CREATE TEMP TABLE {name} AS {select}"]
        return [f"DROP TABLE IF EXISTS pg_temp.{name}", f"CREATE TEMP TABLE {name} AS {select}"]


def params(d: Dialect, f: Filters, *, now: datetime) -> dict[str, Any]:
    prev = f.previous
    values: dict[str, Any] = {
        "start": f.start,
        "end": f.end,
        "prev_start": prev.start,
        "now": now,
        "carrier": f.carrier,
        "region": f.region,
        "channel": f.channel,
    }
    out = {k: d.bind(v) for k, v in values.items() if v is not None}
    # the whole UTC days inside each period, [lo, hi): day D is inside [a, b) when a <= D and D + 1 day <= b
    for name, (a, b) in {"days_prev": (prev.start, f.start), "days": (f.start, f.end)}.items():
        a, b = a.astimezone(UTC), b.astimezone(UTC)
        lo = a.date() if a == datetime.combine(a.date(), time(), UTC) else a.date() + timedelta(days=1)
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, b.date()
    return out


def cut_predicates(
    d: Dialect,
    f: Filters,
    *,
    order: str = "o",
    ship: str = "s",
    customer: str = "cu",
    period_start: str = "start",
) -> list[str]:
    """The filter cuts on an order (its shipment, its customer). Segment 'new' = first seen in the period."""
    preds = []
    if d.materialised:  # order_facts carries the shipment's carrier and the order's region itself
        ship, region = order, f"{order}.region"
    else:
        region = f"{order}.ship_region"
    if f.carrier:
        preds.append(f"{ship}.carrier = {d.p('carrier')}")
    if f.region:
        preds.append(f"{region} = {d.p('region')}")
    if f.channel:
        preds.append(f"{order}.channel = {d.p('channel')}")
    if f.segment == "new":
        preds.append(f"{customer}.first_seen_at >= {d.p(period_start)}")
    elif f.segment == "returning":
        preds.append(f"{customer}.first_seen_at < {d.p(period_start)}")
    return preds


def _ship(d: Dialect, scope: str = "") -> str:
    return f"""
      SELECT order_id, MIN(carrier) AS carrier, MAX(dispatched_at) AS dispatched_at,
             MAX(promised_to) AS promised_to, MAX(delivered_at) AS delivered_at,
             MIN(first_attempt_at) AS first_attempt_at,
             MAX(CASE WHEN status = 'Expired' OR subtag LIKE '%lost%' THEN 1 ELSE 0 END) AS is_lost
      FROM {d.t("shipments")}
      WHERE {d.is_false("is_return")} AND order_id IS NOT NULL{scope}
      GROUP BY order_id"""


def order_facts_select(
    d: Dialect, order_where: str, scope_ids: str | None, *, join_customers: bool = True
) -> str:
    """One row per order matching `order_where` (over aliases o, s, cu): what happened to it, as data only
    (nothing here depends on `now` or on the filters, so the replica materialises exactly this per order).
    Contacts are linked to orders in `contact_links`. `scope_ids` is a SELECT of order ids covering those
    orders: it keeps each per-order aggregation to them (None: every order, the replica's initial build).
    The replica materialises it without the customers join, which stays at query time."""
    hours = d.hours
    scope = f" AND order_id IN ({scope_ids})" if scope_ids else ""
    customers_join = f"JOIN {d.t('customers')} cu ON cu.id = o.customer_id" if join_customers else ""
    orders = d.t("orders")
    if scope_ids and d.name == "duckdb":  # the replica's sync: the scope's orders first (a few of a million)
        orders = f"(SELECT * FROM {orders} WHERE id IN ({scope_ids}))"
    inner = f"""
    SELECT o.id, o.external_id, o.customer_id, o.placed_at, o.channel, o.ship_region AS region,
           o.total_minor, o.currency,
           CASE WHEN o.status = 'cancelled' OR st.cancelled_at IS NOT NULL THEN 1 ELSE 0 END AS is_cancelled,
           s.carrier,
           COALESCE(s.dispatched_at, st.dispatched_at) AS dispatched_at,
           COALESCE(s.promised_to, o.promised_to) AS promised_to,
           COALESCE(s.delivered_at, st.delivered_at) AS delivered_at,
           s.first_attempt_at, COALESCE(s.is_lost, 0) AS is_lost,
           st.invoiced_at, st.refunded_at,
           COALESCE(cn.n, 0) AS contacts, cn.first_at AS first_contact_at,
           COALESCE(r.n, 0) AS returns, r.first_at AS first_return_at, r.reason AS return_reason,
           r.damaged_at, r.wrong_at,
           fb.min_score, COALESCE(fb.score_sum, 0) AS score_sum, COALESCE(fb.score_n, 0) AS score_n,
           cat.category
    FROM {orders} o
    {customers_join}
    LEFT JOIN ({_ship(d, scope)}) s ON s.order_id = o.id
    LEFT JOIN (
      SELECT order_id,
             MAX(CASE WHEN step = 'dispatched' THEN occurred_at END) AS dispatched_at,
             MAX(CASE WHEN step = 'delivered' THEN occurred_at END) AS delivered_at,
             MAX(CASE WHEN step = 'invoiced' THEN occurred_at END) AS invoiced_at,
             MAX(CASE WHEN step = 'refunded' THEN occurred_at END) AS refunded_at,
             MAX(CASE WHEN step = 'cancelled' THEN occurred_at END) AS cancelled_at
      FROM {d.t("order_steps")}
      WHERE step IN ('dispatched', 'delivered', 'invoiced', 'refunded', 'cancelled'){scope}
      GROUP BY order_id) st ON st.order_id = o.id
    LEFT JOIN (
      SELECT order_id, COUNT(*) AS n, MIN(opened_at) AS first_at FROM contact_links
      WHERE order_id IS NOT NULL{scope} GROUP BY order_id) cn ON cn.order_id = o.id
    LEFT JOIN (
      SELECT order_id, COUNT(*) AS n, MIN(requested_at) AS first_at, MIN(reason_code) AS reason,
             MIN(CASE WHEN reason_code LIKE '%damag%' THEN requested_at END) AS damaged_at,
             MIN(CASE WHEN reason_code LIKE '%wrong%' THEN requested_at END) AS wrong_at
      FROM {d.t("returns")} WHERE 1 = 1{scope} GROUP BY order_id) r ON r.order_id = o.id
    LEFT JOIN (
      SELECT order_id, MIN(COALESCE(csat, rating)) AS min_score, SUM(COALESCE(csat, rating)) AS score_sum,
             COUNT(COALESCE(csat, rating)) AS score_n
      FROM {d.t("feedback")} WHERE order_id IS NOT NULL{scope} GROUP BY order_id) fb ON fb.order_id = o.id
    LEFT JOIN (
      SELECT order_id, MIN(category) AS category FROM {d.t("order_lines")} WHERE 1 = 1{scope}
      GROUP BY order_id) cat
      ON cat.order_id = o.id
    WHERE {order_where}"""
    dispatch_h = hours("x.dispatched_at", "x.placed_at")
    delay_raw = hours("x.delivered_at", "x.promised_to")
    delay = (
        f"CASE WHEN x.delivered_at IS NULL THEN NULL WHEN x.promised_to IS NULL THEN 0.0 "
        f"ELSE {d.greatest(delay_raw, '0.0')} END"
    )
    first_attempt = (
        f"CASE WHEN x.delivered_at IS NULL THEN NULL WHEN x.first_attempt_at IS NULL THEN 1 "
        f"WHEN {hours('x.delivered_at', 'x.first_attempt_at')} <= {FIRST_ATTEMPT_GRACE_H} THEN 1 "
        f"ELSE 0 END"
    )
    return f"""
      SELECT x.*, {dispatch_h} AS dispatch_h, {delay} AS delay_h, {first_attempt} AS is_first_attempt
      FROM ({inner}) x"""


def facts_select(d: Dialect, order_where: str, scope_ids: str) -> str:
    """One row per order matching `order_where` (over aliases o, s, cu): its facts, and where it fell off the
    perfect journey (which depends on `now`: an order not yet dispatched becomes late as time passes).
    From the replica, the facts are read from the materialised `order_facts` (alias o, which carries the
    shipment's carrier too); on the store they are aggregated here."""
    sla = DISPATCH_SLA_H
    if d.materialised:
        # every order has its customer (orders.customer_id is a NOT NULL foreign key, and the replica's sync
        # removes a customer's orders with them), so the join only matters when a cut reads the customer
        join = f"JOIN {d.t('customers')} cu ON cu.id = o.customer_id " if "cu." in order_where else ""
        base = f"SELECT o.* FROM order_facts o {join}WHERE {order_where}"
    else:
        base = order_facts_select(d, order_where, scope_ids)
    return f"""
    SELECT y.*,
      CASE
        WHEN y.is_cancelled = 1 THEN 'cancelled'
        WHEN y.dispatch_h > {sla} OR (y.dispatched_at IS NULL
             AND {d.hours(d.p("now"), "y.placed_at")} > {sla}) THEN 'dispatch_late'
        WHEN y.delivered_at IS NULL THEN 'not_delivered'
        WHEN y.delay_h > 0 THEN 'late'
        WHEN y.is_first_attempt = 0 THEN 'failed_attempt'
        WHEN y.contacts > 0 THEN 'contacted'
        WHEN y.returns > 0 THEN 'returned'
        WHEN y.min_score <= {UNHAPPY_MAX_SCORE} THEN 'unhappy'
        ELSE 'perfect'
      END AS fall_off
    FROM ({base}) y"""


def contact_links_select(d: Dialect, *, scope: str | None = None) -> str:
    """Every conversation with the order it is about: its own order, else the customer's latest order placed
    before the contact (ties on placed_at broken by the larger id, identically in every dialect). `scope`
    (DuckDB only): a SELECT of the conversation ids to link, for the replica's incremental sync."""
    if d.name == "duckdb":
        in_scope = f" AND id IN ({scope})" if scope else ""
        # the scope's conversations first: the ASOF join then matches a handful of rows, not all of them
        convs = (
            f"(SELECT * FROM {d.t('conversations')} WHERE id IN ({scope}))" if scope else d.t("conversations")
        )
        return f"""
        SELECT c.id, c.customer_id, c.opened_at, c.contact_reason, c.intent, c.cause, c.cause_owner,
               COALESCE(c.order_id, lo.id) AS order_id
        FROM {convs} c
        ASOF LEFT JOIN (SELECT customer_id, placed_at, MAX(id) AS id FROM {d.t("orders")}
                        WHERE customer_id IN (SELECT customer_id FROM {d.t("conversations")}
                                              WHERE order_id IS NULL{in_scope})
                        GROUP BY customer_id, placed_at) lo
          ON lo.customer_id = c.customer_id AND lo.placed_at <= c.opened_at"""
    return f"""
        SELECT c.id, c.customer_id, c.opened_at, c.contact_reason, c.intent, c.cause, c.cause_owner,
               COALESCE(c.order_id, (SELECT o2.id FROM {d.t("orders")} o2
                                     WHERE o2.customer_id = c.customer_id AND o2.placed_at <= c.opened_at
                                     ORDER BY o2.placed_at DESC, o2.id DESC LIMIT 1)) AS order_id
        FROM {d.t("conversations")} c"""


def cause_case(d: Dialect, *, at: str, own_cause: str, reason: str, fallback: str) -> str:
    """The likely upstream cause of a contact or review at time `at`, from what had happened to its order
    (alias f, a facts row; NULL when no order is linked). A contact soon after a failed attempt is about the
    attempt; later, once the promise has passed, about lateness."""
    sla = DISPATCH_SLA_H
    failed = (
        f"f.delivered_at IS NULL OR {d.hours('f.delivered_at', 'f.first_attempt_at')} "
        f"> {FIRST_ATTEMPT_GRACE_H}"
    )
    return f"""CASE
      WHEN {own_cause} IS NOT NULL AND {own_cause} <> '' THEN {own_cause}
      WHEN f.id IS NULL THEN 'pre_purchase'
      WHEN f.damaged_at <= {at} THEN 'damaged'
      WHEN f.wrong_at <= {at} THEN 'wrong_item'
      WHEN f.is_lost = 1 THEN 'lost'
      WHEN f.first_attempt_at <= {at} AND {d.hours(at, "f.first_attempt_at")} <= {FAILED_ATTEMPT_WINDOW_H}
           AND ({failed}) THEN 'failed_attempt'
      WHEN f.promised_to < {at} AND (f.delivered_at IS NULL OR f.delivered_at > f.promised_to) THEN 'late'
      WHEN f.first_attempt_at <= {at} AND ({failed}) THEN 'failed_attempt'
      WHEN (f.dispatched_at IS NULL OR f.dispatched_at > {at})
           AND {d.hours(at, "f.placed_at")} > {sla} THEN 'dispatch_late'
      WHEN f.first_return_at <= {at} AND (f.refunded_at IS NULL OR f.refunded_at > {at}) THEN 'refund_slow'
      WHEN f.delivered_at <= {at} AND (f.invoiced_at IS NULL OR f.invoiced_at > {at})
           AND {reason} LIKE '%invoice%' THEN 'invoice_missing'
      ELSE {fallback}
    END"""


FEEDBACK_FALLBACK = (
    "CASE x.topic WHEN 'product' THEN 'product_issue' WHEN 'price' THEN 'price' "
    "WHEN 'service' THEN 'service' ELSE 'no_upstream_cause' END"
)


def contact_cause_sql(d: Dialect) -> str:
    """The cause of a contact (alias x, a contact_links row) from its linked order's facts (alias f)."""
    return cause_case(
        d,
        at="x.opened_at",
        own_cause="x.cause",
        reason="COALESCE(x.contact_reason, x.intent, '')",
        fallback="'no_upstream_cause'",
    )


def feedback_cause_sql(d: Dialect) -> str:
    """The cause of a review (alias x, a feedback row) from its order's facts (alias f). The replica keeps no
    free text (it may hold personal data): only whether the comment names an invoice, evaluated by the store
    itself when the row is synced, so LIKE's case rules are the store's."""
    comment = (
        "CASE WHEN x.mentions_invoice THEN 'invoice' ELSE '' END"
        if d.materialised
        else "COALESCE(x.comment, '')"
    )
    return cause_case(d, at="x.submitted_at", own_cause="NULL", reason=comment, fallback=FEEDBACK_FALLBACK)


def in_period(d: Dialect, col: str, which: str) -> str:
    if which == "cur":
        return f"{col} >= {d.p('start')} AND {col} < {d.p('end')}"
    return f"{col} >= {d.p('prev_start')} AND {col} < {d.p('start')}"


def period_flag(d: Dialect, col: str) -> str:
    return f"CASE WHEN {col} >= {d.p('start')} THEN 'cur' ELSE 'prev' END"


def staging(d: Dialect, f: Filters, *, rollups: bool = True) -> list[str]:
    """Temp tables for one computation: contact links, the two cohorts' facts, linked-order facts, the
    period's contacts and feedback with their causes, and the period's events. Over the replica, `rollups`
    lets the events metrics read whole days from `session_days` (see session_events_select); a drill-down, which
    lists who is behind a number, stages every session row instead (rollups=False)."""
    cuts = cut_predicates(d, f)
    cut_sql = "".join(f" AND {p}" for p in cuts)
    cohort_where = f"o.placed_at >= {d.p('prev_start')} AND o.placed_at < {d.p('end')}{cut_sql}"
    stmts: list[str] = []
    if not d.materialised:
        stmts += d.create_temp("contact_links", contact_links_select(d))
    cohort_ids = (
        f"SELECT id FROM {d.t('orders')} WHERE placed_at >= {d.p('prev_start')} AND placed_at < {d.p('end')}"
    )
    # over the replica, a view: each query reads only its columns of the period's rows (sorted by placed_at)
    stmts += d.create_temp("facts", facts_select(d, cohort_where, cohort_ids), view=True)
    # contacts and feedback in the two periods, with the cuts applied through their order
    linked_ids = (
        "SELECT order_id FROM contact_links WHERE order_id IS NOT NULL AND "
        f"opened_at >= {d.p('prev_start')} AND opened_at < {d.p('end')} UNION SELECT order_id FROM "
        f"{d.t('feedback')} WHERE order_id IS NOT NULL AND submitted_at >= {d.p('prev_start')} "
        f"AND submitted_at < {d.p('end')}"
    )
    linked_where = f"o.id IN ({linked_ids})"
    if d.materialised:
        # implied by the first predicate, but lets zone maps skip the (time-sorted) facts of older orders
        linked_where += (
            f" AND o.placed_at >= (SELECT MIN(placed_at) FROM order_facts WHERE id IN ({linked_ids}))"
        )
    # over the replica only the drill-down by cause reads `linked` (a view): contacts and feedback join the
    # materialised order_facts directly, the same rows
    stmts += d.create_temp("linked", facts_select(d, linked_where, linked_ids), view=True)
    linked = "order_facts" if d.materialised else "linked"
    order_cut = ""
    if cuts and d.materialised:
        # (the customer is joined only for a segment cut: every order has its customer)
        join = (
            f" JOIN {d.t('customers')} cu ON cu.id = o.customer_id" if any("cu." in c for c in cuts) else ""
        )
        order_cut = f" AND x.order_id IN (SELECT o.id FROM order_facts o{join} WHERE {' AND '.join(cuts)})"
    elif cuts:
        order_cut = (
            f" AND x.order_id IN (SELECT o.id FROM {d.t('orders')} o JOIN {d.t('customers')} cu "
            f"ON cu.id = o.customer_id LEFT JOIN ({_ship(d)}) s ON s.order_id = o.id "
            f"WHERE {' AND '.join(cuts)})"
        )
    period_where = f"x.opened_at >= {d.p('prev_start')} AND x.opened_at < {d.p('end')}{order_cut}"
    if d.materialised:
        # the replica keeps each contact's cause (`contact_links.upstream_cause`) and each review's
        # (`feedback_causes`), computed by the sync with the same CASE from the linked order's facts: a cause
        # depends on the contact's time and its order, not on the period, the filters or now
        contact_cause, contact_from = "x.upstream_cause", "contact_links x"
    else:
        contact_cause = contact_cause_sql(d)
        contact_from = f"contact_links x LEFT JOIN {linked} f ON f.id = x.order_id"
    stmts += d.create_temp(
        "contacts",
        f"""
        SELECT x.id, x.customer_id, x.order_id, x.opened_at, {period_flag(d, "x.opened_at")} AS period,
               COALESCE(x.contact_reason, x.intent, 'unknown') AS reason, x.cause_owner,
               {contact_cause} AS cause
        FROM {contact_from}
        WHERE {period_where}""",
        # over the replica and uncut, a view: a few queries each read the period's rows of contact_links (sorted
        # by time); a cut by order is a semi join against the order facts, evaluated once into a table
        view=not cuts,
    )
    if d.materialised:
        feedback_cause, feedback_from = "x.cause", "feedback_causes x"
    else:
        feedback_cause = feedback_cause_sql(d)
        feedback_from = f"{d.t('feedback')} x LEFT JOIN {linked} f ON f.id = x.order_id"
    stmts += d.create_temp(
        "fb",
        f"""
        SELECT x.id, x.customer_id, x.order_id, x.kind, x.csat, x.nps, x.rating, x.topic, x.submitted_at,
               {period_flag(d, "x.submitted_at")} AS period, COALESCE(x.rating, x.csat) AS score,
               {feedback_cause} AS cause
        FROM {feedback_from}
        WHERE x.submitted_at >= {d.p("prev_start")} AND x.submitted_at < {d.p("end")}{order_cut}""",
        view=not cuts,
    )
    ev_cut = ""
    if f.region or f.segment:
        preds = []
        if f.region:
            preds.append(f"cu.region = {d.p('region')}")
        if f.segment == "new":
            preds.append(f"cu.first_seen_at >= {d.p('start')}")
        elif f.segment == "returning":
            preds.append(f"cu.first_seen_at < {d.p('start')}")
        ev_cut = (
            f" AND e.customer_id IN (SELECT cu.id FROM {d.t('customers')} cu WHERE {' AND '.join(preds)})"
        )
    if d.materialised:
        # the day rollup holds every session of a day with no cut on who browsed: with a cut by the customer's
        # region or segment, every session is read row by row
        rolled = rollups and not ev_cut
        stmts += d.create_temp("crossing", crossing_select(d))
        stmts.append(crossing_windows())
        stmts += d.create_temp("ev", session_events_select(d, ev_cut, rolled=rolled))
        covered = covered_days(d, "day") if rolled else "FALSE"
        stmts += d.create_temp(
            "sd",
            f"SELECT {period_flag(d, 'CAST(day AS TIMESTAMP)')} AS period, source, sessions, product_views, "
            "view_sessions, add_sessions, checkout_sessions, completed_sessions "
            f"FROM session_days WHERE {covered}",
            view=True,
        )
        # new visitors: who was active in each period, by source. `ev` leaves out the rolled-up sessions: add
        # those of the customers first seen in the two periods (the only ones new_visitors counts)
        rolled_new = (
            f"""
            UNION ALL
            SELECT {period_flag(d, "s.first_at")} AS period, s.customer_id, s.campaign_source FROM sessions s
            WHERE s.first_at >= {d.p("prev_start")} AND s.first_at < {d.p("end")}
              AND {covered_days(d, "s.rolled_day")}
              AND s.customer_id IN (SELECT cu.id FROM {d.t("customers")} cu
                                    WHERE cu.first_seen_at >= {d.p("prev_start")} AND cu.first_seen_at < {d.p("end")})"""
            if rolled
            else ""
        )
        stmts += d.create_temp(
            "ev_new", f"SELECT period, customer_id, campaign_source FROM ev{rolled_new}", view=True
        )
        return stmts
    stmts += d.create_temp(
        "ev",
        f"""
        SELECT e.customer_id, e.type, e.name, e.session_id, e.campaign_source, e.occurred_at,
               {period_flag(d, "e.occurred_at")} AS period
        FROM {d.t("customer_events")} e
        WHERE e.occurred_at >= {d.p("prev_start")} AND e.occurred_at < {d.p("end")}
          AND e.type IN ('page', 'track'){ev_cut}""",
    )
    return stmts


SESSION_FLAGS = {
    "has_view": "Product Viewed",
    "has_add": "Product Added",
    "has_checkout": "Checkout Started",
    "has_complete": "Order Completed",
}


def session_rollup(source: str) -> str:
    """Page/track calls of `source` (alias e) rolled up per (session, customer): what the events metrics need
    of a session. The replica keeps this as `sessions`, updated as calls arrive."""
    flags = ", ".join(
        f"MAX(CASE WHEN e.name = '{n}' THEN 1 ELSE 0 END) AS {k}" for k, n in SESSION_FLAGS.items()
    )
    return f"""
        SELECT e.session_id, e.customer_id, MIN(e.occurred_at) AS first_at, MAX(e.occurred_at) AS last_at,
               MIN(e.campaign_source) AS campaign_source,
               SUM(CASE WHEN e.name = 'Product Viewed' THEN 1 ELSE 0 END) AS product_views, {flags}
        FROM {source} e WHERE e.session_id IS NOT NULL GROUP BY e.session_id, e.customer_id"""


def covered_days(d: Dialect, day: str) -> str:
    """Whether the UTC day `day` (a DATE) lies wholly inside the current or the previous period (the day bounds
    are parameters, see `params`)."""
    return (
        f"(({day} >= {d.p('days_prev_lo')} AND {day} < {d.p('days_prev_hi')}) "
        f"OR ({day} >= {d.p('days_lo')} AND {day} < {d.p('days_hi')}))"
    )


CROSSING_WINDOWS = ("x_prev", "x_start", "x_end")
PARAMS = "-- params\n"  # a staging statement whose one row adds to the computation's parameters


def crossing_select(d: Dialect) -> str:
    """The sessions (rows of `sessions`) that overlap the two periods without lying inside one of them: each
    crosses a boundary b (first_at < b <= last_at) for b = prev_start, start or end."""
    start, end, prev_start = d.p("start"), d.p("end"), d.p("prev_start")
    # one branch per boundary, each a pair of single-column ranges that zone maps prune to the few row groups
    # around the boundary (`sessions` is sorted by first_at); UNION keeps a session crossing two boundaries once
    return "\n          UNION\n".join(
        f"""
          SELECT s.session_id, s.customer_id, s.first_at, s.last_at,
                 s.first_at < {prev_start} AS x_prev, s.first_at < {start} AND s.last_at >= {start} AS x_start,
                 s.last_at >= {end} AS x_end
          FROM sessions s
          WHERE s.first_at < {b} AND s.last_at >= {b}"""
        for b in (prev_start, start, end)
    )


def crossing_windows() -> str:
    """(PARAMS) the window [min first_at, max last_at] of the sessions crossing each boundary: their calls lie
    within it, and as constants the windows let zone maps skip the rest of customer_events (sorted by time;
    joining every call of the periods to the windows scanned ~1.5 M calls for 7 days)."""
    windows = ", ".join(
        f"MIN(CASE WHEN {x} THEN first_at END) AS {x}_lo, MAX(CASE WHEN {x} THEN last_at END) AS {x}_hi"
        for x in CROSSING_WINDOWS
    )
    return f"{PARAMS}SELECT {windows} FROM crossing"


def _inside(d: Dialect) -> str:
    start, end, prev_start = d.p("start"), d.p("end"), d.p("prev_start")
    return f"((s.first_at >= {start} AND s.last_at < {end}) OR (s.first_at >= {prev_start} AND s.last_at < {start}))"


def session_events_select(d: Dialect, ev_cut: str, *, rolled: bool = False) -> str:
    """The two periods' events per (period, session, customer), over the replica. A session wholly inside one
    period is read from `sessions` (one row instead of ~5 calls); the calls of a session that crosses a period
    boundary (staged as `crossing`, their windows as parameters, see crossing_windows), and calls without a
    session, are rolled up here from customer_events with each call in its own period, exactly as the plain
    path counts them. `ev_cut` filters customers (alias e).

    `rolled`: leaves out the sessions counted by the day rollup (`session_days`): a session id all of whose calls
    (every customer's) fall on one UTC day (`sessions.rolled_day`), that day lying wholly inside one of the
    periods. Such a session is inside that period and nowhere else, so the rollup's per-day counts of distinct
    session ids add up across days and with the rest, which this SELECT still returns row by row."""
    end, prev_start = d.p("end"), d.p("prev_start")
    # (a rolled session on a covered day lies inside its period: never a crossing session)
    rolled_out = f" AND NOT COALESCE({covered_days(d, 's.rolled_day')}, FALSE)" if rolled else ""
    flags = ", ".join(f"MAX(e.{k}) AS {k}" for k in SESSION_FLAGS)
    raw_flags = ", ".join(
        f"CASE WHEN e.name = '{n}' THEN 1 ELSE 0 END AS {k}" for k, n in SESSION_FLAGS.items()
    )
    calls = f"""
          SELECT e.session_id, e.customer_id, e.campaign_source, {period_flag(d, "e.occurred_at")} AS period,
                 CASE WHEN e.name = 'Product Viewed' THEN 1 ELSE 0 END AS product_views, {raw_flags}
          FROM customer_events e"""
    in_range = f"e.occurred_at >= {prev_start} AND e.occurred_at < {end} AND e.type IN ('page', 'track')"
    # one branch per window, each a single time range (zone maps prune it; an OR of ranges is not pruned), a
    # call in two windows taken by the first
    win = [
        f"(e.occurred_at >= {d.p(x + '_lo')} AND e.occurred_at <= {d.p(x + '_hi')})" for x in CROSSING_WINDOWS
    ]
    branches = [
        f"""{calls} SEMI JOIN crossing c ON c.session_id = e.session_id AND c.customer_id = e.customer_id
          WHERE {in_range} AND {w}{"".join(f" AND NOT COALESCE({v}, FALSE)" for v in win[:i])}{ev_cut}"""
        for i, w in enumerate(win)
    ]
    crossing_calls = "\n          UNION ALL\n          ".join(branches)
    return f"""
        SELECT {period_flag(d, "s.first_at")} AS period, s.session_id, s.customer_id, s.campaign_source,
               s.product_views, {", ".join(f"s.{k}" for k in SESSION_FLAGS)}
        FROM sessions s
        WHERE s.first_at >= {prev_start} AND s.first_at < {end}  -- implied by `inside`: lets zone maps prune
          AND {_inside(d)}{ev_cut.replace("e.customer_id", "s.customer_id")}{rolled_out}
        UNION ALL
        SELECT e.period, e.session_id, e.customer_id, MIN(e.campaign_source) AS campaign_source,
               SUM(e.product_views) AS product_views, {flags}
        FROM (
          {calls} WHERE {in_range} AND e.session_id IS NULL{ev_cut}
          UNION ALL
          {crossing_calls}) e
        GROUP BY e.period, e.session_id, e.customer_id"""


def has_order(d: Dialect, customer: str, op: str, at: str) -> str:
    """Whether the customer placed an order before (`<`) or after (`>`) `at`. The replica answers from
    `customer_orders` (each customer's first and last order, kept by the sync) rather than all orders."""
    if d.materialised:
        col = "first_placed_at" if op == "<" else "last_placed_at"
        return f"EXISTS (SELECT 1 FROM customer_orders co WHERE co.customer_id = {customer} AND co.{col} {op} {at})"
    return f"EXISTS (SELECT 1 FROM {d.t('orders')} o2 WHERE o2.customer_id = {customer} AND o2.placed_at {op} {at})"


def _cohort_flag(d: Dialect) -> str:
    return period_flag(d, "placed_at")


# `events` over the replica's `ev` (one row per period, session and customer, see session_events_select)
EVENTS_FROM_SESSIONS = """
            SELECT period, COUNT(DISTINCT session_id) AS sessions, SUM(product_views) AS product_views,
                   COUNT(DISTINCT CASE WHEN has_view = 1 THEN session_id END) AS view_sessions,
                   COUNT(DISTINCT CASE WHEN has_add = 1 THEN session_id END) AS add_sessions,
                   COUNT(DISTINCT CASE WHEN has_checkout = 1 THEN session_id END) AS checkout_sessions,
                   COUNT(DISTINCT CASE WHEN has_complete = 1 THEN session_id END) AS completed_sessions
            FROM ev GROUP BY period"""
_EVENT_COUNTS = (
    "sessions",
    "product_views",
    "view_sessions",
    "add_sessions",
    "checkout_sessions",
    "completed_sessions",
)
# ... plus the whole days the rollup holds (`sd`, see staging): distinct session ids add up across the two
EVENTS_WITH_ROLLUP = f"""
            SELECT period, {", ".join(f"SUM({c}) AS {c}" for c in _EVENT_COUNTS)} FROM (
              {EVENTS_FROM_SESSIONS}
              UNION ALL
              SELECT period, {", ".join(f"SUM({c})" for c in _EVENT_COUNTS)} FROM sd GROUP BY period) q
            GROUP BY period"""
SESSIONS_BY_SOURCE = """
            SELECT period, COALESCE(source, 'direct') AS source, COUNT(*) AS n FROM (
              SELECT period, session_id, MIN(campaign_source) AS source FROM ev
              WHERE session_id IS NOT NULL GROUP BY period, session_id) q
            GROUP BY 1, 2"""


def queries(d: Dialect) -> dict[str, str]:
    """name -> SELECT over the staged temp tables. Every query returns a `period` column (cur | prev)."""
    sla = DISPATCH_SLA_H
    wismo = ", ".join(f"'{r}'" for r in WISMO_REASONS)
    flag = _cohort_flag(d)
    later = f"SUM(CASE WHEN {has_order(d, 'f.customer_id', '>', 'f.placed_at')} THEN 1 ELSE 0 END)"
    return {
        "orders": f"""
            SELECT {flag} AS period, COUNT(*) AS orders,
                   AVG(total_minor) / 100.0 AS aov,
                   SUM(CASE WHEN dispatch_h IS NOT NULL THEN 1 ELSE 0 END) AS dispatched,
                   SUM(CASE WHEN dispatch_h <= {sla} THEN 1 ELSE 0 END) AS dispatched_on_time,
                   AVG(dispatch_h) AS mean_dispatch_h,
                   SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END) AS delivered,
                   SUM(CASE WHEN delay_h <= 0 THEN 1 ELSE 0 END) AS on_promise,
                   SUM(CASE WHEN is_first_attempt = 1 THEN 1 ELSE 0 END) AS first_attempt,
                   AVG(delay_h) AS mean_delay_h,
                   SUM(CASE WHEN returns > 0 THEN 1 ELSE 0 END) AS returned,
                   SUM(CASE WHEN fall_off = 'perfect' THEN 1 ELSE 0 END) AS perfect
            FROM facts GROUP BY 1""",
        # over the replica: most delays are exactly 0 (on time): only the late ones are ranked
        "p90_delay": f"""
            WITH dl AS (SELECT {flag} AS period, delay_h FROM facts WHERE delay_h IS NOT NULL),
                 n AS (SELECT period, {d.intdiv("9 * COUNT(*) + 9", "10")} AS k,
                              SUM(CASE WHEN delay_h <= 0 THEN 1 ELSE 0 END) AS z
                       FROM dl GROUP BY period),
                 late AS (SELECT period, delay_h,
                                 ROW_NUMBER() OVER (PARTITION BY period ORDER BY delay_h) AS rn
                          FROM dl WHERE delay_h > 0)
            SELECT n.period, CAST(0 AS DOUBLE) AS p90 FROM n WHERE n.k <= n.z
            UNION ALL
            SELECT n.period, late.delay_h FROM n JOIN late ON late.period = n.period AND late.rn = n.k - n.z
            WHERE n.k > n.z"""
        if d.materialised
        else f"""
            SELECT period, delay_h AS p90 FROM (
              SELECT {flag} AS period, delay_h,
                     ROW_NUMBER() OVER (PARTITION BY {flag} ORDER BY delay_h) AS rn,
                     COUNT(*) OVER (PARTITION BY {flag}) AS n
              FROM facts WHERE delay_h IS NOT NULL) q
            WHERE rn = {d.intdiv("9 * n + 9", "10")}""",
        # the replica's facts say per order whether the customer ordered before it (has_earlier): a customer's
        # latest order in the period has it if any of their orders there does
        "repeat": f"""
            SELECT q.period, COUNT(*) AS customers, SUM(q.repeater) AS repeaters
            FROM (SELECT {flag} AS period, customer_id, MAX(has_earlier) AS repeater FROM facts
                  GROUP BY 1, 2) q
            GROUP BY q.period"""
        if d.materialised
        else f"""
            SELECT q.period, COUNT(*) AS customers,
                   SUM(CASE WHEN {has_order(d, "q.customer_id", "<", "q.last_placed")} THEN 1 ELSE 0 END)
                   AS repeaters
            FROM (SELECT {flag} AS period, customer_id, MAX(placed_at) AS last_placed FROM facts
                  GROUP BY 1, 2) q
            GROUP BY q.period""",
        "return_reasons": f"""
            SELECT {flag} AS period, return_reason AS reason, COUNT(*) AS n FROM facts
            WHERE returns > 0 GROUP BY 1, 2""",
        "events": EVENTS_WITH_ROLLUP
        if d.materialised
        else """
            SELECT period, COUNT(DISTINCT session_id) AS sessions,
                   SUM(CASE WHEN name = 'Product Viewed' THEN 1 ELSE 0 END) AS product_views,
                   COUNT(DISTINCT CASE WHEN name = 'Product Viewed' THEN session_id END) AS view_sessions,
                   COUNT(DISTINCT CASE WHEN name = 'Product Added' THEN session_id END) AS add_sessions,
                   COUNT(DISTINCT CASE WHEN name = 'Checkout Started' THEN session_id END) AS checkout_sessions,
                   COUNT(DISTINCT CASE WHEN name = 'Order Completed' THEN session_id END) AS completed_sessions
            FROM ev GROUP BY period""",
        "sessions_by_source": f"""
            SELECT period, source, SUM(n) AS n FROM (
              {SESSIONS_BY_SOURCE}
              UNION ALL
              SELECT period, COALESCE(source, 'direct'), SUM(sessions) FROM sd GROUP BY 1, 2) q
            GROUP BY 1, 2"""
        if d.materialised
        else SESSIONS_BY_SOURCE,
        "new_visitors": f"""
            SELECT q.period, COALESCE(q.source, 'direct') AS source, COUNT(*) AS n FROM (
              SELECT e.period, e.customer_id, MIN(e.campaign_source) AS source FROM {"ev_new" if d.materialised else "ev"} e
              JOIN {d.t("customers")} cu ON cu.id = e.customer_id
              WHERE (e.period = 'cur' AND cu.first_seen_at >= {d.p("start")} AND cu.first_seen_at < {d.p("end")})
                 OR (e.period = 'prev' AND cu.first_seen_at >= {d.p("prev_start")}
                     AND cu.first_seen_at < {d.p("start")})
              GROUP BY e.period, e.customer_id) q
            GROUP BY 1, 2""",
        "contacts": f"""
            SELECT period, COUNT(*) AS contacts, COUNT(DISTINCT customer_id) AS contacting_customers,
                   SUM(CASE WHEN reason IN ({wismo}) THEN 1 ELSE 0 END) AS wismo
            FROM contacts GROUP BY period""",
        "contact_reasons": "SELECT period, reason, COUNT(*) AS n FROM contacts GROUP BY 1, 2",
        "feedback": """
            SELECT period,
                   COUNT(csat) AS csat_n, SUM(CASE WHEN csat >= 4 THEN 1 ELSE 0 END) AS csat_happy,
                   AVG(csat) AS csat_mean,
                   COUNT(nps) AS nps_n, SUM(CASE WHEN nps >= 9 THEN 1 ELSE 0 END) AS promoters,
                   SUM(CASE WHEN nps <= 6 THEN 1 ELSE 0 END) AS detractors,
                   COUNT(score) AS scored, SUM(CASE WHEN score = 1 THEN 1 ELSE 0 END) AS one_star
            FROM fb GROUP BY period""",
        "one_star_topics": """
            SELECT period, COALESCE(topic, 'unclassified') AS topic, COUNT(*) AS scored,
                   SUM(CASE WHEN score = 1 THEN 1 ELSE 0 END) AS one_star
            FROM fb WHERE score IS NOT NULL GROUP BY 1, 2""",
        "perfect": f"SELECT {flag} AS period, fall_off, COUNT(*) AS n FROM facts GROUP BY 1, 2",
        "perfect_by_week": f"""
            SELECT {d.week("placed_at")} AS dim, fall_off, COUNT(*) AS n FROM facts
            WHERE placed_at >= {d.p("start")} GROUP BY 1, 2""",
        "perfect_by_carrier": f"""
            SELECT COALESCE(carrier, '(none)') AS dim, fall_off, COUNT(*) AS n FROM facts
            WHERE placed_at >= {d.p("start")} GROUP BY 1, 2""",
        "perfect_by_region": f"""
            SELECT COALESCE(region, '(none)') AS dim, fall_off, COUNT(*) AS n FROM facts
            WHERE placed_at >= {d.p("start")} GROUP BY 1, 2""",
        "perfect_by_category": f"""
            SELECT COALESCE(category, '(none)') AS dim, fall_off, COUNT(*) AS n FROM facts
            WHERE placed_at >= {d.p("start")} GROUP BY 1, 2""",
        "drivers": """
            SELECT cause, period, SUM(contacts) AS contacts, SUM(one_star) AS one_star,
                   COUNT(DISTINCT order_id) AS orders FROM (
              SELECT cause, period, 1 AS contacts, 0 AS one_star, order_id FROM contacts
              UNION ALL
              SELECT cause, period, 0, 1, order_id FROM fb WHERE score = 1) q
            GROUP BY 1, 2""",
        "downstream": f"""
            SELECT CASE WHEN f.delay_h <= 0 THEN 0 WHEN f.delay_h <= 24 THEN 1 WHEN f.delay_h <= 48 THEN 2
                        ELSE 3 END AS bucket,
                   COUNT(*) AS orders, SUM(f.contacts) AS contacts, SUM(f.score_sum) AS score_sum,
                   SUM(f.score_n) AS score_n,
                   {"SUM(f.has_later)" if d.materialised else later} AS repeaters
            FROM facts f WHERE f.delivered_at IS NOT NULL AND f.placed_at >= {d.p("start")}
            GROUP BY 1""",
    }


# Drill-down sets: the orders (or customers) behind a number, as a predicate over the cohort's facts.
DRILL_SETS: dict[str, str] = {
    "orders": "1 = 1",
    "dispatch_late": f"dispatch_h > {DISPATCH_SLA_H}",
    "late": "delay_h > 0",
    "failed_attempt": "is_first_attempt = 0",
    "contacted": "contacts > 0",
    "returned": "returns > 0",
    "one_star": "min_score = 1",
    "perfect": "fall_off = 'perfect'",
}
CUSTOMER_SETS = ("visitors", "new_visitors", "repeat_customers")


def drill_orders_sql(d: Dialect, name: str) -> tuple[str, dict[str, str]]:
    """(SELECT over facts/contacts/fb, extra params) for a drill set: a DRILL_SETS name, `fall:<step>` or
    `cause:<cause>`."""
    cols = (
        "f.id, f.external_id, f.customer_id, f.placed_at, f.channel, f.region, f.carrier, f.category, "
        "f.total_minor, f.currency, f.dispatched_at, f.promised_to, f.delivered_at, f.delay_h, f.contacts, "
        "f.returns, f.min_score, f.fall_off"
    )
    cur = f"f.placed_at >= {d.p('start')}"
    if name in DRILL_SETS:
        return f"SELECT {cols} FROM facts f WHERE {cur} AND {DRILL_SETS[name]} ORDER BY f.placed_at", {}
    kind, _, value = name.partition(":")
    if kind == "fall" and value:
        return (
            f"SELECT {cols} FROM facts f WHERE {cur} AND f.fall_off = {d.p('drill')} ORDER BY f.placed_at",
            {"drill": value},
        )
    if kind == "cause" and value:
        return (
            f"SELECT {cols} FROM linked f WHERE f.id IN ("
            f"SELECT order_id FROM contacts WHERE period = 'cur' AND cause = {d.p('drill')} "
            f"UNION SELECT order_id FROM fb WHERE period = 'cur' AND score = 1 AND cause = {d.p('drill')}) "
            "ORDER BY f.placed_at"
        ), {"drill": value}
    raise KeyError(name)


def drill_customers_sql(d: Dialect, name: str) -> str:
    """The customers behind a number. The replica holds no names or emails: there the caller adds them from the
    store by id (`queries.drill`)."""
    cols = (
        "cu.id, cu.region, cu.first_seen_at"
        if d.materialised
        else "cu.id, cu.email, cu.name, cu.region, cu.first_seen_at, cu.last_seen_at"
    )
    if name == "visitors":
        return (
            f"SELECT {cols} FROM {d.t('customers')} cu WHERE cu.id IN "
            "(SELECT customer_id FROM ev WHERE period = 'cur') ORDER BY cu.first_seen_at"
        )
    if name == "new_visitors":
        return (
            f"SELECT {cols} FROM {d.t('customers')} cu WHERE cu.id IN "
            f"(SELECT customer_id FROM ev WHERE period = 'cur') AND cu.first_seen_at >= {d.p('start')} "
            f"AND cu.first_seen_at < {d.p('end')} ORDER BY cu.first_seen_at"
        )
    if name == "repeat_customers":
        return (
            f"SELECT {cols} FROM {d.t('customers')} cu WHERE cu.id IN ("
            f"SELECT q.customer_id FROM (SELECT customer_id, MAX(placed_at) AS last_placed FROM facts "
            f"WHERE placed_at >= {d.p('start')} GROUP BY customer_id) q "
            f"WHERE EXISTS (SELECT 1 FROM {d.t('orders')} o2 WHERE o2.customer_id = q.customer_id "
            "AND o2.placed_at < q.last_placed)) ORDER BY cu.first_seen_at"
        )
    raise KeyError(name)
