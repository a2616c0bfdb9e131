"""The dashboard's read side: stage, run every metric query, assemble the journey in order."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from doorstep.analytics import sql as q
from doorstep.analytics.engine import Runner
from doorstep.analytics.errors import UnknownDrillSet
from doorstep.analytics.model import (
    CAUSE_LABELS,
    METRICS,
    PERFECT,
    PERFECT_STEPS,
    STAGES,
    Filters,
    MetricValue,
    owner_of,
    ratio,
)

BUCKETS = ["on time", "1 day late", "2 days late", "3+ days late"]
DIMENSIONS = ("week", "carrier", "region", "category")


def _by_period(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["period"]: r for r in rows}


def _num(row: dict[str, Any] | None, key: str) -> float:
    if not row or row.get(key) is None:
        return 0.0
    return float(row[key])


def stage(runner: Runner, f: Filters, *, now: datetime, rollups: bool = True) -> dict[str, Any]:
    params = q.params(runner.dialect, f, now=now)
    for stmt in q.staging(runner.dialect, f, rollups=rollups):
        if stmt.startswith(q.PARAMS):  # a statement computing parameters of the next ones
            params.update(runner.rows(stmt, params)[0])
        else:
            runner.execute(stmt, params)
    return params


def run_all(runner: Runner, f: Filters, *, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Stages and runs every query; returns raw rows by query name."""
    params = stage(runner, f, now=now)
    return {name: runner.rows(sql, params) for name, sql in q.queries(runner.dialect).items()}


def compute_dashboard(runner: Runner, f: Filters, *, now: datetime) -> dict[str, Any]:
    started = time.perf_counter()
    raw = run_all(runner, f, now=now)
    result = assemble(raw, f)
    result["computed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    result["engine"] = runner.dialect.name
    return result


def metric_values(raw: dict[str, list[dict[str, Any]]]) -> dict[str, MetricValue]:
    orders = _by_period(raw["orders"])
    events = _by_period(raw["events"])
    contacts = _by_period(raw["contacts"])
    feedback = _by_period(raw["feedback"])
    repeat = _by_period(raw["repeat"])
    p90 = _by_period(raw["p90_delay"])
    new_visitors: dict[str, float] = defaultdict(float)
    for r in raw["new_visitors"]:
        new_visitors[r["period"]] += r["n"]

    def per(period: str) -> dict[str, tuple[float | None, float | None, float | None]]:
        o, e, c, fb, rp = (
            orders.get(period),
            events.get(period),
            contacts.get(period),
            feedback.get(period),
            repeat.get(period),
        )
        n_orders = _num(o, "orders")
        out: dict[str, tuple[float | None, float | None, float | None]] = {
            "sessions": (_num(e, "sessions"), None, None),
            "new_visitors": (new_visitors.get(period, 0.0), None, None),
            "product_views": (_num(e, "product_views"), None, None),
            "add_to_cart_rate": (
                ratio(_num(e, "add_sessions"), _num(e, "view_sessions"), scale=100),
                _num(e, "add_sessions"),
                _num(e, "view_sessions"),
            ),
            "checkout_conversion": (
                ratio(_num(e, "completed_sessions"), _num(e, "checkout_sessions"), scale=100),
                _num(e, "completed_sessions"),
                _num(e, "checkout_sessions"),
            ),
            "orders": (n_orders, None, None),
            "aov": (o.get("aov") if o else None, None, None),
            "order_to_dispatch_h": (o.get("mean_dispatch_h") if o else None, None, None),
            "dispatched_on_time": (
                ratio(_num(o, "dispatched_on_time"), _num(o, "dispatched"), scale=100),
                _num(o, "dispatched_on_time"),
                _num(o, "dispatched"),
            ),
            "delivered_on_promise": (
                ratio(_num(o, "on_promise"), _num(o, "delivered"), scale=100),
                _num(o, "on_promise"),
                _num(o, "delivered"),
            ),
            "first_attempt_success": (
                ratio(_num(o, "first_attempt"), _num(o, "delivered"), scale=100),
                _num(o, "first_attempt"),
                _num(o, "delivered"),
            ),
            "mean_delay_h": (o.get("mean_delay_h") if o else None, None, None),
            "p90_delay_h": (p90[period]["p90"] if period in p90 else None, None, None),
            "contacts_per_order": (ratio(_num(c, "contacts"), n_orders), _num(c, "contacts"), n_orders),
            "contacts_per_customer": (  # customers who ordered in the period: counted by `repeat`
                ratio(_num(c, "contacts"), _num(rp, "customers")),
                _num(c, "contacts"),
                _num(rp, "customers"),
            ),
            "wismo_share": (
                ratio(_num(c, "wismo"), _num(c, "contacts"), scale=100),
                _num(c, "wismo"),
                _num(c, "contacts"),
            ),
            "return_rate": (ratio(_num(o, "returned"), n_orders, scale=100), _num(o, "returned"), n_orders),
            "csat": (
                ratio(_num(fb, "csat_happy"), _num(fb, "csat_n"), scale=100),
                _num(fb, "csat_happy"),
                _num(fb, "csat_n"),
            ),
            "nps": (
                ratio(_num(fb, "promoters") - _num(fb, "detractors"), _num(fb, "nps_n"), scale=100),
                _num(fb, "promoters") - _num(fb, "detractors"),
                _num(fb, "nps_n"),
            ),
            "one_star_share": (
                ratio(_num(fb, "one_star"), _num(fb, "scored"), scale=100),
                _num(fb, "one_star"),
                _num(fb, "scored"),
            ),
            "repeat_purchase_rate": (
                ratio(_num(rp, "repeaters"), _num(rp, "customers"), scale=100),
                _num(rp, "repeaters"),
                _num(rp, "customers"),
            ),
            "perfect_share": (ratio(_num(o, "perfect"), n_orders, scale=100), _num(o, "perfect"), n_orders),
        }
        return out

    cur, prev = per("cur"), per("prev")
    values = {}
    for m in METRICS:
        v, num, den = cur[m.key]
        p = prev[m.key][0]
        values[m.key] = MetricValue(
            m.key, None if v is None else float(v), None if p is None else float(p), num, den
        )
    values["csat"].extra["mean"] = feedback.get("cur", {}).get("csat_mean")
    return values


def _breakdown(rows: list[dict[str, Any]], key: str, period: str = "cur") -> list[dict[str, Any]]:
    cur = {r[key]: r["n"] for r in rows if r["period"] == period}
    prev = {r[key]: r["n"] for r in rows if r["period"] != period}
    return [
        {"label": k, "value": cur[k], "previous": prev.get(k, 0)}
        for k in sorted(cur, key=lambda k: (-cur[k], str(k)))
    ]


def perfect_view(raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    counts = {r["fall_off"]: r["n"] for r in raw["perfect"] if r["period"] == "cur"}
    total = sum(counts.values())
    stair = []
    remaining = total
    for key, label in PERFECT_STEPS:
        lost = counts.get(key, 0)
        stair.append({"step": key, "label": label, "fell_off": lost, "remaining_before": remaining})
        remaining -= lost
    by_dim: dict[str, list[dict[str, Any]]] = {}
    for dim in DIMENSIONS:
        groups: dict[str, dict[str, int]] = defaultdict(dict)
        for r in raw[f"perfect_by_{dim}"]:
            groups[str(r["dim"])][r["fall_off"]] = r["n"]
        rows = []
        for label, c in groups.items():
            n = sum(c.values())
            lost, _, step = max((c.get(k, 0), -i, k) for i, (k, _) in enumerate(PERFECT_STEPS))
            worst = step if lost else None
            rows.append(
                {
                    "label": label,
                    "orders": n,
                    "perfect": c.get(PERFECT, 0),
                    "share": ratio(c.get(PERFECT, 0), n, scale=100),
                    "fell_off": c,
                    "top_fall_off": worst,
                }
            )
        by_dim[dim] = (
            sorted(rows, key=lambda r: r["label"])
            if dim == "week"
            else sorted(rows, key=lambda r: -r["orders"])
        )
    return {
        "orders": total,
        "perfect": counts.get(PERFECT, 0),
        "share": ratio(counts.get(PERFECT, 0), total, scale=100),
        "stair": stair,
        "by": by_dim,
    }


def drivers_view(raw: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    agg: dict[str, dict[str, Any]] = {}
    for r in raw["drivers"]:
        a = agg.setdefault(
            r["cause"],
            {
                "cause": r["cause"],
                "label": CAUSE_LABELS.get(r["cause"], r["cause"]),
                "owner": owner_of(r["cause"]),
                "contacts": 0,
                "one_star": 0,
                "orders": 0,
                "previous_contacts": 0,
                "previous_one_star": 0,
            },
        )
        if r["period"] == "cur":
            a["contacts"] += r["contacts"]
            a["one_star"] += r["one_star"]
            a["orders"] += r["orders"]
        else:
            a["previous_contacts"] += r["contacts"]
            a["previous_one_star"] += r["one_star"]
    rows = [a for a in agg.values() if a["contacts"] or a["one_star"]]
    for a in rows:
        a["total"] = a["contacts"] + a["one_star"]
        a["trend"] = a["total"] - a["previous_contacts"] - a["previous_one_star"]
    return sorted(rows, key=lambda a: (-a["total"], a["cause"]))


def downstream_view(raw: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    by = {int(r["bucket"]): r for r in raw["downstream"]}
    out = []
    for i, label in enumerate(BUCKETS):
        r = by.get(i)
        n = _num(r, "orders")
        out.append(
            {
                "bucket": label,
                "orders": int(n),
                "contacts_per_order": ratio(_num(r, "contacts"), n),
                "mean_score": ratio(_num(r, "score_sum"), _num(r, "score_n")),
                "repeat_rate": ratio(_num(r, "repeaters"), n, scale=100),
            }
        )
    return out


def assemble(raw: dict[str, list[dict[str, Any]]], f: Filters) -> dict[str, Any]:
    values = metric_values(raw)
    stages = []
    for key, title in STAGES:
        metrics = []
        for m in METRICS:
            if m.stage != key:
                continue
            v = values[m.key]
            metrics.append(
                {
                    "key": m.key,
                    "label": m.label,
                    "definition": m.definition,
                    "unit": m.unit,
                    "value": v.value,
                    "previous": v.previous,
                    "change": v.change,
                    "numerator": v.numerator,
                    "denominator": v.denominator,
                    "higher_is_better": m.higher_is_better,
                    "drill": m.drill,
                    **v.extra,
                }
            )
        stages.append({"key": key, "title": title, "metrics": metrics})
    breakdowns = {
        "sessions_by_source": _breakdown(raw["sessions_by_source"], "source"),
        "new_visitors_by_source": _breakdown(raw["new_visitors"], "source"),
        "contact_reasons": _breakdown(raw["contact_reasons"], "reason"),
        "return_reasons": _breakdown(raw["return_reasons"], "reason"),
        "one_star_by_topic": [
            {
                "label": r["topic"],
                "value": r["one_star"],
                "scored": r["scored"],
                "share": ratio(r["one_star"], r["scored"], scale=100),
            }
            for r in sorted(
                (r for r in raw["one_star_topics"] if r["period"] == "cur"),
                key=lambda r: (-r["one_star"], r["topic"]),
            )
        ],
    }
    return {
        "period": {
            "start": f.start.isoformat(),
            "end": f.end.isoformat(),
            "previous_start": f.previous.start.isoformat(),
        },
        "filters": f.cuts(),
        "stages": stages,
        "values": {k: v.value for k, v in values.items()},
        "breakdowns": breakdowns,
        "perfect": perfect_view(raw),
        "drivers": drivers_view(raw),
        "downstream": downstream_view(raw),
    }


def drill(
    runner: Runner, f: Filters, name: str, *, now: datetime, limit: int | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """('orders' | 'customers', rows) behind a number."""
    params = stage(runner, f, now=now, rollups=False)  # who is behind a number: row by row
    try:
        if name in q.CUSTOMER_SETS:
            extra: dict[str, str] = {}
            kind, sql_text = "customers", q.drill_customers_sql(runner.dialect, name)
        else:
            kind = "orders"
            sql_text, extra = q.drill_orders_sql(runner.dialect, name)
    except KeyError:
        raise UnknownDrillSet(f"no drill-down called {name!r}") from None
    if limit:
        sql_text += f" LIMIT {int(limit)}"
    return kind, runner.rows(sql_text, {**params, **extra})
