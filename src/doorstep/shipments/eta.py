"""Delivery-time prediction: a transparent baseline and a trained quantile model, with an honest report.

- Baseline: per lane (carrier, origin, destination) the 10th/50th/90th percentile of transit hours from
  dispatch to delivery in the history, falling back to the carrier, then to all shipments. Untrained, it uses
  fixed priors (source "prior", confidence unknown) until `doorstep models train eta` has run.
- Model: three gradient-boosted quantile regressors (scikit-learn, q10/q50/q90) of the hours still to go,
  from: carrier, service, origin and destination region, weekday and hour, current status, hours since
  dispatch, hours since the last scan, hours spent in each status, scan count and the carrier's own estimate.
  Trained offline, exported to plain JSON arrays and evaluated here in pure Python (well under 1 ms), so
  serving needs neither scikit-learn nor pickle.
- The window is [q10, q90]; its confidence is the share of held-out deliveries that landed inside such
  windows (measured on a later period than the training data: a time-based split).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from doorstep.shipments.model import Prediction, Shipment, Status

MODEL_VERSION = 1
QUANTILES = (0.1, 0.5, 0.9)
MIN_LANE_SAMPLES = 5  # fewer deliveries than this on a lane: use the carrier's figures instead
PRIOR_TRANSIT_H = (24.0, 48.0, 96.0)  # untrained guess: 1 to 4 days, typical domestic parcel services
MIN_REMAINING_H = 0.25

CATEGORICAL = ("carrier", "service", "origin", "destination", "status")
STATUS_HOURS = (
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "AvailableForPickup",
    "Exception",
)
FEATURES = (
    *CATEGORICAL,
    "weekday",
    "hour",
    "dispatch_weekday",
    "hours_since_dispatch",
    "last_scan_age_h",
    *(f"hours_in_{s}" for s in STATUS_HOURS),
    "scan_count",
    "carrier_estimate_h",
)


def _h(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def lane_of(s: Shipment) -> tuple[str, str, str]:
    return (s.carrier, s.origin_region or "", s.destination_region or "")


def raw_features(s: Shipment, at: datetime) -> dict[str, Any]:
    """The features of `s` as known at `at` (only scans up to `at` count)."""
    spent = s.hours_in_status(until=at)
    scans = [e for e in s.timeline if e.occurred_at <= at]
    last = scans[-1] if scans else None
    dispatched = next((e.occurred_at for e in scans if e.status.value in _MOVING_VALUES), None)
    return {
        "carrier": s.carrier,
        "service": s.service or "",
        "origin": s.origin_region or "",
        "destination": s.destination_region or "",
        "status": last.status.value if last else Status.PENDING.value,
        "weekday": at.weekday(),
        "hour": at.hour,
        "dispatch_weekday": dispatched.weekday() if dispatched else -1,
        "hours_since_dispatch": _h(at - dispatched) if dispatched else -1.0,
        "last_scan_age_h": _h(at - last.occurred_at) if last else _h(at - s.created_at),
        **{f"hours_in_{name}": spent.get(name, 0.0) for name in STATUS_HOURS},
        "scan_count": len(scans),
        "carrier_estimate_h": _h(s.carrier_estimate - at) if s.carrier_estimate else -999.0,
    }


_MOVING_VALUES = frozenset({"InTransit", "OutForDelivery", "AttemptFail", "AvailableForPickup", "Delivered"})


# ---- the baseline ---------------------------------------------------------------------------------------


@dataclass
class Baseline:
    """Transit-time percentiles per lane, carrier and overall; plain numbers anyone can check."""

    lanes: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    carriers: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    overall: tuple[float, float, float] = PRIOR_TRANSIT_H
    confidence: float | None = None  # measured coverage on held-out data; None = untrained priors
    is_trained: bool = False

    @classmethod
    def fit(cls, history: Sequence[Shipment]) -> Baseline:
        by_lane: dict[str, list[float]] = {}
        by_carrier: dict[str, list[float]] = {}
        every: list[float] = []
        for s in history:
            if s.delivered_at is None or s.dispatched_at is None:
                continue
            hours = _h(s.delivered_at - s.dispatched_at)
            by_lane.setdefault("|".join(lane_of(s)), []).append(hours)
            by_carrier.setdefault(s.carrier, []).append(hours)
            every.append(hours)
        baseline = cls(is_trained=bool(every))
        baseline.lanes = {k: _percentiles(v) for k, v in by_lane.items() if len(v) >= MIN_LANE_SAMPLES}
        baseline.carriers = {k: _percentiles(v) for k, v in by_carrier.items() if len(v) >= MIN_LANE_SAMPLES}
        if every:
            baseline.overall = _percentiles(every)
        return baseline

    def transit(self, s: Shipment) -> tuple[float, float, float]:
        return self.lanes.get("|".join(lane_of(s))) or self.carriers.get(s.carrier) or self.overall

    def quantiles(self, s: Shipment, at: datetime) -> tuple[float, float, float]:
        """Hours still to go at `at`: (q10, q50, q90)."""
        start = s.dispatched_at if s.dispatched_at is not None and s.dispatched_at <= at else at
        elapsed = _h(at - start)
        q10, q50, q90 = (max(q - elapsed, MIN_REMAINING_H) for q in self.transit(s))
        return _ordered(q10, q50, q90)

    def predict(self, s: Shipment, at: datetime) -> Prediction:
        q = self.quantiles(s, at)
        source = "baseline" if self.is_trained else "prior"
        return _prediction(at, q, self.confidence, source)

    def to_json(self) -> dict[str, Any]:
        return {
            "lanes": self.lanes,
            "carriers": self.carriers,
            "overall": self.overall,
            "confidence": self.confidence,
            "is_trained": self.is_trained,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        return cls(
            lanes={k: tuple(v) for k, v in data["lanes"].items()},
            carriers={k: tuple(v) for k, v in data["carriers"].items()},
            overall=tuple(data["overall"]),
            confidence=data.get("confidence"),
            is_trained=bool(data.get("is_trained")),
        )


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return (_quantile(ordered, 0.1), _quantile(ordered, 0.5), _quantile(ordered, 0.9))


def _quantile(ordered: Sequence[float], q: float) -> float:
    if len(ordered) == 1:
        return float(ordered[0])
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _ordered(q10: float, q50: float, q90: float) -> tuple[float, float, float]:
    a, b, c = sorted((q10, q50, q90))
    return (max(a, 0.0), max(b, MIN_REMAINING_H), max(c, MIN_REMAINING_H))


def _prediction(
    at: datetime, q: tuple[float, float, float], confidence: float | None, source: str
) -> Prediction:
    return Prediction(
        expected_at=at + timedelta(hours=q[1]),
        window_from=at + timedelta(hours=q[0]),
        window_to=at + timedelta(hours=q[2]),
        confidence=confidence if confidence is not None else 0.0,
        source=source,
    )


# ---- the exported tree model ----------------------------------------------------------------------------


@dataclass
class TreeEnsemble:
    """A gradient-boosted regressor as flat arrays: prediction = init + rate * sum(leaf values).

    `predict` runs a function generated from the arrays (nested comparisons, no loops), about five times
    faster than walking the arrays; `predict_walk` is the plain reference it is tested against.
    """

    init: float
    rate: float
    trees: list[tuple[list[int], list[float], list[int], list[int], list[float]]]
    _compiled: Callable[[Sequence[float]], float] | None = field(default=None, repr=False, compare=False)

    def predict(self, x: Sequence[float]) -> float:
        if self._compiled is None:
            self._compiled = _compile(self)
        return self._compiled(x)

    def predict_walk(self, x: Sequence[float]) -> float:
        total = 0.0
        for feature, threshold, left, right, value in self.trees:
            node = 0
            while left[node] != -1:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
            total += value[node]
        return self.init + self.rate * total

    def to_json(self) -> dict[str, Any]:
        return {"init": self.init, "rate": self.rate, "trees": self.trees}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeEnsemble:
        return cls(init=data["init"], rate=data["rate"], trees=[tuple(t) for t in data["trees"]])


def _compile(ensemble: TreeEnsemble) -> Callable[[Sequence[float]], float]:
    """Generates `def f(x)` with one nested if/else per tree. Only ints and floats from the model file are
    written into the source (each passed through int()/float()), so a model file cannot inject code."""
    lines = ["def f(x):", "    t = 0.0"]

    def node_lines(
        tree: tuple[list[int], list[float], list[int], list[int], list[float]], node: int, depth: int
    ) -> None:
        feature, threshold, left, right, value = tree
        pad = "    " * depth
        if int(left[node]) == -1:
            lines.append(f"{pad}t += {float(value[node])!r}")
            return
        lines.append(f"{pad}if x[{int(feature[node])}] <= {float(threshold[node])!r}:")
        node_lines(tree, int(left[node]), depth + 1)
        lines.append(f"{pad}else:")
        node_lines(tree, int(right[node]), depth + 1)

    for tree in ensemble.trees:
        node_lines(tree, 0, 1)
    lines.append(f"    return {float(ensemble.init)!r} + {float(ensemble.rate)!r} * t")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<eta-trees>", "exec"), namespace)  # numbers only, see the docstring
    return namespace["f"]


@dataclass
class EtaModel:
    vocab: dict[str, dict[str, int]]
    quantile_models: list[TreeEnsemble]
    baseline: Baseline
    confidence: float
    trained_at: str
    report: dict[str, Any] = field(default_factory=dict)

    def encode(self, raw: dict[str, Any]) -> list[float]:
        row: list[float] = []
        for name in FEATURES:
            value = raw[name]
            if name in CATEGORICAL:
                row.append(float(self.vocab[name].get(str(value), -1)))
            else:
                row.append(float(value))
        return row

    def quantiles(self, s: Shipment, at: datetime) -> tuple[float, float, float]:
        x = self.encode(raw_features(s, at))
        q10, q50, q90 = (m.predict(x) for m in self.quantile_models)
        return _ordered(q10, q50, q90)

    def predict(self, s: Shipment, at: datetime) -> Prediction:
        return _prediction(at, self.quantiles(s, at), self.confidence, "model")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MODEL_VERSION,
            "kind": "eta-quantile-gbt",
            "features": list(FEATURES),
            "quantiles": list(QUANTILES),
            "vocab": self.vocab,
            "models": [m.to_json() for m in self.quantile_models],
            "baseline": self.baseline.to_json(),
            "confidence": self.confidence,
            "trained_at": self.trained_at,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EtaModel:
        if data.get("version") != MODEL_VERSION or list(data.get("features", [])) != list(FEATURES):
            raise ValueError(
                "the ETA model file was trained for another feature set: run `doorstep models train eta`"
            )
        return cls(
            vocab=data["vocab"],
            quantile_models=[TreeEnsemble.from_json(m) for m in data["models"]],
            baseline=Baseline.from_json(data["baseline"]),
            confidence=float(data["confidence"]),
            trained_at=data["trained_at"],
            report=data.get("report", {}),
        )


class EtaPredictor:
    """What the projection calls: the trained model when there is one, else the baseline (or its priors)."""

    def __init__(self, model: EtaModel | None = None, baseline: Baseline | None = None):
        self.model = model
        self.baseline = baseline or (model.baseline if model else Baseline())

    @property
    def source(self) -> str:
        return "model" if self.model else ("baseline" if self.baseline.is_trained else "prior")

    def predict(self, s: Shipment, at: datetime) -> Prediction:
        if self.model is not None:
            return self.model.predict(s, at)
        return self.baseline.predict(s, at)


def model_path(var_dir: Path) -> Path:
    return Path(var_dir) / "models" / "eta.json"


def load_predictor(var_dir: Path) -> EtaPredictor:
    path = model_path(var_dir)
    if not path.exists():
        return EtaPredictor()
    model = EtaModel.from_json(json.loads(path.read_text(encoding="utf-8")))
    return EtaPredictor(model)


def save_model(model: EtaModel, var_dir: Path) -> Path:
    path = model_path(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model.to_json(), separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)
    return path


# ---- training and the report -----------------------------------------------------------------------------


@dataclass
class Sample:
    shipment: Shipment
    at: datetime
    remaining_h: float
    is_late: bool | None  # None when there was no promise


def samples_of(history: Iterable[Shipment]) -> list[Sample]:
    """One sample per scan before delivery: what the projection would have predicted at that moment."""
    out: list[Sample] = []
    for s in history:
        if s.delivered_at is None:
            continue
        is_late = s.delivered_at > s.promised_to if s.promised_to else None
        for scan in s.timeline:
            if scan.occurred_at >= s.delivered_at:
                break
            out.append(Sample(s, scan.occurred_at, _h(s.delivered_at - scan.occurred_at), is_late))
    return out


@dataclass
class Metrics:
    mae_h: float
    coverage: float
    auc: float | None
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"mae_h": self.mae_h, "coverage": self.coverage, "auc": self.auc, "n": self.n}


def late_probability(q: tuple[float, float, float], promise_h: float) -> float:
    """P(delivery later than `promise_h` hours from now), reading the three quantiles as a piecewise-linear
    distribution with linear tails as wide as the q10-q90 spread."""
    q10, q50, q90 = q
    tail = max(q90 - q10, 1.0)
    points = [(q10 - tail, 0.0), (q10, 0.1), (q50, 0.5), (q90, 0.9), (q90 + tail, 1.0)]
    if promise_h <= points[0][0]:
        return 1.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if promise_h <= x1:
            cdf = y1 if x1 <= x0 else y0 + (y1 - y0) * (promise_h - x0) / (x1 - x0)
            return 1.0 - cdf
    return 0.0


def auc_score(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, with ties counted half."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = average
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def evaluate(
    samples: Sequence[Sample], quantiles: Callable[[Shipment, datetime], tuple[float, float, float]]
) -> Metrics:
    errors: list[float] = []
    inside = 0
    labels: list[bool] = []
    scores: list[float] = []
    for sample in samples:
        q10, q50, q90 = quantiles(sample.shipment, sample.at)
        errors.append(abs(q50 - sample.remaining_h))
        inside += q10 <= sample.remaining_h <= q90
        promised_to = sample.shipment.promised_to
        if sample.is_late is not None and promised_to is not None and sample.at < promised_to:
            labels.append(sample.is_late)
            scores.append(late_probability((q10, q50, q90), _h(promised_to - sample.at)))
    n = len(samples)
    return Metrics(
        mae_h=round(statistics.fmean(errors), 3) if errors else float("nan"),
        coverage=round(inside / n, 4) if n else float("nan"),
        auc=None if (a := auc_score(labels, scores)) is None else round(a, 4),
        n=n,
    )


def time_split(
    history: Sequence[Shipment], *, holdout_share: float = 0.25
) -> tuple[list[Shipment], list[Shipment], datetime]:
    """Train on shipments delivered before the cutoff; test on those dispatched at or after it (no leakage)."""
    delivered = [s for s in history if s.delivered_at is not None and s.dispatched_at is not None]
    if len(delivered) < 20:
        raise ValueError(
            f"only {len(delivered)} delivered shipments with scans: need at least 20 to train and test"
        )
    starts = sorted(s.dispatched_at for s in delivered if s.dispatched_at is not None)
    cutoff = starts[int(len(starts) * (1 - holdout_share))]
    train = [s for s in delivered if s.delivered_at is not None and s.delivered_at < cutoff]
    test = [s for s in delivered if s.dispatched_at is not None and s.dispatched_at >= cutoff]
    if len(train) < 10 or not test:
        raise ValueError(
            "the history is too short in time to hold out a later period: add more delivered shipments"
        )
    return train, test, cutoff


@dataclass
class TrainResult:
    model: EtaModel
    report: dict[str, Any]


def train(
    history: Sequence[Shipment],
    *,
    now: datetime,
    n_estimators: int = 80,
    max_depth: int = 3,
    holdout_share: float = 0.25,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Fits baseline and model on the earlier period, reports both on the later one, then returns a model
    whose confidence is the held-out coverage of its window."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    step = progress or (lambda _message: None)
    train_set, test_set, cutoff = time_split(history, holdout_share=holdout_share)
    step(f"history split at {cutoff:%Y-%m-%d %H:%M}: {len(train_set)} train, {len(test_set)} held out")
    baseline = Baseline.fit(train_set)
    train_samples = samples_of(train_set)
    test_samples = samples_of(test_set)
    vocab: dict[str, dict[str, int]] = {name: {} for name in CATEGORICAL}
    raw_rows = [raw_features(s.shipment, s.at) for s in train_samples]
    for raw in raw_rows:
        for name in CATEGORICAL:
            vocab[name].setdefault(str(raw[name]), len(vocab[name]))
    shell = EtaModel(
        vocab=vocab, quantile_models=[], baseline=baseline, confidence=0.0, trained_at=now.isoformat()
    )
    x = np.array([shell.encode(raw) for raw in raw_rows], dtype=float)
    y = np.array([s.remaining_h for s in train_samples], dtype=float)
    for q in QUANTILES:
        step(f"fitting the q{int(q * 100)} model on {len(y)} samples")
        regressor = GradientBoostingRegressor(
            loss="quantile",
            alpha=q,
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=0.1,
            subsample=0.8,
            random_state=0,
        )
        regressor.fit(x, y)
        shell.quantile_models.append(export_regressor(regressor))
    step(f"evaluating on {len(test_samples)} held-out predictions")
    model_metrics = evaluate(test_samples, shell.quantiles)
    baseline_metrics = evaluate(test_samples, baseline.quantiles)
    shell.confidence = model_metrics.coverage
    baseline.confidence = baseline_metrics.coverage
    report = {
        "trained_at": now.isoformat(),
        "cutoff": cutoff.isoformat(),
        "train_shipments": len(train_set),
        "test_shipments": len(test_set),
        "train_samples": len(train_samples),
        "test_samples": len(test_samples),
        "model": model_metrics.to_json(),
        "baseline": baseline_metrics.to_json(),
        "window": "q10-q90",
    }
    shell.report = report
    return TrainResult(model=shell, report=report)


def export_regressor(regressor: Any) -> TreeEnsemble:
    """A fitted sklearn GradientBoostingRegressor -> flat arrays (no pickle, no sklearn at serving time)."""
    init = float(regressor.init_.constant_.ravel()[0])
    trees = []
    for estimator in regressor.estimators_[:, 0]:
        tree = estimator.tree_
        trees.append(
            (
                [int(f) for f in tree.feature],
                [float(t) for t in tree.threshold],
                [int(c) for c in tree.children_left],
                [int(c) for c in tree.children_right],
                [float(v) for v in tree.value[:, 0, 0]],
            )
        )
    return TreeEnsemble(init=init, rate=float(regressor.learning_rate), trees=trees)


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)
